import logging
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.params import Params
from allennlp.data import TextFieldTensors, Vocabulary
from allennlp.models.model import Model
from allennlp.nn import InitializerApplicator
from allennlp.training.metrics import CategoricalAccuracy
from overrides import overrides
from transformers import AutoConfig

from early_exit.common.registrables import registered
from early_exit.common.encoder_files import carried_transformer, forget_carried_transformer
from early_exit.models.batch_stream import MIN_TOKENS, BatchStream
from early_exit.models.inference_engine import InferenceEngine
from early_exit.models.inference_settings import InferenceSettings
from early_exit.modules.exit_head import ExitHead
from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy
from early_exit.modules.exit_policies.exit_policy import check_fraction
from early_exit.modules.layer_runners import LayerRunner
from early_exit.modules.layerwise_transformer import LayerwiseTransformer
from early_exit.metrics.exit_statistics import ExitStatistics
from early_exit.metrics.expected_calibration_error import ExpectedCalibrationError

logger = logging.getLogger(__name__)

HEAD_POOLING_CHOICES = ("cls_pooler", "cls", "mean")


@Model.register("early_exit_classifier")
class EarlyExitClassifier(Model):
    """
    A transformer classifier with classifier heads on several layers that lets each instance leave
    the network at the first head that is confident enough (Schwartz et al., 2020, "The Right Tool
    for the Job: Matching Model and Instance Complexities").

    Training runs every head and minimises the (weighted) sum of their cross-entropy losses. At
    inference the `exit_policy` decides after each head which instances leave (by default the
    paper's rule: the first head whose temperature-scaled maximum probability reaches
    `confidence_threshold`); the last head always answers. Exits are decided per instance: after
    each exit layer the finished rows leave the batch, and only the others go through the next
    layers. Layers above the last exit layer are removed. The loop itself is the model's
    `InferenceEngine`.

    At inference the layers run on the real tokens of all running rows packed together, without
    padding (`packed`), so that padding costs nothing and all rows share one matrix multiplication
    per linear layer. Outputs are those of running each instance alone (up to float noise).

    Accepts the output of this package's `early_exit_text_classification` and `early_exit_nli`
    readers and of allennlp-models' `snli` reader with a pretrained transformer tokenizer (a
    `tokens` text field and a `label` field).

    Registered as a `Model` with name "early_exit_classifier".

    # Parameters

    vocab : `Vocabulary`
    transformer_model : `str`
        A Hugging Face model name or local directory (BERT, RoBERTa, ELECTRA, MiniLM, DistilBERT
        ...).
    exit_layers : `List[int]`
        0-based transformer layer indices that get a classifier head, strictly increasing, e.g.
        `[0, 4, 12, 23]` for BERT-large as in the paper.
    head_pooling : `str`, optional (default = `"mean"`)
        How each layer is pooled into one vector before mixing: `"cls_pooler"` (the paper: the
        encoder's own pooler on that layer's first token, where the encoder has one), `"cls"` (the
        raw first-token vector) or `"mean"` (mask-aware mean over tokens).
    dropout : `float`, optional (default = `0.1`)
        Dropout before each head's linear layer.
    add_previous_layer_logits : `bool`, optional (default = `False`)
        Feed the logits of all earlier heads to each later head (a variant in the paper).
    loss_weights : `List[float]`, optional
        One weight per head for the summed training loss; all 1.0 by default.
    distillation_weight : `float`, optional (default = `0.0`)
        Self-distillation of the earlier heads from the last head (as in FastBERT, Liu et al. 2020):
        adds `distillation_weight * T^2 * KL(p_last || p_k)` for every earlier head `k`, with the
        last head's distribution at temperature `T = distillation_temperature` as a fixed (detached)
        target. 0 disables it (the paper's recipe).
    distillation_temperature : `float`, optional (default = `1.0`)
    temperatures : `List[float]`, optional
        One temperature per head (a buffer saved with the weights, never trained by the optimizer);
        all 1.0 by default. The calibration callback and `allennlp calibrate` set them.
    exit_policy : `ExitPolicy`, optional (default = `max_probability` at threshold 1.0)
        When an instance leaves: `{"type": "max_probability", "threshold": 0.9}` (the paper),
        `"entropy"`, `"patience"`, `"confident_patience"` or `"compute_budget"` (adapts a
        threshold to hold a mean compute on the stream; see `early_exit.modules.exit_policies`).
        Changeable at any time (`model.exit_policy = ...`).
    confidence_threshold : `float`, optional
        The shorthand for `{"type": "max_probability", "threshold": confidence_threshold}`, in
        [0, 1]: 1.0 means no early exit at all, 0.0 that every instance exits at the first head.
        Not together with `exit_policy`.
    run_all_heads : `bool`, optional (default = `False`)
        Run every layer and every head for every instance and also return each head's logits and
        probabilities (`head_logits`, `head_probs`); the exit decisions are still computed from
        those probabilities exactly as early exit would take them. Needed by calibration,
        threshold sweeps and per-head accuracies. Training always runs all heads.
    packed : `bool`, optional (default = `True`)
        At inference, run the encoder's layers on the real tokens only (`PackedRows`, one matrix for
        all running rows; only the attention is computed on rows padded, in groups of similar
        length), where the encoder supports it (self-attention with absolute positions: BERT,
        RoBERTa, ELECTRA, MiniLM, XLM-R, DistilBERT). Otherwise, or when `False`, the batch runs
        padded, losing the padding that only finished rows needed. Training never packs.
    split_by_length : `bool`, optional
        No longer used (every supported encoder packs); accepted so that older archives load.
    prepack_weights : `bool`, optional (default = `True`)
        For the default "torch" layer runner: on a CPU without gradients, run the encoder's linear
        layers through oneDNN with each weight reordered once into its blocked layout
        (`PrepackedLinear`), which lowers the fixed cost of a layer call. Results agree to float
        rounding. Ignored on GPUs, with gradients on and where torch has no oneDNN.
    layer_runner : `LayerRunner`, optional (default = `{"type": "torch"}`)
        How the encoder's layers are computed at inference: `{"type": "torch"}`, or
        `{"type": "onnxruntime", "precision": "fp32"}` / `"int8"` (each layer an ONNX Runtime
        session, exported once and cached). Exits, heads and policies are the same with every
        runner. Settable on the model (`layer_runner = ...`).
    runner_temperatures : `Dict[str, List[float]]`, optional
        Temperatures refitted for a layer runner that computes in another precision, by its
        `calibration_key` (e.g. `"onnxruntime_int8"`): used instead of `temperatures` while that
        runner runs the layers. `allennlp calibrate -o '{"model.layer_runner": ...}'` writes them.
    compute_curves : `Dict[str, List[List[float]]]`, optional
        The dev compute curves calibration stores next to the temperatures: by threshold policy,
        `[[threshold, mean relative compute], ...]` on the calibration data. `compute_budget`
        without a `start` starts where its wrapped policy's curve reaches the budget.
    label_namespace : `str`, optional (default = `"labels"`)
    load_weights : `bool`, optional (default = `True`)
        Load the encoder's pretrained weights. Set to `False` automatically when a model is loaded
        from an archive, whose weights file has them.
    initializer : `InitializerApplicator`, optional
        Applied to the whole model, its regexes matched against the model's parameter names
        (`heads.0.classifier.weight`, `encoder.transformer.encoder.layer.0...`): for example a
        `pretrained` initializer that starts a second training stage from the weights of a first
        (DeeBERT's two stages, `training_config/sst2_minilm_deebert_stage2.jsonnet`). Not applied
        when a model is loaded from an archive, whose weights file has every parameter.
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
        exit_policy: Optional[ExitPolicy] = None,
        confidence_threshold: Optional[float] = None,
        run_all_heads: bool = False,
        split_by_length: Optional[bool] = None,
        packed: bool = True,
        prepack_weights: bool = True,
        layer_runner: Optional[LayerRunner] = None,
        runner_temperatures: Optional[Dict[str, List[float]]] = None,
        compute_curves: Optional[Dict[str, List[List[float]]]] = None,
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
                "exit_layers must be strictly increasing (sorted, no duplicates), "
                f"got {exit_layers}"
            )
        if head_pooling not in HEAD_POOLING_CHOICES:
            raise ConfigurationError(
                f"head_pooling must be one of {', '.join(HEAD_POOLING_CHOICES)}; "
                f"got {head_pooling!r}"
            )
        if exit_layers[0] < 0:
            raise ConfigurationError(
                f"exit_layers must be 0-based layer indices, got {exit_layers}"
            )
        num_heads = len(exit_layers)
        loss_weights = self._per_head_values("loss_weights", loss_weights, num_heads, 1.0)
        temperatures = self._per_head_values("temperatures", temperatures, num_heads, 1.0)
        if any(not weight >= 0 for weight in loss_weights):
            raise ConfigurationError(f"loss_weights must not be negative, got {loss_weights}")
        if not any(weight > 0 for weight in loss_weights):
            # The training loss would be 0 whatever the weights: training "succeeds" and archives
            # a model that learned nothing.
            raise ConfigurationError(
                f"loss_weights are all 0 ({loss_weights}): nothing would be trained; give at "
                "least one head a positive weight"
            )
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
            layer_runner=layer_runner,
        )
        self.exit_layers = exit_layers
        self.full_depth = self.encoder.full_depth
        self.head_pooling = head_pooling
        hidden_size = self.encoder.hidden_size
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
        self.runner_temperatures: Dict[str, torch.Tensor] = {}
        for key, values in (runner_temperatures or {}).items():
            name = f"runner_temperatures[{key!r}]"
            self.runner_temperatures[key] = self._checked_temperatures(values, name)
        self._warned_runner_temperatures: Optional[str] = None
        self.compute_curves = compute_curves
        if exit_policy is not None and confidence_threshold is not None:
            raise ConfigurationError(
                "give either exit_policy or confidence_threshold (the shorthand for a "
                "max_probability policy), not both"
            )
        if split_by_length is not None:
            logger.warning("split_by_length is no longer used: every supported encoder packs")
        self.exit_policy = exit_policy if exit_policy is not None else MaxProbabilityPolicy(1.0)
        if confidence_threshold is not None:
            self.confidence_threshold = confidence_threshold
        self.run_all_heads = run_all_heads
        self.packed = packed
        self._engine = InferenceEngine(self)

        self._accuracy = CategoricalAccuracy()
        self._ece = ExpectedCalibrationError()
        self._exit_statistics = ExitStatistics(exit_layers, self.full_depth)
        self._head_accuracies = [CategoricalAccuracy() for _ in exit_layers]
        self._head_accuracies_seen = False
        self._loss = torch.nn.CrossEntropyLoss(reduction="none")
        if initializer is not None:
            initializer(self)

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
    def engine(self) -> InferenceEngine:
        """The layer loop that runs this model's encoder, heads and exit policy."""
        return self._engine

    @property
    def exit_policy(self) -> ExitPolicy:
        """The `ExitPolicy` inference decides exits with; settable."""
        return self._exit_policy

    @exit_policy.setter
    def exit_policy(self, policy: ExitPolicy) -> None:
        if not isinstance(policy, ExitPolicy):
            raise ConfigurationError(f"exit_policy must be an ExitPolicy, got {policy!r}")
        policy.check_heads([(layer + 1) / self.full_depth for layer in self.exit_layers])
        self._exit_policy = policy

    @property
    def confidence_threshold(self) -> Optional[float]:
        """The threshold of a `max_probability` exit policy (`None` under another policy)."""
        policy = self._exit_policy
        return policy.threshold if isinstance(policy, MaxProbabilityPolicy) else None

    @confidence_threshold.setter
    def confidence_threshold(self, value: float) -> None:
        """Sets a `max_probability` exit policy at threshold `value`, in [0, 1]."""
        self._exit_policy = MaxProbabilityPolicy(check_fraction("confidence_threshold", value))

    def inference_settings(self) -> InferenceSettings:
        """
        The model's own settings (its `exit_policy`, `run_all_heads` and `packed`): what `forward`
        runs with when no `settings` are passed.
        """
        return InferenceSettings(self._exit_policy, self.run_all_heads, self.packed)

    @property
    def layer_runner(self) -> LayerRunner:
        """How the encoder's layers are computed; settable (a `LayerRunner` or its config)."""
        return self.encoder.layer_runner

    @layer_runner.setter
    def layer_runner(self, runner: Union[LayerRunner, Dict[str, Any]]) -> None:
        self.encoder.use_layer_runner(registered(LayerRunner, runner, "layer_runner"))

    @property
    def serving_temperatures(self) -> torch.Tensor:
        """
        `(num_heads,)`: the temperatures inference scales the heads' logits by: the layer
        runner's own (`runner_temperatures`) where it computes in another precision and has
        them, else `temperatures`.
        """
        key = self.encoder.layer_runner.calibration_key()
        if key is None:
            return self.temperatures
        own = self.runner_temperatures.get(key)
        if own is not None:
            if own.device != self.temperatures.device:
                own = self.runner_temperatures[key] = own.to(self.temperatures.device)
            return own
        if self._warned_runner_temperatures != key:
            self._warned_runner_temperatures = key
            logger.warning(
                "layer runner %s has no temperatures of its own (runner_temperatures[%r]): its "
                "confidences are scaled with the float32 model's; refit them with allennlp "
                "calibrate ARCHIVE DATA -o '{\"model.layer_runner\": ...}'",
                self.encoder.layer_runner.describe(),
                key,
            )
        return self.temperatures

    def set_temperatures(self, temperatures: List[float]) -> None:
        """
        Replaces the per-head temperatures the current layer runner serves with (validated like
        the constructor argument): `temperatures` itself, or `runner_temperatures` under the
        runner's `calibration_key`.
        """
        key = self.encoder.layer_runner.calibration_key()
        values = self._checked_temperatures(temperatures, "temperatures")
        if key is None:
            self.temperatures.copy_(values)
        else:
            self.runner_temperatures[key] = values.to(self.temperatures.device)

    def _checked_temperatures(self, temperatures: List[float], name: str) -> torch.Tensor:
        values = self._per_head_values(name, temperatures, len(self.exit_layers), 1.0)
        if any(not temperature > 0 for temperature in values):
            raise ConfigurationError(f"{name} must be positive, got {values}")
        return torch.tensor(values, dtype=torch.float)  # (num_heads,)

    @overrides(check_signature=False)
    def forward(  # type: ignore
        self,
        tokens: TextFieldTensors,
        label: Optional[torch.IntTensor] = None,
        settings: Optional[InferenceSettings] = None,
        **kwargs: Any,
    ) -> Dict[str, torch.Tensor]:
        """
        # Parameters

        tokens : `TextFieldTensors`
            From a `PretrainedTransformerIndexer`: `token_ids`, `mask` and (optionally) `type_ids`,
            each of shape `(batch_size, num_tokens)`.
        label : `torch.IntTensor`, optional
            Gold labels, shape `(batch_size,)`.
        settings : `InferenceSettings`, optional
            The exit policy, `run_all_heads` and `packed` of this call; the model's own
            (`inference_settings()`) when not given. The model is not changed.

        # Returns

        An output dictionary, every tensor batch-first:

        - `logits` `(batch_size, num_labels)`: the raw logits of the head each instance exited at;
        - `probs` `(batch_size, num_labels)`: its temperature-scaled probabilities;
        - `exit_head` `(batch_size,)`: the index of that head; `exit_layer` `(batch_size,)`: its
          0-based transformer layer; `relative_compute` `(batch_size,)`:
          `(exit_layer + 1) / full_depth`;
        - `exit_threshold` `(batch_size,)`, float64: under an adapting exit policy
          (`compute_budget`), the threshold the batch was decided with;
        - `head_logits`, `head_probs` `(batch_size, num_heads, num_labels)`: every head's raw logits
          and temperature-scaled probabilities, only when all heads were run (training,
          `run_all_heads`, or a policy that never exits early with labels, where every layer is
          computed anyway);
        - `loss` when labels are given: when all heads ran, the weighted sum of every head's
          cross-entropy (plus self-distillation, if enabled); otherwise the cross-entropy of the
          exit predictions.
        """
        # Every head runs in training, on request, and without early exit when labels are given
        # (every layer is computed anyway, so per-head accuracies cost only the heads). Prediction
        # without early exit computes only the heads it needs.
        engine = self._engine
        settings = settings or self.inference_settings()
        no_early_exit = settings.exit_policy.never_exits_early(engine.num_heads)
        all_heads = self.training or settings.run_all_heads or (no_early_exit and label is not None)
        settings.exit_policy.use_compute_curves(self.compute_curves)  # where compute_budget starts
        threshold = settings.exit_policy.adapted_threshold()  # before this batch moves it
        rows = engine.initial_rows(tokens, settings)
        batch_size = len(rows)
        exits = engine.run(rows, settings, all_heads)
        output = engine.batch_outputs(exits, batch_size, settings)
        if threshold is not None:
            compute = output["relative_compute"]  # (batch_size,)
            output["exit_threshold"] = torch.full_like(compute, threshold, dtype=torch.double)
        heads = output["exit_head"].tolist() if all_heads or threshold is not None else exits.heads
        engine.count_exits(heads, settings)

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

    def stream(
        self, min_tokens: int = MIN_TOKENS, settings: Optional[InferenceSettings] = None
    ) -> BatchStream:
        """
        A `BatchStream` over this model: prediction of many batches with the rows that go on
        carried into later layer calls together with the rows of later batches, so that at
        inference a layer call after the first waits until rows with `min_tokens` tokens need it
        (`allennlp predict` with the `early_exit_classifier` predictor predicts this way), with
        `settings` (the model's own when not given).
        """
        return BatchStream(self, min_tokens, settings)

    def forward_stream(
        self,
        batches: Iterable[Dict[str, Any]],
        min_tokens: int = MIN_TOKENS,
        settings: Optional[InferenceSettings] = None,
    ) -> Iterator[Dict[str, torch.Tensor]]:
        """
        Predicts `batches` (each `forward`'s keyword arguments) through `stream`, yielding each
        batch's output dictionary, batch-first as `forward`'s, in the batches' order.
        """
        stream = self.stream(min_tokens, settings)
        for batch in batches:
            yield from stream.push(**batch)
        yield from stream.finish()

    def _distillation_loss(self, head_logits: torch.Tensor) -> torch.Tensor:
        """
        `head_logits` `(batch_size, num_heads, num_labels)` -> the scalar self-distillation loss.
        """
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
        # allennlp's metrics are numbers (its progress bar, console log and TensorBoard format
        # them so): the policy is named by the metrics' names, e.g. exit_policy_entropy_threshold.
        policy = self._exit_policy
        for name, value in policy.metrics(reset).items():
            metrics[f"exit_policy_{policy.registered_name()}_{name}"] = value
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
        # Initializers (a first training stage's weights, say) would be overwritten anyway.
        model_config.pop("initializer", None)
        transformer_model = model_config.get("transformer_model", None)
        carried = carried_transformer(transformer_model, serialization_dir)
        if carried == transformer_model:
            return super()._load(config, serialization_dir, weights_file, cuda_device)
        model_config["transformer_model"] = carried
        model = super()._load(config, serialization_dir, weights_file, cuda_device)
        forget_carried_transformer(carried)  # the readers are built already
        return model
