import inspect
import json
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy
import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.util import JsonDict, sanitize
from allennlp.data import DatasetReader, Instance
from allennlp.models import Model
from allennlp.predictors.predictor import Predictor
from overrides import overrides

from early_exit.common.registrables import registered
from early_exit.common.json_lines import InvalidJsonLine, decode_json_line
from early_exit.common.cli_errors import UserError
from early_exit.dataset_readers.errors import NoWordpiecesError, surely_has_wordpieces
from early_exit.models.batch_stream import BatchStream
from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.model_inputs import batch_on_device
from early_exit.models.inference_settings import InferenceSettings
from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy
from early_exit.modules.exit_policies.exit_policy import check_fraction
from early_exit.modules.layer_runners import LayerRunner

_END = object()  # the end of a stream of inputs

# How many characters of an offending input line an error message quotes.
_MAX_QUOTED_CHARS = 200
# Characters that end a line (`str.splitlines`), quoted as JSON escapes: the message stays one line.
_LINE_BREAKS = {
    ord(char): json.dumps(char)[1:-1] for char in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
}


class PredictorInputError(UserError, ValueError):
    """
    Raised for an input line the `early_exit_classifier` predictor cannot use. The message says
    which keys were expected and quotes the line.
    """


def _quote(line: str) -> str:
    line = line.strip().translate(_LINE_BREAKS)
    if len(line) > _MAX_QUOTED_CHARS:
        line = line[:_MAX_QUOTED_CHARS] + "..."
    return line


@Predictor.register("early_exit_classifier")
class EarlyExitClassifierPredictor(Predictor):
    """
    Predicts with an `early_exit_classifier` model, one JSON object per input line, at a confidence
    threshold chosen per run. It is the model's default predictor, so `allennlp predict` needs no
    `--predictor` for it.

    Input lines are `{"sentence": "..."}` (or `{"text": "..."}`) for single-text classification and
    `{"premise": "...", "hypothesis": "..."}` for natural language inference, depending on the
    archive's dataset reader (this package's readers or allennlp-models' `snli` reader). Other keys
    (a gold `"label"`, ids) are ignored.

    Each output line has:

    - `label`: the predicted label;
    - `confidence`: its probability (the maximum temperature-scaled probability of the head that
      answered);
    - `probs`: the probability of each label, in the order of `label_probs`;
    - `label_probs`: a dictionary from each label to its probability;
    - `exit_head`: the index of the head that answered; `exit_layer`: its 0-based encoder layer;
    - `relative_compute`: the fraction of the full encoder's layers computed,
      `(exit_layer + 1) / full_depth`;
    - `exit_threshold`: under the `compute_budget` policy, the threshold the line was decided
      with (it moves as the stream goes; lines depend on the input's order and the batch size);
    - `head_probs` and `head_logits` (every head's probabilities and raw logits), only when the
      model runs all heads (`run_all_heads`).

    Outputs do not depend on the batch size: every instance exits on its own, and probabilities are
    rounded to `decimals` places so that the float noise of padded batches (around 1e-7) does not
    show (unless a probability lies that close to a rounding boundary, when the last digit may
    differ by one).

    A batch (`predict_batch_json`, `predict_batch_instance`, `allennlp predict --batch-size N`) goes
    to the model whole; the model runs its layers on the real tokens only (its `packed`) and
    returns the outputs in input order: in file order a batch of 32 sentences is about half
    padding. The model runs under `torch.inference_mode`.

    `allennlp predict` skips blank input lines; `load_line` itself raises a `PredictorInputError`
    for one, as for a line that is not a JSON object or lacks the expected keys.

    Registered as a `Predictor` with name "early_exit_classifier".

    # Parameters

    model : `Model`
        An `EarlyExitClassifier`; any other model is a `ConfigurationError`.
    dataset_reader : `DatasetReader`
    frozen : `bool`, optional (default = `True`)
        Put the model in evaluation mode.
    confidence_threshold : `float`, optional (default = `None`)
        A number in [0, 1] (`true` is refused, not read as 1.0): sets a `max_probability` exit
        policy at this threshold for this predictor; the model it wraps is not changed (another
        predictor may share it with another policy). `None` keeps the archive's policy. Give it
        as `--predictor-args '{"confidence_threshold": 0.8}'` to `allennlp predict`, or as a
        keyword argument of `Predictor.from_path`.
    exit_policy : `Union[ExitPolicy, Dict[str, Any]]`, optional (default = `None`)
        Sets this predictor's exit policy (the model is not changed), e.g. `--predictor-args
        '{"exit_policy": {"type": "patience", "patience": 2}}'` (a dictionary as in a config) or
        an `ExitPolicy`. Not together with `confidence_threshold`.
    decimals : `int`, optional (default = `4`)
        Probabilities and `relative_compute` are rounded to this many decimal places.
    carry_rows : `bool`, optional (default = `True`)
        How `allennlp predict --batch-size N` (N > 1) predicts a file: `True` streams its batches
        through the model's `BatchStream` (`predict_json_stream`), where the rows that go on past
        a head wait for the rows of the next batches until a layer has 2,048 tokens to run,
        instead of running on what is left of one batch (a layer call has a fixed cost however few
        rows it runs, and small products are slower per token). The output
        lines are the same, in the same order; a batch's lines are written once all of its rows
        have exited, so they can come some batches later.
        `False` predicts each batch on its own (`predict_batch_json`), as allennlp does.
    layer_runner : `Union[LayerRunner, Dict[str, Any]]`, optional (default = `None`)
        Sets how the model's layers are computed, e.g. `--predictor-args '{"layer_runner":
        {"type": "onnxruntime", "precision": "int8"}}'`. `None` keeps the archive's runner.
    """

    def __init__(
        self,
        model: Model,
        dataset_reader: DatasetReader,
        frozen: bool = True,
        confidence_threshold: Optional[float] = None,
        exit_policy: Optional[Union[ExitPolicy, Dict[str, Any]]] = None,
        decimals: int = 4,
        carry_rows: bool = True,
        layer_runner: Optional[Union[LayerRunner, Dict[str, Any]]] = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"unknown argument(s) for the early_exit_classifier predictor: "
                f"{', '.join(sorted(unknown))}; it takes confidence_threshold, exit_policy, "
                "decimals, carry_rows and layer_runner"
            )
        if not isinstance(model, EarlyExitClassifier):
            raise ConfigurationError(
                f"the early_exit_classifier predictor needs an early_exit_classifier model, "
                f"got a {type(model).__name__}"
            )
        if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
            raise ConfigurationError(f"decimals must be a non-negative integer, got {decimals!r}")
        super().__init__(model, dataset_reader, frozen)
        self._early_exit_model = model
        self._exit_policy: Optional[ExitPolicy] = None  # `None`: the model's own
        if confidence_threshold is not None and exit_policy is not None:
            raise ConfigurationError(
                "give either exit_policy or confidence_threshold (the shorthand for a "
                "max_probability policy), not both"
            )
        if confidence_threshold is not None:
            self.confidence_threshold = confidence_threshold
        if exit_policy is not None:
            self.exit_policy = exit_policy
        if layer_runner is not None:
            model.layer_runner = layer_runner  # validated by the model
        self._decimals = decimals
        if not isinstance(carry_rows, bool):
            raise ConfigurationError(f"carry_rows must be true or false, got {carry_rows!r}")
        self.carry_rows = carry_rows
        self._labels: List[str] = [
            model.vocab.get_token_from_index(index, namespace=model._label_namespace)
            for index in range(model.num_labels)
        ]
        parameters = inspect.signature(dataset_reader.text_to_instance).parameters
        self._pair_input = "premise" in parameters and "hypothesis" in parameters

    @property
    def confidence_threshold(self) -> Optional[float]:
        """The threshold this predictor exits at (`None` under another policy)."""
        policy = self.exit_policy
        return policy.threshold if isinstance(policy, MaxProbabilityPolicy) else None

    @confidence_threshold.setter
    def confidence_threshold(self, value: float) -> None:
        self._exit_policy = MaxProbabilityPolicy(check_fraction("confidence_threshold", value))

    @property
    def exit_policy(self) -> ExitPolicy:
        """This predictor's exit policy: its own if set, else the wrapped model's."""
        return self._exit_policy or self._early_exit_model.exit_policy

    @exit_policy.setter
    def exit_policy(self, policy: Union[ExitPolicy, Dict[str, Any]]) -> None:
        """Takes an `ExitPolicy` or its config, e.g. `{"type": "entropy", "threshold": 0.3}`."""
        policy = registered(ExitPolicy, policy, "exit_policy")
        policy.check_heads(self._early_exit_model.engine.head_compute)
        self._exit_policy = policy

    def settings(self) -> InferenceSettings:
        """What this predictor's model calls run with: the model's, with this exit policy."""
        return self._early_exit_model.inference_settings().replace(exit_policy=self.exit_policy)

    def predict(self, sentence: str) -> JsonDict:
        """Classifies one text (for models trained on single texts)."""
        return self.predict_json({"sentence": sentence})

    def predict_pair(self, premise: str, hypothesis: str) -> JsonDict:
        """Classifies one premise and hypothesis (for models trained on sentence pairs)."""
        return self.predict_json({"premise": premise, "hypothesis": hypothesis})

    @overrides
    def load_line(self, line: str) -> JsonDict:
        if not line.strip():
            raise PredictorInputError(
                "empty input line; expected one JSON object per line, e.g. "
                + self._expected_example()
            )
        try:
            inputs = decode_json_line(line)
        except InvalidJsonLine as error:
            raise PredictorInputError(
                f"input line is not valid JSON ({error}); expected "
                f"one JSON object per line, e.g. {self._expected_example()}; got: {_quote(line)}"
            ) from None
        if not isinstance(inputs, dict):
            raise PredictorInputError(
                f"input line is a JSON {type(inputs).__name__}, not an object; expected e.g. "
                f"{self._expected_example()}; got: {_quote(line)}"
            )
        # Checked here too, where `allennlp predict` knows the line number; only a text of no
        # letter, digit or punctuation needs tokenizing to know whether it has wordpieces.
        texts = self._texts(inputs)
        if not all(surely_has_wordpieces(text) for text in texts):
            self._json_to_instance(inputs)
        return inputs

    @overrides
    def _json_to_instance(self, json_dict: JsonDict) -> Instance:
        if not isinstance(json_dict, dict):
            raise PredictorInputError(
                f"expected a JSON object such as {self._expected_example()}, "
                f"got {type(json_dict).__name__}: {_quote(repr(json_dict))}"
            )
        try:
            return self._dataset_reader.text_to_instance(*self._texts(json_dict))
        except NoWordpiecesError as error:
            raise PredictorInputError(error.problem) from None

    def _texts(self, json_dict: JsonDict) -> List[str]:
        """The text (or premise and hypothesis) of an input, or a `PredictorInputError`."""
        if self._pair_input:
            return [self._text_value(json_dict, (key,)) for key in ("premise", "hypothesis")]
        return [self._text_value(json_dict, ("sentence", "text"))]

    def _text_value(self, json_dict: JsonDict, keys: tuple) -> str:
        present = [key for key in keys if key in json_dict]
        expected = " or ".join(json.dumps(key) for key in keys)
        if not present:
            task = "sentence pairs" if self._pair_input else "single texts"
            raise PredictorInputError(
                f"input line has no {expected} key (this model classifies {task}; expected "
                f"{self._expected_example()}); got: {_quote(json.dumps(json_dict))}"
            )
        if len(present) > 1:
            raise PredictorInputError(
                f"input line has both {' and '.join(json.dumps(key) for key in present)}; give "
                f"one of them: {_quote(json.dumps(json_dict))}"
            )
        value = json_dict[present[0]]
        if not isinstance(value, str) or not value.strip():
            raise PredictorInputError(
                f'"{present[0]}" must be a non-empty string, got {json.dumps(value)} in: '
                f"{_quote(json.dumps(json_dict))}"
            )
        return value

    def _expected_example(self) -> str:
        if self._pair_input:
            return '{"premise": "...", "hypothesis": "..."}'
        return '{"sentence": "..."} or {"text": "..."}'

    @overrides
    def predict_instance(self, instance: Instance) -> JsonDict:
        return self.predict_batch_instance([instance])[0]

    @overrides
    def predict_batch_instance(self, instances: List[Instance]) -> List[JsonDict]:
        for instance in instances:
            self._dataset_reader.apply_token_indexers(instance)
        # The model runs the batch in sub-batches of similar length and merges them as rows exit.
        return [self._format(output) for output in self._forward_on_instances(instances)]

    def _forward_on_instances(self, instances: List[Instance]) -> List[Dict[str, numpy.ndarray]]:
        """
        `Model.forward_on_instances`, with the same outputs, minus its per-call cost: that finds
        the model's device by visiting every parameter, which weighs on a sentence that exits early
        at batch size 1; here the first parameter says it. Runs
        under `torch.inference_mode` rather than `torch.no_grad`.
        """
        with torch.inference_mode():
            outputs = self._model(**self._model_input(instances), settings=self.settings())
            return self._separated(outputs, len(instances))

    def _model_input(self, instances: List[Instance]) -> Dict[str, Any]:
        """The instances (token indexers applied) as one batch of model inputs on its device."""
        return batch_on_device(self._model, instances)

    def _separated(
        self, outputs: Dict[str, Any], batch_size: int
    ) -> List[Dict[str, numpy.ndarray]]:
        """A batch's model outputs, human-readable, as one dictionary of arrays per instance."""
        outputs = self._model.make_output_human_readable(outputs)
        separated: List[Dict[str, numpy.ndarray]] = [{} for _ in range(batch_size)]
        for name, output in outputs.items():
            if isinstance(output, torch.Tensor):
                if output.dim() == 0:
                    output = output.unsqueeze(0)
                if output.size(0) != batch_size:
                    continue
                output = output.detach().cpu().numpy()
            elif len(output) != batch_size:
                continue
            for instance_output, element in zip(separated, output):
                instance_output[name] = element
        return separated

    def predict_json_stream(
        self, inputs: Iterable[JsonDict], batch_size: int
    ) -> Iterator[Tuple[JsonDict, JsonDict]]:
        """
        Predicts a stream of JSON inputs (as `predict_json` takes them) in batches of
        `batch_size`, through the model's `BatchStream`: the rows that go on past a head wait for
        the rows of later batches. Yields `(input, output)` pairs in input order, each output as
        `predict_json` gives it; a batch's pairs come once all its rows have exited.

        If reading or converting an input raises (a bad line), the inputs before it are predicted
        and yielded first, then the error is raised.
        """
        return self._stream(inputs, self._json_to_instance, batch_size)

    def predict_instance_stream(
        self, instances: Iterable[Instance], batch_size: int
    ) -> Iterator[Tuple[Instance, JsonDict]]:
        """`predict_json_stream` for instances (as `predict_instance` takes them)."""
        return self._stream(instances, lambda instance: instance, batch_size)

    def _stream(
        self, inputs: Iterable[Any], to_instance: Callable[[Any], Instance], batch_size: int
    ) -> Iterator[Tuple[Any, JsonDict]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        stream = BatchStream(self._early_exit_model, settings=self.settings())
        # The batches not yet answered: their inputs (not their instances, which would stay alive
        # for as long as a row waits, up to a few dozen batches).
        pending: Deque[List[Any]] = deque()

        def answered(outputs: List[Dict[str, Any]]) -> Iterator[Tuple[Any, JsonDict]]:
            for output in outputs:
                batch_inputs = pending.popleft()
                for item, instance_output in zip(
                    batch_inputs, self._separated(output, len(batch_inputs))
                ):
                    yield item, self._format(instance_output)

        def push(batch_inputs: List[Any], instances: List[Instance]) -> List[Dict[str, Any]]:
            for instance in instances:
                self._dataset_reader.apply_token_indexers(instance)
            pending.append(batch_inputs)
            with torch.inference_mode():
                return stream.push(**self._model_input(instances))

        batch_inputs: List[Any] = []
        instances: List[Instance] = []
        failure: Optional[Exception] = None  # a bad input, raised once the inputs before it are out
        iterator = iter(inputs)
        while True:
            try:
                item = next(iterator, _END)
                if item is _END:
                    break
                instance = to_instance(item)
            except Exception as error:
                failure = error
                break
            batch_inputs.append(item)
            instances.append(instance)
            if len(instances) == batch_size:
                outputs = push(batch_inputs, instances)
                batch_inputs, instances = [], []
                yield from answered(outputs)
        if instances:
            yield from answered(push(batch_inputs, instances))
        with torch.inference_mode():
            outputs = stream.finish()
        yield from answered(outputs)
        if failure is not None:
            raise failure

    def _format(self, output: Dict[str, Any]) -> JsonDict:
        output = sanitize(output)
        probs = [round(float(prob), self._decimals) for prob in output["probs"]]
        formatted = {
            "label": output["label"],
            "confidence": max(probs),
            "probs": probs,
            "label_probs": dict(zip(self._labels, probs)),
            "exit_head": int(output["exit_head"]),
            "exit_layer": int(output["exit_layer"]),
            "relative_compute": round(float(output["relative_compute"]), self._decimals),
        }
        if "exit_threshold" in output:  # an adapting policy's, at full precision
            formatted["exit_threshold"] = float(output["exit_threshold"])
        if "head_probs" in output:
            formatted["head_probs"] = [
                [round(float(prob), self._decimals) for prob in head]
                for head in output["head_probs"]
            ]
            formatted["head_logits"] = output["head_logits"]
        return formatted
