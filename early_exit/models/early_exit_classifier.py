import logging
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.params import Params
from allennlp.data import TextFieldTensors, Vocabulary
from allennlp.models.model import Model
from allennlp.modules.seq2vec_encoders import BagOfEmbeddingsEncoder, ClsPooler
from allennlp.nn import InitializerApplicator
from allennlp.training.metrics import CategoricalAccuracy
from overrides import overrides
from transformers import AutoConfig

from early_exit.common.encoder_files import carried_transformer, forget_carried_transformer
from early_exit.models.batch_stream import MIN_TOKENS, BatchStream
from early_exit.modules.exit_head import ExitHead
from early_exit.modules.exit_policy import (
    exits_at_head,
    first_exit_head,
    one_row_exits,
    scaled_probabilities,
)
from early_exit.modules.exit_record import ExitRecord
from early_exit.modules.length_groups import (
    RowGroup,
    length_sorted_groups,
    regroup,
    select_rows,
)
from early_exit.modules.layerwise_transformer import LayerwiseTransformer
from early_exit.modules.packed_rows import PackedRows
from early_exit.training.metrics.exit_statistics import ExitStatistics
from early_exit.training.metrics.expected_calibration_error import ExpectedCalibrationError

logger = logging.getLogger(__name__)

# Rows that go through the encoder's layers together: padded (`RowGroup`) or packed (`PackedRows`).
RowSet = Union[RowGroup, PackedRows]

# What `_exit_step` returns when every running row is done: an empty `keep`.
ALL_DONE = torch.zeros(0, dtype=torch.bool)

HEAD_POOLING_CHOICES = ("cls_pooler", "cls", "mean")


@Model.register("early_exit_classifier")
class EarlyExitClassifier(Model):
    """
    A transformer classifier with classifier heads on several layers that lets each instance leave
    the network at the first head that is confident enough (Schwartz et al., 2020, "The Right Tool
    for the Job: Matching Model and Instance Complexities").

    Training runs every head and minimises the (weighted) sum of their cross-entropy losses. At
    inference an instance exits at the first head whose temperature-scaled maximum probability is at
    least `confidence_threshold`; the last head always answers. Exits are decided per instance: after
    each exit layer the finished rows leave the batch, and only the others go through the next
    layers. Layers above the last exit layer are removed.

    At inference the layers run on the real tokens of all running rows packed together, without
    padding (`packed`; BERT-style encoders), so that padding costs nothing and all rows share one
    matrix multiplication per linear layer. Encoders that cannot be packed run each batch in
    sub-batches of similar length instead (`split_by_length`), which are merged again as their rows
    exit. Outputs are those of running each instance alone (up to float noise).

    Accepts the output of this package's `early_exit_text_classification` and `early_exit_nli`
    readers and of allennlp-models' `snli` reader with a pretrained transformer tokenizer (a `tokens`
    text field and a `label` field).

    Registered as a `Model` with name "early_exit_classifier".

    # Parameters

    vocab : `Vocabulary`
    transformer_model : `str`
        A Hugging Face model name or local directory (BERT, RoBERTa, ELECTRA, MiniLM, DistilBERT ...).
    exit_layers : `List[int]`
        0-based transformer layer indices that get a classifier head, strictly increasing, e.g.
        `[0, 4, 12, 23]` for BERT-large as in the paper.
    head_pooling : `str`, optional (default = `"mean"`)
        How each layer is pooled into one vector before mixing: `"cls_pooler"` (the paper: the
        encoder's own pooler on that layer's first token, where the encoder has one), `"cls"` (the raw
        first-token vector) or `"mean"` (mask-aware mean over tokens).
    dropout : `float`, optional (default = `0.1`)
        Dropout before each head's linear layer.
    add_previous_layer_logits : `bool`, optional (default = `False`)
        Feed the logits of all earlier heads to each later head (a variant in the paper).
    loss_weights : `List[float]`, optional
        One weight per head for the summed training loss; all 1.0 by default.
    distillation_weight : `float`, optional (default = `0.0`)
        Self-distillation of the earlier heads from the last head (as in FastBERT, Liu et al. 2020):
        adds `distillation_weight * T^2 * KL(p_last || p_k)` for every earlier head `k`, with the last
        head's distribution at temperature `T = distillation_temperature` as a fixed (detached)
        target. 0 disables it (the paper's recipe).
    distillation_temperature : `float`, optional (default = `1.0`)
    temperatures : `List[float]`, optional
        One temperature per head (a buffer saved with the weights, never trained by the optimizer);
        all 1.0 by default. The calibration callback and `allennlp calibrate` set them.
    confidence_threshold : `float`, optional (default = `1.0`)
        In [0, 1]. 1.0 means no early exit at all (every instance goes to the last head); 0.0 means
        every instance exits at the first head.
    run_all_heads : `bool`, optional (default = `False`)
        Run every layer and every head for every instance and also return each head's logits and
        probabilities (`head_logits`, `head_probs`); the exit decisions are still computed from those
        probabilities exactly as early exit would take them. Needed by calibration, threshold sweeps
        and per-head accuracies. Training always runs all heads.
    packed : `bool`, optional (default = `True`)
        At inference, run the encoder's layers on the real tokens only (`PackedRows`, one matrix for
        all running rows; only the attention is computed on rows padded, in groups of similar
        length), where the encoder supports it (BERT-style self-attention with absolute positions:
        BERT, RoBERTa, ELECTRA, MiniLM, XLM-R). Otherwise, or when `False`, `split_by_length`
        decides. Training never packs.
    split_by_length : `bool`, optional (default = `True`)
        At inference without packing, run each batch in sub-batches of similar length
        (`length_sorted_groups`) and, as rows exit, re-split what is left (`regroup`). Outputs are
        returned in the batch's order. `False` (with `packed` off or unsupported) runs the batch as
        it is padded, trimming the padding that only finished rows needed (training always runs the
        padded batch).
    prepack_weights : `bool`, optional (default = `True`)
        Packed inference on a CPU runs the encoder's linear layers through oneDNN with each weight
        reordered once into its blocked layout (cached outside the state dict, renewed when a weight
        changes), instead of torch's default linear: a MiniLM layer ran 1.1x faster on 32 SST-2
        sentences and 1.9x on one (the fixed cost of a layer call halves). Results agree to float
        rounding (about 1e-6 relative). Ignored on GPUs, with gradients on and where torch has no
        oneDNN.
    label_namespace : `str`, optional (default = `"labels"`)
    load_weights : `bool`, optional (default = `True`)
        Load the encoder's pretrained weights. Set to `False` automatically when a model is loaded
        from an archive, whose weights file has them.
    initializer : `InitializerApplicator`, optional
        Applied to the heads.
    """

    default_predictor = "early_exit_classifier"

    def __init__(
        self,
        vocab: Vocabulary,
        transformer_model: str,
        exit_layers: List[int],
        head_pooling: str = "mean",
        dropout: float = 0.1,
        add_previous_layer_logits: bool = False,
        loss_weights: Optional[List[float]] = None,
        distillation_weight: float = 0.0,
        distillation_temperature: float = 1.0,
        temperatures: Optional[List[float]] = None,
        confidence_threshold: float = 1.0,
        run_all_heads: bool = False,
        split_by_length: bool = True,
        packed: bool = True,
        prepack_weights: bool = True,
        label_namespace: str = "labels",
        load_weights: bool = True,
        initializer: Optional[InitializerApplicator] = None,
        **kwargs,
    ) -> None:
        super().__init__(vocab, **kwargs)
        exit_layers = list(exit_layers)
        if not exit_layers:
            raise ConfigurationError("exit_layers must name at least one transformer layer")
        if any(not isinstance(layer, int) for layer in exit_layers):
            raise ConfigurationError(f"exit_layers must be integers, got {exit_layers}")
        if any(later <= earlier for earlier, later in zip(exit_layers, exit_layers[1:])):
            raise ConfigurationError(
                f"exit_layers must be strictly increasing (sorted, no duplicates), got {exit_layers}"
            )
        if head_pooling not in HEAD_POOLING_CHOICES:
            raise ConfigurationError(
                f"head_pooling must be one of {', '.join(HEAD_POOLING_CHOICES)}; got {head_pooling!r}"
            )
        if exit_layers[0] < 0:
            raise ConfigurationError(
                f"exit_layers must be 0-based layer indices, got {exit_layers}"
            )
        num_heads = len(exit_layers)
        loss_weights = self._per_head_values("loss_weights", loss_weights, num_heads, 1.0)
        temperatures = self._per_head_values("temperatures", temperatures, num_heads, 1.0)
        if any(weight < 0 for weight in loss_weights):
            raise ConfigurationError(f"loss_weights must not be negative, got {loss_weights}")
        if any(not temperature > 0 for temperature in temperatures):
            raise ConfigurationError(f"temperatures must be positive, got {temperatures}")
        if distillation_weight < 0 or not distillation_temperature > 0:
            raise ConfigurationError(
                "distillation_weight must be >= 0 and distillation_temperature > 0, got "
                f"{distillation_weight} and {distillation_temperature}"
            )
        self.distillation_weight = float(distillation_weight)
        self.distillation_temperature = float(distillation_temperature)

        self._check_depth(transformer_model, exit_layers)
        self.encoder = LayerwiseTransformer(
            transformer_model,
            num_layers=exit_layers[-1] + 1,
            keep_pooler=head_pooling == "cls_pooler",
            load_weights=load_weights,
            prepack_weights=prepack_weights,
        )
        self.exit_layers = exit_layers
        self._head_of_layer = {layer: head for head, layer in enumerate(exit_layers)}
        self.full_depth = self.encoder.full_depth
        self.head_pooling = head_pooling
        hidden_size = self.encoder.hidden_size
        if head_pooling == "mean":
            self._pooler = BagOfEmbeddingsEncoder(hidden_size, averaged=True)
        elif head_pooling == "cls":
            self._pooler = ClsPooler(hidden_size)
        else:
            self._pooler = None  # the encoder's own pooler, applied in _pool

        self._label_namespace = label_namespace
        self.num_labels = vocab.get_vocab_size(label_namespace)
        if self.num_labels < 2:
            raise ConfigurationError(
                f"the vocabulary's {label_namespace!r} namespace has {self.num_labels} label(s); "
                "a classifier needs at least 2"
            )
        self.add_previous_layer_logits = add_previous_layer_logits
        self.heads = torch.nn.ModuleList(
            ExitHead(
                hidden_size,
                num_mixed_layers=layer + 1,
                num_labels=self.num_labels,
                dropout=dropout,
                extra_input_dim=index * self.num_labels if add_previous_layer_logits else 0,
            )
            for index, layer in enumerate(exit_layers)
        )
        self.register_buffer("loss_weights", torch.tensor(loss_weights, dtype=torch.float))
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float))
        # Per head, for `_add_exit_layers` (not saved: they follow from `exit_layers`).
        head_layers = torch.tensor(exit_layers, dtype=torch.long)  # (num_heads,)
        self.register_buffer("_layer_of_head", head_layers, persistent=False)
        self.register_buffer(
            "_compute_of_head", (head_layers + 1).float() / self.full_depth, persistent=False
        )  # (num_heads,)
        # The same as Python numbers (the float32 values), for the exit outputs made from the
        # heads' Python list in `_in_batch_order`.
        self._head_values = list(zip(exit_layers, self._compute_of_head.tolist()))
        self._temperature_values: Tuple[tuple, List[float]] = ((), [])
        self.confidence_threshold = confidence_threshold
        self.run_all_heads = run_all_heads
        self.split_by_length = split_by_length
        self.packed = packed

        self._accuracy = CategoricalAccuracy()
        self._ece = ExpectedCalibrationError()
        self._exit_statistics = ExitStatistics(exit_layers, self.full_depth)
        self._head_accuracies = [CategoricalAccuracy() for _ in exit_layers]
        self._head_accuracies_seen = False
        self._loss = torch.nn.CrossEntropyLoss(reduction="none")
        if initializer is not None:
            initializer(self.heads)

    @staticmethod
    def _per_head_values(
        name: str, values: Optional[List[float]], num_heads: int, default: float
    ) -> List[float]:
        if values is None:
            return [default] * num_heads
        values = [float(value) for value in values]
        if len(values) != num_heads:
            raise ConfigurationError(
                f"{name} must have one value per exit layer ({num_heads}), got {len(values)}: "
                f"{values}"
            )
        return values

    @staticmethod
    def _check_depth(transformer_model: str, exit_layers: List[int]) -> None:
        """Checks exit layers against the encoder's depth before any weights are loaded."""
        config = AutoConfig.from_pretrained(transformer_model)
        depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
        if depth is not None and exit_layers[-1] >= depth:
            raise ConfigurationError(
                f"exit_layers {exit_layers} are out of range: {transformer_model} has {depth} "
                f"layers, numbered 0 to {depth - 1}"
            )

    @property
    def confidence_threshold(self) -> float:
        return self._confidence_threshold

    @confidence_threshold.setter
    def confidence_threshold(self, value: float) -> None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"confidence_threshold must be a number, got {value!r}")
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"confidence_threshold must be in [0, 1], got {value}")
        self._confidence_threshold = value

    def set_temperatures(self, temperatures: List[float]) -> None:
        """Replaces the per-head temperatures (validated like the constructor argument)."""
        values = self._per_head_values("temperatures", temperatures, len(self.exit_layers), 1.0)
        if any(not temperature > 0 for temperature in values):
            raise ConfigurationError(f"temperatures must be positive, got {values}")
        self.temperatures.copy_(torch.tensor(values, dtype=torch.float))

    def _temperature_of(self, head: int) -> float:
        """
        The temperature of `head` as a Python float (the float32 value), for `_exit_step`: a float
        divides as the tensor's element does, without the operator that picks the element out.
        Read from `temperatures` again whenever it changes (calibration, `load_state_dict`).
        """
        temperatures = self.temperatures
        version = (temperatures.data_ptr(), temperatures._version)
        if self._temperature_values[0] != version:
            self._temperature_values = (version, temperatures.tolist())
        return self._temperature_values[1][head]

    def _pool(self, hidden: torch.Tensor, mask: Optional[torch.BoolTensor]) -> torch.Tensor:
        """One layer's output `(batch_size, num_tokens, hidden_size)` -> `(batch_size, hidden_size)`."""
        if self._pooler is None:
            return self.encoder.pool(hidden)
        return self._pooler(hidden, mask)

    @overrides(check_signature=False)
    def forward(  # type: ignore
        self, tokens: TextFieldTensors, label: Optional[torch.IntTensor] = None, **kwargs: Any
    ) -> Dict[str, torch.Tensor]:
        """
        # Parameters

        tokens : `TextFieldTensors`
            From a `PretrainedTransformerIndexer`: `token_ids`, `mask` and (optionally) `type_ids`,
            each of shape `(batch_size, num_tokens)`.
        label : `torch.IntTensor`, optional
            Gold labels, shape `(batch_size,)`.

        # Returns

        An output dictionary, every tensor batch-first:

        - `logits` `(batch_size, num_labels)`: the raw logits of the head each instance exited at;
        - `probs` `(batch_size, num_labels)`: its temperature-scaled probabilities;
        - `exit_head` `(batch_size,)`: the index of that head; `exit_layer` `(batch_size,)`: its
          0-based transformer layer; `relative_compute` `(batch_size,)`: `(exit_layer + 1) / full_depth`;
        - `head_logits`, `head_probs` `(batch_size, num_heads, num_labels)`: every head's raw logits and
          temperature-scaled probabilities, only when all heads were run (training, `run_all_heads`,
          or threshold 1.0 with labels, where every layer is computed anyway);
        - `loss` when labels are given: when all heads ran, the weighted sum of every head's
          cross-entropy (plus self-distillation, if enabled); otherwise the cross-entropy of the
          exit predictions.
        """
        token_ids, mask, type_ids = self._token_tensors(tokens)

        # Every head runs in training, on request, and at threshold 1.0 when labels are given (every
        # layer is computed anyway, so per-head accuracies cost only the heads). Prediction at 1.0
        # computes only the heads it needs.
        no_early_exit = self._confidence_threshold >= 1.0
        all_heads = self.training or self.run_all_heads or (no_early_exit and label is not None)
        row_sets = self._initial_row_sets(token_ids, mask, type_ids)
        batch_size = token_ids.shape[0]
        if all_heads:
            output = self._forward_all_heads_in_sets(row_sets, batch_size)
            self._add_exit_layers(output)
            self._exit_statistics(output["exit_head"])
        else:  # counted there, from the heads' Python list
            output = self._forward_early_exit(row_sets, batch_size)

        if label is not None:
            label = label.long().view(-1)  # (batch_size,)
            if "head_logits" in output:
                head_logits = output["head_logits"]  # (batch_size, num_heads, num_labels)
                losses = torch.stack(
                    [self._loss(head_logits[:, k], label) for k in range(len(self.heads))], dim=-1
                )  # (batch_size, num_heads)
                output["loss"] = (losses * self.loss_weights).sum(dim=-1).mean()
                if self.distillation_weight > 0 and len(self.heads) > 1:
                    output["loss"] = output["loss"] + self._distillation_loss(head_logits)
                for k, accuracy in enumerate(self._head_accuracies):
                    accuracy(head_logits[:, k], label)
                self._head_accuracies_seen = True
            else:
                output["loss"] = self._loss(output["logits"], label).mean()
            self._accuracy(output["logits"], label)
            self._ece(output["probs"], label)
        return output

    def stream(self, min_tokens: int = MIN_TOKENS) -> BatchStream:
        """
        A `BatchStream` over this model: prediction of many batches with the rows that go on
        carried into later layer calls together with the rows of later batches, so that at
        inference a layer call after the first waits until rows with `min_tokens` tokens need it
        (`allennlp predict` with the `early_exit_classifier` predictor predicts this way).
        """
        return BatchStream(self, min_tokens)

    def forward_stream(
        self, batches: Iterable[Dict[str, Any]], min_tokens: int = MIN_TOKENS
    ) -> Iterator[Dict[str, torch.Tensor]]:
        """
        Predicts `batches` (each `forward`'s keyword arguments) through `stream`, yielding each
        batch's output dictionary, batch-first as `forward`'s, in the batches' order.
        """
        stream = self.stream(min_tokens)
        for batch in batches:
            yield from stream.push(**batch)
        yield from stream.finish()

    @staticmethod
    def _token_tensors(
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
        type_ids = indexed.get("type_ids")  # (batch_size, num_tokens) or None
        return token_ids, mask, type_ids

    def _add_exit_layers(self, output: Dict[str, torch.Tensor]) -> None:
        """Adds `exit_layer` and `relative_compute` `(batch_size,)` from `exit_head`."""
        exit_head = output["exit_head"]  # (batch_size,)
        output["exit_layer"] = self._layer_of_head[exit_head]  # (batch_size,)
        output["relative_compute"] = self._compute_of_head[exit_head]  # (batch_size,)

    def _distillation_loss(self, head_logits: torch.Tensor) -> torch.Tensor:
        """`head_logits` `(batch_size, num_heads, num_labels)` -> the scalar self-distillation loss."""
        temperature = self.distillation_temperature
        target = torch.softmax(head_logits[:, -1].detach() / temperature, dim=-1)  # (batch, labels)
        student = torch.log_softmax(
            head_logits[:, :-1] / temperature, dim=-1
        )  # (batch, K-1, labels)
        kl = torch.nn.functional.kl_div(
            student, target.unsqueeze(1).expand_as(student), reduction="none"
        ).sum(
            dim=-1
        )  # (batch_size, num_heads - 1)
        return self.distillation_weight * temperature**2 * kl.sum(dim=-1).mean()

    def _forward_all_heads(self, row_set: RowSet) -> Dict[str, torch.Tensor]:
        """Every layer and every head for the rows of `row_set`; outputs in its rows' order."""
        pooled: List[torch.Tensor] = []  # per layer: (num_rows, hidden_size)
        head_logits: List[torch.Tensor] = []  # per head: (num_rows, num_labels)
        for layer in range(self.encoder.num_layers):
            pooled.append(self._advance(layer, row_set))
            if layer in self.exit_layers:
                head = len(head_logits)
                head_logits.append(self.heads[head](pooled, self._previous_logits(head_logits)))
        logits = torch.stack(head_logits, dim=1)  # (num_rows, num_heads, num_labels)
        probs = scaled_probabilities(logits, self.temperatures)  # (num_rows, num_heads, num_labels)
        exit_head = first_exit_head(probs, self._confidence_threshold)  # (num_rows,)
        rows = torch.arange(logits.shape[0], device=logits.device)
        return {
            "logits": logits[rows, exit_head],  # (num_rows, num_labels)
            "probs": probs[rows, exit_head],  # (num_rows, num_labels)
            "exit_head": exit_head,
            "head_logits": logits,
            "head_probs": probs,
        }

    def _previous_logits(self, head_logits: List[torch.Tensor]) -> Optional[torch.Tensor]:
        if not self.add_previous_layer_logits or not head_logits:
            return None
        return torch.cat(head_logits, dim=-1)  # (batch_size, num_previous_heads * num_labels)

    def _initial_row_sets(
        self, token_ids: torch.Tensor, mask: torch.BoolTensor, type_ids: Optional[torch.Tensor]
    ) -> List[RowSet]:
        """
        The batch's rows, embedded, as the layers will run them: packed at inference where the
        encoder allows it (BERT's embeddings run on the real tokens alone, other families' on
        sub-batches of similar length), else in sub-batches of similar length at inference
        (`split_by_length`), else as one padded batch. Together the row sets hold every row once.
        """
        batch_size = token_ids.shape[0]
        all_rows = torch.arange(batch_size, device=token_ids.device)  # (batch_size,)
        packing = not self.training and self.packed and self.encoder.supports_packing
        if packing and self.encoder.embeds_packed:
            # One embedding call on the real tokens (in batch order): nothing padded, no split.
            lengths = mask.sum(dim=1)  # (batch_size,)
            length_list = lengths.tolist()  # read once, for the embedding and the packing
            padded = min(length_list) < mask.shape[1]
            # (num_tokens, hidden_size)
            hidden = self.encoder.embed_packed(token_ids, mask, type_ids, padded)
            return [PackedRows.from_tokens(all_rows, hidden, lengths, length_list)]
        groups = [all_rows]  # one group: the batch as it is, in its order
        if not self.training and (packing or self.split_by_length) and batch_size > 1:
            # Embedded (and, unpacked, run) in sub-batches of similar length: little padding.
            split = length_sorted_groups(mask.sum(dim=1).tolist())
            if len(split) > 1:
                groups = [
                    torch.tensor(rows, dtype=torch.long, device=mask.device) for rows in split
                ]
        embedded = []
        for rows in groups:
            group_mask, group_ids, group_types = self._trimmed(rows, mask, token_ids, type_ids)
            hidden = self.encoder.embed(group_ids, group_types)  # (group, num_tokens, hidden_size)
            embedded.append((rows, hidden, group_mask))
        if packing:
            return [PackedRows.from_padded_groups(embedded)]
        return [RowGroup(*group) for group in embedded]

    @staticmethod
    def _trimmed(
        rows: torch.Tensor, *tensors: Optional[torch.Tensor]
    ) -> List[Optional[torch.Tensor]]:
        """`(batch_size, num_tokens)` tensors -> those rows, cut to the rows' longest length."""
        mask = tensors[0][rows]  # (group_size, num_tokens)
        length = int(mask.sum(dim=1).max())
        return [None if tensor is None else tensor[rows, :length] for tensor in tensors]

    def _advance(self, layer: int, row_set: RowSet) -> torch.Tensor:
        """Runs `layer` on the rows of `row_set`; returns their pooled output `(rows, hidden_size)`."""
        if isinstance(row_set, PackedRows):
            row_set.hidden = self.encoder.run_packed_layer(layer, row_set)  # (tokens, hidden)
            if self.head_pooling == "mean":
                return row_set.mean()  # (num_rows, hidden_size)
            # The first-token poolers read token 0 only: (num_rows, 1, hidden_size) is enough.
            return self._pool(row_set.first_tokens().unsqueeze(1), None)
        row_set.hidden = self.encoder.run_layer(layer, row_set.hidden, self._layer_mask(row_set))
        return self._pool(row_set.hidden, row_set.mask)  # (group_size, hidden_size)

    def _forward_all_heads_in_sets(
        self, row_sets: List[RowSet], batch_size: int
    ) -> Dict[str, torch.Tensor]:
        parts = [(row_set.rows, self._forward_all_heads(row_set)) for row_set in row_sets]
        if len(parts) == 1 and torch.equal(parts[0][0].cpu(), torch.arange(batch_size)):
            return parts[0][1]  # the whole batch in its order
        output = {}
        for key, first in parts[0][1].items():
            merged = first.new_empty((batch_size,) + tuple(first.shape[1:]))  # batch-first
            for rows, part in parts:
                merged[rows] = part[key]
            output[key] = merged
        return output

    def _layer_mask(self, group: RowGroup) -> Optional[torch.Tensor]:
        # Computed once per mask (None, meaning no padding, is a valid result too).
        if group.layer_mask_for is not group.mask:
            group.layer_mask = self.encoder.layer_mask(group.mask, group.hidden.dtype)
            group.layer_mask_for = group.mask
        return group.layer_mask

    def _forward_early_exit(
        self, row_sets: List[RowSet], batch_size: int
    ) -> Dict[str, torch.Tensor]:
        exits = ExitRecord()  # what each head decided, written into batch order once, at the end
        running = row_sets  # the rows still running, shortest first when split by length
        # What the heads read, for all running rows at once, in the order of the row sets' rows
        # (which selecting and regrouping keep): the heads and the exit rule run once per layer.
        pooled: List[torch.Tensor] = []  # per layer: (num_running, hidden_size)
        # per head passed, if later heads read them: (num_running, num_labels)
        head_logits: List[torch.Tensor] = []
        for layer in range(self.encoder.num_layers):
            layer_pooled = [self._advance(layer, row_set) for row_set in running]
            pooled.append(layer_pooled[0] if len(running) == 1 else torch.cat(layer_pooled))
            rows = running[0].rows if len(running) == 1 else torch.cat([g.rows for g in running])
            keep = self._exit_step(layer, rows, pooled, head_logits, exits)
            if keep is None:
                continue  # the same rows go on in the same row sets
            if keep.shape[0] == 0:
                break  # every row is done
            # The finished rows leave, with their tokens (and the padding only they needed).
            pooled, head_logits = self._staying(keep, pooled, head_logits)
            running = select_rows(running, keep)
            if len(running) > 1:
                running = regroup(running)
        self._exit_statistics.count(exits.heads)
        return self._in_batch_order(batch_size, exits)

    @staticmethod
    def _staying(
        keep: torch.BoolTensor, pooled: List[torch.Tensor], head_logits: List[torch.Tensor]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """What the heads read (`pooled`, `head_logits`) for the rows where `keep` is true."""
        staying = keep.nonzero().squeeze(1)  # (num_staying,)
        return (
            [layer_output.index_select(0, staying) for layer_output in pooled],
            [earlier.index_select(0, staying) for earlier in head_logits],
        )

    def _exit_step(
        self,
        layer: int,
        rows: torch.Tensor,
        pooled: List[torch.Tensor],
        head_logits: List[torch.Tensor],
        exits: ExitRecord,
    ) -> Optional[torch.BoolTensor]:
        """
        After `layer` has run on the running rows `rows` `(num_running,)`: the head of that layer
        (if it has one) and the exit rule. Records the rows that exit in `exits` and appends the
        head's logits to `head_logits` where later heads read them.

        # Returns

        `None` if every row goes on (no head here, or nobody exits); `ALL_DONE`, an empty tensor,
        if every row is done; else `keep` `(num_running,)`, true for the rows that go on.
        """
        head = self._head_of_layer.get(layer)
        if head is None:
            return None
        is_last = head == len(self.heads) - 1
        if not is_last and self._confidence_threshold >= 1.0 and not self.add_previous_layer_logits:
            return None  # nobody can exit here, and no later head reads this one's logits
        logits = self.heads[head](pooled, self._previous_logits(head_logits))  # (running, labels)
        probs = scaled_probabilities(logits, self._temperature_of(head))  # (running, labels)
        if is_last:  # every row that got here exits
            exits.add(rows, logits, probs, head, len(rows))
            return ALL_DONE
        if len(rows) == 1:  # the same decision on a Python bool: at batch size 1 operators count
            num_done = int(one_row_exits(probs, self._confidence_threshold))
        else:
            done = exits_at_head(probs, self._confidence_threshold, False)  # (running,)
            num_done = int(done.sum())  # the loop's one sync per head
        if num_done == len(rows):
            exits.add(rows, logits, probs, head, num_done)
            return ALL_DONE
        if num_done:
            exiting = done.nonzero().squeeze(1)  # (num_done,): the rows that exit here
            exits.add(rows[exiting], logits[exiting], probs[exiting], head, num_done)
        if self.add_previous_layer_logits:  # later heads read them
            head_logits.append(logits)
        return None if num_done == 0 else ~done

    def _in_batch_order(self, batch_size: int, exits: ExitRecord) -> Dict[str, torch.Tensor]:
        """
        The exit outputs, collected head by head, as batch-first tensors in the batch's order,
        with `exit_layer` and `relative_compute` (as `_add_exit_layers` gives them, here made
        from the heads' Python list).
        """
        # (batch_size,): each row once; (batch_size, num_labels) twice
        order, exit_logits, exit_probs = (
            parts[0] if len(parts) == 1 else torch.cat(parts)
            for parts in (exits.rows, exits.logits, exits.probs)
        )
        if exit_logits.dtype != torch.float:  # heads run in another precision
            exit_logits, exit_probs = exit_logits.float(), exit_probs.float()
        device = order.device
        values = [self._head_values[head] for head in exits.heads]  # (layer, compute) per row
        outputs = [
            exit_logits,  # (batch_size, num_labels)
            exit_probs,  # (batch_size, num_labels)
            torch.tensor(exits.heads, dtype=torch.long, device=device),  # (batch_size,)
            torch.tensor([layer for layer, _ in values], dtype=torch.long, device=device),
            torch.tensor([compute for _, compute in values], dtype=torch.float, device=device),
        ]
        if batch_size > 1:
            position = torch.empty_like(order)  # (batch_size,): each batch row's place in `order`
            position[order] = torch.arange(batch_size, device=device)
            outputs = [output[position] for output in outputs]
        keys = ("logits", "probs", "exit_head", "exit_layer", "relative_compute")
        return dict(zip(keys, outputs))

    @overrides
    def make_output_human_readable(
        self, output_dict: Dict[str, torch.Tensor]
    ) -> Dict[str, torch.Tensor]:
        """Adds `label`, the predicted label string of each instance."""
        predictions = output_dict["probs"]
        if predictions.dim() == 2:
            predictions_list = [predictions[i] for i in range(predictions.shape[0])]
        else:
            predictions_list = [predictions]
        output_dict["label"] = [
            self.vocab.get_token_from_index(int(p.argmax(dim=-1)), namespace=self._label_namespace)
            for p in predictions_list
        ]
        return output_dict

    @overrides
    def get_metrics(self, reset: bool = False) -> Dict[str, float]:
        metrics = {"accuracy": self._accuracy.get_metric(reset), "ece": self._ece.get_metric(reset)}
        metrics.update(self._exit_statistics.get_metric(reset))
        if self._head_accuracies_seen:
            for layer, accuracy in zip(self.exit_layers, self._head_accuracies):
                metrics[f"accuracy_layer_{layer}"] = accuracy.get_metric(reset)
            if reset:
                self._head_accuracies_seen = False
        return metrics

    @classmethod
    @overrides
    def _load(
        cls,
        config: Params,
        serialization_dir: Union[str, os.PathLike],
        weights_file: Optional[Union[str, os.PathLike]] = None,
        cuda_device: int = -1,
    ) -> "Model":
        # The archive's weights file holds the encoder's weights: build it from its config only,
        # read from the copy of the encoder's files the archive carries, where it has one.
        config = config.duplicate()
        model_config = config["model"]
        model_config["load_weights"] = False
        transformer_model = model_config.get("transformer_model", None)
        carried = carried_transformer(transformer_model, serialization_dir)
        if carried == transformer_model:
            return super()._load(config, serialization_dir, weights_file, cuda_device)
        model_config["transformer_model"] = carried
        model = super()._load(config, serialization_dir, weights_file, cuda_device)
        forget_carried_transformer(carried)  # the readers are built already
        return model
