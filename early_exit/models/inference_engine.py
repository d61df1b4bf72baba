"""
The one layer loop of the early-exit model: rows advance layer by layer, each head's logits are
turned into temperature-scaled probabilities, the exit policy says which rows leave, and the rows
that leave are recorded. The model's forward (one batch, training included), carried streaming
(`BatchStream`: many batches) and every-head inference (calibration, sweeps) all run it.
"""

from typing import Any, Dict, List, Optional, Tuple

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.data import TextFieldTensors

from early_exit.models.inference_settings import InferenceSettings
from early_exit.modules.exit_policies import scaled_probabilities
from early_exit.modules.exit_record import ExitRecord
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.padded_rows import PaddedRows
from early_exit.modules.row_set import RowSet
from early_exit.modules.tensor_cache import VersionedCache

OUTPUT_KEYS = ("logits", "probs", "exit_head", "exit_layer", "relative_compute")


def token_tensors(
    tokens: TextFieldTensors,
) -> Tuple[torch.Tensor, torch.BoolTensor, Optional[torch.Tensor]]:
    """`token_ids`, `mask` and `type_ids` (or `None`), each `(batch_size, num_tokens)`."""
    if len(tokens) != 1:
        raise ConfigurationError(
            f"expected one token indexer (a pretrained_transformer indexer), got {list(tokens)}"
        )
    indexed = next(iter(tokens.values()))
    token_ids = indexed["token_ids"]  # (batch_size, num_tokens)
    mask = indexed["mask"]  # (batch_size, num_tokens)
    if mask.dtype != torch.bool:
        mask = mask.bool()
    return token_ids, mask, indexed.get("type_ids")


class InferenceEngine:
    """
    Runs an `EarlyExitClassifier`'s encoder, heads and an exit policy. What a call runs with (the
    policy, every head or not, packing) comes with the call as an `InferenceSettings`; the model
    gives its parts (`encoder`, `heads`, `exit_layers`, `serving_temperatures`, `head_pooling`,
    `add_previous_layer_logits`, `full_depth`), read at every call.

    # Parameters

    model : `EarlyExitClassifier`
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._head_of_layer = {layer: head for head, layer in enumerate(model.exit_layers)}
        self.num_heads = len(model.exit_layers)
        compute = [(layer + 1) / model.full_depth for layer in model.exit_layers]
        # Per head, the compute as its float32 value, as outputs hold it.
        self.head_compute: List[float] = torch.tensor(compute).tolist()
        self._head_values = list(zip(model.exit_layers, self.head_compute))  # (layer, compute)
        self._temperatures: VersionedCache[List[float]] = VersionedCache()

    def packs(self, settings: InferenceSettings) -> bool:
        """Whether rows run packed: at inference, where the settings and the encoder allow it."""
        model = self._model
        return not model.training and settings.packed and model.encoder.supports_packing

    def initial_rows(
        self, tokens: TextFieldTensors, settings: InferenceSettings, first_row: int = 0
    ) -> RowSet:
        """
        A batch's rows embedded, as the layers will run them: packed at inference where the
        encoder allows it (BERT's embeddings run on the real tokens alone), else padded. Rows are
        numbered from `first_row` (their places in a stream of batches).
        """
        token_ids, mask, type_ids = token_tensors(tokens)
        settings.exit_policy.check_heads(self.head_compute)
        encoder = self._model.encoder
        encoder.layer_runner.check_device(token_ids.device)
        batch_size = token_ids.shape[0]
        rows = torch.arange(first_row, first_row + batch_size, device=token_ids.device)
        row_set: RowSet
        packs = self.packs(settings)
        if packs and encoder.embeds_packed:
            lengths = mask.sum(dim=1)  # (batch_size,)
            length_list = lengths.tolist()  # read once, for the embedding and the packing
            padded = min(length_list) < mask.shape[1]
            hidden = encoder.embed_packed(token_ids, mask, type_ids, padded)  # (tokens, hidden)
            row_set = PackedRows.from_tokens(rows, hidden, lengths, length_list)
        elif packs:
            row_set = PackedRows.from_padded(rows, encoder.embed(token_ids, type_ids), mask)
        else:
            row_set = PaddedRows(rows, encoder.embed(token_ids, type_ids), mask)
        row_set.state = settings.exit_policy.initial_state(batch_size, token_ids.device)
        return row_set

    def run(self, rows: RowSet, settings: InferenceSettings, all_heads: bool) -> ExitRecord:
        """Every layer the rows need (every layer, with `all_heads`); what each head decided."""
        exits = ExitRecord()
        running: Optional[RowSet] = rows
        for layer in range(self._model.encoder.num_layers):
            running = self.step(layer, running, exits, settings, all_heads)
            if running is None:
                break
        return exits

    def step(
        self,
        layer: int,
        rows: RowSet,
        exits: ExitRecord,
        settings: InferenceSettings,
        all_heads: bool = False,
    ) -> Optional[RowSet]:
        """
        Runs `layer` on `rows`, then the head on that layer (if any) and the settings' exit
        policy. Records the rows that exit in `exits`. With `all_heads` no row exits before the
        last head, and every head's logits are kept (the policy decides from them in
        `batch_outputs`).

        # Returns

        The rows that go on (`rows` itself if all do), or `None` if none does.
        """
        model, policy = self._model, settings.exit_policy
        rows.hidden = model.encoder.run_rows(layer, rows)
        rows.pooled.append(self.pool(rows))  # (num_rows, hidden_size)
        head = self._head_of_layer.get(layer)
        if head is None:
            return rows
        is_last = head == self.num_heads - 1
        keeps_logits = all_heads or model.add_previous_layer_logits
        if not (is_last or keeps_logits) and policy.never_exits_early(self.num_heads):
            return rows  # nobody can exit here, and no later head reads this one's logits
        previous = (
            torch.cat(rows.head_logits, dim=-1)
            if model.add_previous_layer_logits and rows.head_logits
            else None
        )
        logits = model.heads[head](rows.pooled, previous)  # (num_rows, num_labels)
        probs = scaled_probabilities(logits, self.temperature(head))  # (num_rows, num_labels)
        if is_last:  # every row that got here exits
            every_head = torch.stack(rows.head_logits + [logits], dim=1) if all_heads else None
            exits.add(rows.rows, logits, probs, head, len(rows), every_head)
            return None
        if keeps_logits:
            rows.head_logits.append(logits)
        if all_heads:
            return rows
        decision = policy.decide(probs, rows.state)
        rows.state = decision.state
        if decision.count == len(rows):
            exits.add(rows.rows, logits, probs, head, decision.count)
            return None
        if decision.count == 0:
            return rows
        exiting = decision.exits.nonzero().squeeze(1)  # (count,): the rows that exit here
        exits.add(rows.rows[exiting], logits[exiting], probs[exiting], head, decision.count)
        return rows.select(~decision.exits)

    def pool(self, rows: RowSet) -> torch.Tensor:
        """
        The last layer's output of `rows` pooled as the heads read it: `(num_rows, hidden_size)`.
        """
        pooling = self._model.head_pooling
        if pooling == "mean":
            return rows.mean()
        first = rows.first_tokens()  # (num_rows, hidden_size)
        if pooling == "cls":
            return first
        return self._model.encoder.pool(first.unsqueeze(1))  # the encoder's own pooler

    def temperature(self, head: int) -> float:
        """
        The temperature of `head` as a Python float (the float32 value): it divides as the
        tensor's element does, without the operator that picks the element out.
        """
        temperatures = self._model.serving_temperatures
        return self._temperatures.get((temperatures,), temperatures.tolist)[head]

    def batch_outputs(
        self, exits: ExitRecord, batch_size: int, settings: InferenceSettings
    ) -> Dict[str, torch.Tensor]:
        """
        The exit outputs of one batch's rows (numbered 0 to `batch_size - 1`), collected head by
        head, as batch-first tensors in the batch's order (`OUTPUT_KEYS`; with every head's logits,
        also `head_logits` and `head_probs`, and the exits decided from them by the policy).
        """
        # (batch_size,): each row once; (batch_size, num_labels) twice
        order, logits, probs = (
            parts[0] if len(parts) == 1 else torch.cat(parts)
            for parts in (exits.rows, exits.logits, exits.probs)
        )
        extra: Dict[str, torch.Tensor] = {}
        heads = exits.heads
        if exits.every_head is not None:
            head_logits = exits.every_head  # (batch_size, num_heads, num_labels)
            head_probs = scaled_probabilities(head_logits, self._model.serving_temperatures)
            exit_head = settings.exit_policy.exit_heads(head_probs)  # (batch_size,)
            picked = torch.arange(batch_size, device=order.device)
            logits, probs = head_logits[picked, exit_head], head_probs[picked, exit_head]
            heads = exit_head.tolist()
            extra = {"head_logits": head_logits, "head_probs": head_probs}
        if logits.dtype != torch.float:  # heads run in another precision
            logits, probs = logits.float(), probs.float()
        outputs = [logits, probs, *self.exit_tensors(heads, order.device)]
        if batch_size > 1:
            position = torch.empty_like(order)  # (batch_size,): each batch row's place in `order`
            position[order] = torch.arange(batch_size, device=order.device)
            outputs = [output[position] for output in outputs]
            extra = {key: value[position] for key, value in extra.items()}
        return {**dict(zip(OUTPUT_KEYS, outputs)), **extra}

    def exit_tensors(self, heads: List[int], device: torch.device) -> List[torch.Tensor]:
        """`exit_head`, `exit_layer` and `relative_compute`, each `(num_rows,)`, from exit heads."""
        values = [self._head_values[head] for head in heads]  # (layer, compute) per row
        return [
            torch.tensor(heads, dtype=torch.long, device=device),
            torch.tensor([layer for layer, _ in values], dtype=torch.long, device=device),
            torch.tensor([compute for _, compute in values], dtype=torch.float, device=device),
        ]

    def count_exits(self, heads: List[int], settings: InferenceSettings) -> None:
        """
        Counts a batch's exits (one head index per row, in order) into the model's exit statistics
        and shows their compute to the exit policy (`observe`: an adapting policy moves here).
        """
        self._model._exit_statistics.count(heads)
        if settings.exit_policy.adapts():  # the fixed policies ignore `observe`: no list per batch
            settings.exit_policy.observe([self.head_compute[head] for head in heads])
