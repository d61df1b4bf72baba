"""
Early-exit prediction over a stream of batches, with the rows that go on carried from batch to
batch.

Within one batch, every layer that any row still needs is one call, however few rows are left:
once most rows have exited, each later layer call runs a handful of rows while paying in full what
a call costs whatever its size (reading all of the layer's weights, the head, the exit rule and
selecting the rows that go on; small matrix products are also slower per token; measurements in
docs/performance.md). When a stream of
batches is to be predicted (a file, `allennlp predict`), the rows that go on past a head can
instead wait until later batches bring more rows to that layer, so that every layer call runs
enough tokens to be efficient. Each row still computes exactly what it would alone: the packed
layers never mix rows. A batch's outputs come out, in order, once all of its rows have exited.
"""

from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.data import TextFieldTensors

from early_exit.models.inference_engine import InferenceEngine
from early_exit.models.inference_settings import InferenceSettings
from early_exit.modules.exit_record import ExitRecord
from early_exit.modules.row_set import RowSet

# How many tokens a layer call after the first waits for: a packed layer costs less per token the
# more tokens it runs, up to a few thousand, and fewer calls mean less per-call work (the cost per
# token is measured by bench/layer_cost.py; the choice: docs/performance.md, finding 7).
MIN_TOKENS = 2048


class BatchStream:
    """
    Predicts batches one after the other (`push`), carrying the rows that go on past a head into
    later layer calls together with the rows of later batches: a layer runs once rows with at least
    `min_tokens` tokens wait for it (or when the stream ends, `finish`), instead of on what is left
    of one batch. The first layer runs on each batch as it comes. Every row's outputs equal
    those of `EarlyExitClassifier.forward` on its batch (up to float rounding, as between batch
    sizes); the batches' outputs come out in the order the batches went in, each as soon as all
    of its rows have exited (and all earlier batches' have).

    Where there is nothing to carry (the model in training, `run_all_heads`, an exit policy that
    never exits early, or an encoder that cannot be packed), or where an exit policy adapts to the
    stream (`compute_budget`: each batch is decided with the threshold the complete batches before
    it left, so no row may wait for a later batch), each batch simply goes through `forward` when
    it is pushed. The layers, heads and exit decisions are the model's
    `InferenceEngine`'s, and each row's policy state travels with it.

    What it costs: memory for the rows that wait (their hidden states, fewer than `min_tokens`
    tokens per layer) and latency: a row that goes on waits for enough rows to reach its next
    layer, so a batch's outputs can come out several batches later. `finish` runs whatever waits.

    # Parameters

    model : `EarlyExitClassifier`
        Its `engine` runs the layers, heads and exit decisions.
    min_tokens : `int`, optional (default = `MIN_TOKENS`, 2048)
        How many tokens (of the waiting rows) a layer call after the first waits for.
    settings : `InferenceSettings`, optional
        The stream's exit policy, `run_all_heads` and `packed`; the model's own
        (`inference_settings()`, read now) when not given. The model is not changed.
    """

    def __init__(
        self, model: Any, min_tokens: int = MIN_TOKENS, settings: Optional[InferenceSettings] = None
    ) -> None:
        if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 1:
            raise ConfigurationError(f"min_tokens must be a positive integer, got {min_tokens!r}")
        self.model = model
        self.engine: InferenceEngine = model.engine
        engine = self.engine
        self.min_tokens = min_tokens
        self.settings = settings or model.inference_settings()
        self.carries = (
            not self.settings.run_all_heads
            and engine.packs(self.settings)
            and not self.settings.exit_policy.never_exits_early(engine.num_heads)
            # an adapting policy decides each batch with what the batches before it left
            and not self.settings.exit_policy.adapts()
        )
        num_layers = model.encoder.num_layers
        self._waiting: List[List[RowSet]] = [[] for _ in range(num_layers)]
        # Batches whose outputs are not out yet: (first row in the stream, size).
        self._pending: Deque[Tuple[int, int]] = deque()
        self._next_row = 0  # the stream position of the next batch's first row
        # The exit outputs of the pending batches' rows, from the first pending row on.
        self._base = 0
        self._logits: Optional[torch.Tensor] = None  # (pending_rows, num_labels)
        self._probs: Optional[torch.Tensor] = None  # (pending_rows, num_labels)
        self._heads: Optional[torch.Tensor] = None  # (pending_rows,): -1 until the row exits

    def push(self, tokens: TextFieldTensors, **kwargs: Any) -> List[Dict[str, torch.Tensor]]:
        """
        Takes one batch, `forward`'s arguments (`label` and other arguments are ignored when rows
        are carried), and returns the outputs of every batch that is now complete, oldest first:
        each a dictionary as `forward` returns (`logits`, `probs`, `exit_head`, `exit_layer`,
        `relative_compute`; batch-first), possibly none.
        """
        if not self.carries:
            return [self.model(tokens=tokens, settings=self.settings, **kwargs)]
        rows = self.engine.initial_rows(tokens, self.settings, first_row=self._next_row)
        batch_size = len(rows)
        self._pending.append((self._next_row, batch_size))
        self._next_row += batch_size
        self._extend_outputs(batch_size, self.model.num_labels, rows.rows)
        self._waiting[0].append(rows)
        self._run(flush=False)
        return self._complete()

    def finish(self) -> List[Dict[str, torch.Tensor]]:
        """Runs every row still waiting and returns the outputs of the batches not returned yet."""
        if not self.carries:
            return []
        self._run(flush=True)
        outputs = self._complete()
        if self._pending:
            raise RuntimeError("rows of a batch never exited")  # cannot happen: the last head
        return outputs

    def _run(self, flush: bool) -> None:
        """Runs, layer by layer, every layer for which enough rows wait (every one, flushing)."""
        num_layers = len(self._waiting)
        for layer in range(num_layers):
            if not self._waiting[layer]:
                continue
            # The first layer runs each batch as it comes (the batch size is the caller's choice);
            # the rows that go on wait until enough tokens need their next layer.
            waiting_tokens = sum(rows.num_tokens for rows in self._waiting[layer])
            if layer > 0 and not flush and waiting_tokens < self.min_tokens:
                continue
            waiting = type(self._waiting[layer][0]).merge(self._waiting[layer])
            self._waiting[layer] = []
            exits = ExitRecord()
            going_on = self.engine.step(layer, waiting, exits, self.settings)
            self._record(exits)
            if going_on is not None and layer + 1 < num_layers:
                self._waiting[layer + 1].append(going_on)

    def _extend_outputs(self, batch_size: int, num_labels: int, like: torch.Tensor) -> None:
        """Room for a new batch's exit outputs (on the device of `like`)."""
        logits = torch.zeros((batch_size, num_labels), dtype=torch.float, device=like.device)
        heads = torch.full((batch_size,), -1, dtype=torch.long, device=like.device)
        if self._logits is None:
            self._logits, self._probs, self._heads = logits, logits.clone(), heads
        else:
            self._logits = torch.cat([self._logits, logits])
            self._probs = torch.cat([self._probs, logits])
            self._heads = torch.cat([self._heads, heads])

    def _record(self, exits: ExitRecord) -> None:
        """Writes the exits of one layer call into the pending outputs."""
        if not exits.rows:
            return
        places = torch.cat(exits.rows) - self._base  # (num_exited,)
        heads = torch.tensor(exits.heads, dtype=torch.long, device=places.device)
        self._logits.index_copy_(0, places, torch.cat(exits.logits).float())
        self._probs.index_copy_(0, places, torch.cat(exits.probs).float())
        self._heads.index_copy_(0, places, heads)

    def _complete(self) -> List[Dict[str, torch.Tensor]]:
        """The outputs of the oldest pending batches whose rows have all exited, oldest first."""
        outputs = []
        while self._pending:
            start, size = self._pending[0]
            first = start - self._base
            heads = self._heads[first : first + size]  # (size,)
            if bool((heads < 0).any()):
                break
            self._pending.popleft()
            head_list = heads.tolist()
            exit_head, exit_layer, compute = self.engine.exit_tensors(head_list, heads.device)
            outputs.append(
                {
                    "logits": self._logits[first : first + size],  # (size, num_labels)
                    "probs": self._probs[first : first + size],  # (size, num_labels)
                    "exit_head": exit_head,  # (size,)
                    "exit_layer": exit_layer,  # (size,)
                    "relative_compute": compute,  # (size,)
                }
            )
            self.engine.count_exits(head_list, self.settings)
        if outputs:
            # Forget the returned rows (the returned tensors keep their own storage).
            done = self._pending[0][0] - self._base if self._pending else len(self._heads)
            self._logits = self._logits[done:].clone()
            self._probs = self._probs[done:].clone()
            self._heads = self._heads[done:].clone()
            self._base += done
        return outputs
