"""
Early-exit prediction over a stream of batches, with the rows that go on carried from batch to
batch.

Within one batch, every layer that any row still needs is one call, however few rows are left: at
batch size 32 on SST-2 a third of the sentences reach the second layer, and each later layer call
then runs a handful of rows while paying in full what a call costs whatever its size (reading all
of the layer's weights, the head, the exit rule and selecting the rows that go on: together about
1.5 ms for MiniLM on a CPU, and small matrix products are slower per token). When a stream of
batches is to be predicted (a file, `allennlp predict`), the rows that go on past a head can
instead wait until later batches bring more rows to that layer, so that every layer call runs
enough tokens to be efficient. Each row still computes exactly what it would alone: the packed
layers never mix rows. A batch's outputs come out, in order, once all of its rows have exited.
"""

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.data import TextFieldTensors

from early_exit.modules.exit_record import ExitRecord
from early_exit.modules.packed_rows import PackedRows

if TYPE_CHECKING:
    from early_exit.models.early_exit_classifier import EarlyExitClassifier

# How many tokens a layer call after the first waits for. A packed MiniLM layer costs the least per
# token between about 800 and 3,300 tokens (2 threads; more is slower again), and fewer calls mean
# less per-call work; 2,048 was the best of 1,024, 2,048 and 4,096 on SST-2 and within the noise
# of the best on AG News (docs/performance.md, finding 13).
MIN_TOKENS = 2048


@dataclass
class _Waiting:
    """Rows waiting for a layer: their tokens and what the later heads read of them."""

    rows: PackedRows  # `rows.rows` `(num_rows,)`: their places in the stream
    pooled: List[torch.Tensor]  # per layer run so far: (num_rows, hidden_size)
    head_logits: List[torch.Tensor]  # per head passed, where later heads read them


class BatchStream:
    """
    Predicts batches one after the other (`push`), carrying the rows that go on past a head into
    later layer calls together with the rows of later batches: a layer runs once rows with at least
    `min_tokens` tokens wait for it (or when the stream ends, `finish`), instead of on what is left
    of one batch. The first layer runs on each batch as it comes. Every row's outputs equal
    those of `EarlyExitClassifier.forward` on its batch (up to float rounding, as between batch
    sizes); the batches' outputs come out in the order the batches went in, each as soon as all
    of its rows have exited (and all earlier batches' have).

    Where there is nothing to carry (the model in training, `run_all_heads`, a threshold of 1.0, or
    an encoder that cannot be packed), each batch simply goes through `forward` when it is pushed.

    What it costs: memory for the rows that wait (their hidden states, fewer than `min_tokens`
    tokens per layer) and latency: a row that goes on waits for enough rows to reach its next
    layer, so a batch's outputs can come out several batches later. `finish` runs whatever waits.

    # Parameters

    model : `EarlyExitClassifier`
    min_tokens : `int`, optional (default = `MIN_TOKENS`, 2048)
        How many tokens (of the waiting rows) a layer call after the first waits for.
    """

    def __init__(self, model: "EarlyExitClassifier", min_tokens: int = MIN_TOKENS) -> None:
        if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 1:
            raise ConfigurationError(f"min_tokens must be a positive integer, got {min_tokens!r}")
        self.model = model
        self.min_tokens = min_tokens
        self.carries = (
            not model.training
            and not model.run_all_heads
            and model.confidence_threshold < 1.0
            and model.packed
            and model.encoder.supports_packing
        )
        num_layers = model.encoder.num_layers
        self._waiting: List[List[_Waiting]] = [[] for _ in range(num_layers)]
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
            return [self.model(tokens=tokens, **kwargs)]
        model = self.model
        token_ids, mask, type_ids = model._token_tensors(tokens)
        batch_size = token_ids.shape[0]
        row_sets = model._initial_row_sets(token_ids, mask, type_ids)
        if len(row_sets) != 1 or not isinstance(row_sets[0], PackedRows):
            raise RuntimeError("a carrying stream needs the batch packed in one row set")
        packed = row_sets[0]
        packed.rows = packed.rows + self._next_row  # (batch_size,): places in the stream
        self._pending.append((self._next_row, batch_size))
        self._next_row += batch_size
        self._extend_outputs(batch_size, model.num_labels, packed.hidden)
        self._waiting[0].append(_Waiting(packed, [], []))
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
        model = self.model
        num_layers = model.encoder.num_layers
        for layer in range(num_layers):
            if not self._waiting[layer]:
                continue
            # The first layer runs each batch as it comes (the batch size is the caller's choice);
            # the rows that go on wait until enough tokens need their next layer.
            waiting_tokens = sum(item.rows.num_tokens for item in self._waiting[layer])
            if layer > 0 and not flush and waiting_tokens < self.min_tokens:
                continue
            waiting = self._merged(self._waiting[layer])
            self._waiting[layer] = []
            running = waiting.rows
            pooled = waiting.pooled + [model._advance(layer, running)]  # per layer: (rows, hidden)
            head_logits = list(waiting.head_logits)
            exits = ExitRecord()
            keep = model._exit_step(layer, running.rows, pooled, head_logits, exits)
            self._record(exits)
            if keep is not None:
                if keep.shape[0] == 0:
                    continue  # every row is done
                pooled, head_logits = model._staying(keep, pooled, head_logits)
                running = running.select(keep)
            if layer + 1 < num_layers:
                self._waiting[layer + 1].append(_Waiting(running, pooled, head_logits))

    @staticmethod
    def _merged(waiting: List[_Waiting]) -> _Waiting:
        """The rows of several waiting sets as one, in the order given."""
        if len(waiting) == 1:
            return waiting[0]
        rows = PackedRows.from_tokens(
            torch.cat([item.rows.rows for item in waiting]),
            torch.cat([item.rows.hidden for item in waiting]),
            torch.cat([item.rows.lengths for item in waiting]),
        )
        return _Waiting(
            rows,
            [torch.cat(layer) for layer in zip(*(item.pooled for item in waiting))],
            [torch.cat(head) for head in zip(*(item.head_logits for item in waiting))],
        )

    def _extend_outputs(self, batch_size: int, num_labels: int, like: torch.Tensor) -> None:
        """Room for a new batch's exit outputs."""
        logits = like.new_zeros((batch_size, num_labels), dtype=torch.float)
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
            output = {
                "logits": self._logits[first : first + size],  # (size, num_labels)
                "probs": self._probs[first : first + size],  # (size, num_labels)
                "exit_head": heads,  # (size,)
            }
            self.model._add_exit_layers(output)
            self.model._exit_statistics(heads)
            outputs.append(output)
        if outputs:
            # Forget the returned rows (the returned tensors keep their own storage).
            done = self._pending[0][0] - self._base if self._pending else len(self._heads)
            self._logits = self._logits[done:].clone()
            self._probs = self._probs[done:].clone()
            self._heads = self._heads[done:].clone()
            self._base += done
        return outputs
