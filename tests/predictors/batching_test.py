"""
The fast paths of batched prediction: the model runs each whole batch packed (the real tokens only)
or, with packing off, in sub-batches of similar length merged as rows exit; outputs come back in
input order, and the predictor's own `forward_on_instances` runs under `torch.inference_mode`.
Every output must equal the straightforward path's (allennlp's `Model.forward_on_instances` on the
whole padded batch, unsplit) and that of each line alone.
"""

import json
import random

import numpy
import pytest
import torch
from allennlp.predictors import Predictor

from early_exit.models.model_inputs import inference_switches
from tests.predictors.early_exit_classifier_test import _lines, assert_same_predictions
from tests.sweep.trained_models import TEXT_JSONL, trained_archive


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor.from_path(trained_archive(tmp_path_factory, "text"), "early_exit_classifier")


def _varied_lines():
    """Fixture texts plus very short and long ones, shuffled: sub-batches must be restored."""
    texts = [line["sentence" if "sentence" in line else "text"] for line in _lines(TEXT_JSONL)]
    texts = (
        texts[:16] + ["Boring.", "Fine.", "Great!"] + [" ".join(texts[i : i + 3]) for i in (0, 4)]
    )
    random.Random(0).shuffle(texts)
    return [{"sentence": text} for text in texts]


def _reference(predictor, lines):
    """The straightforward path: one padded batch through allennlp's `forward_on_instances`."""
    instances = [predictor._json_to_instance(line) for line in lines]
    for instance in instances:
        predictor._dataset_reader.apply_token_indexers(instance)
    model = predictor._model
    with inference_switches(model, exit_policy=predictor.exit_policy, packed=False):
        outputs = model.forward_on_instances(instances)
    return [predictor._format(output) for output in outputs]


@pytest.fixture(params=["mixed", 1.0, 0.0])
def threshold(request, predictor):
    if request.param != "mixed":
        return request.param
    # The median first-head confidence: about half the instances exit there.
    predictor.confidence_threshold = 1.0
    predictor._model.run_all_heads = True
    try:
        outputs = _reference(predictor, _varied_lines())
    finally:
        predictor._model.run_all_heads = False
    confidences = sorted(max(output["head_probs"][0]) for output in outputs)
    middle = len(confidences) // 2
    return (confidences[middle - 1] + confidences[middle]) / 2


@pytest.fixture(params=["packed", "by_length"])
def batching(request, predictor):
    predictor._model.packed = request.param == "packed"
    yield request.param
    predictor._model.packed = True


class TestBatchedPredictions:
    def test_same_outputs_as_one_padded_batch_in_input_order(self, predictor, threshold, batching):
        predictor.confidence_threshold = threshold
        lines = _varied_lines()
        fast = [predictor.dump_line(output) for output in predictor.predict_batch_json(lines)]
        reference = [predictor.dump_line(output) for output in _reference(predictor, lines)]
        singles = [predictor.dump_line(predictor.predict_json(line)) for line in lines]
        assert_same_predictions(fast, reference)
        assert_same_predictions(fast, singles)
        if threshold not in (0.0, 1.0):
            assert len({json.loads(line)["exit_layer"] for line in fast}) > 1

    def test_the_model_packs_each_batch_and_computes_only_running_tokens(
        self, predictor, threshold, monkeypatch
    ):
        model = predictor._model
        assert model.packed and model.encoder.supports_packing
        predictor.confidence_threshold = threshold
        forward_calls = []  # batch sizes
        layer_inputs = {index: [] for index in range(len(model.encoder.layers))}  # input shapes
        forward = model.forward

        def recording_forward(**inputs):
            forward_calls.append(inputs["tokens"]["tokens"]["mask"].shape[0])
            return forward(**inputs)

        def record(index):
            def hook(module, inputs, output):
                layer_inputs[index].append(tuple(inputs[0].shape))

            return hook

        monkeypatch.setattr(model, "forward", recording_forward)
        handles = [
            layer.attention.self.query.register_forward_hook(record(index))
            for index, layer in enumerate(model.encoder.layers)
        ]
        lines = _varied_lines()
        try:
            outputs = predictor.predict_batch_json(lines)
        finally:
            for handle in handles:
                handle.remove()
        assert forward_calls == [len(lines)]
        lengths = [
            len(predictor._json_to_instance(line)["tokens"].tokens) for line in lines
        ]  # wordpieces with special tokens
        exits = [output["exit_layer"] for output in outputs]
        for layer, shapes in layer_inputs.items():
            running_tokens = sum(n for n, exit in zip(lengths, exits) if exit >= layer)
            # One call per layer that anybody reaches, on exactly the running rows' real tokens.
            assert shapes == ([(running_tokens, shapes[0][-1])] if running_tokens else [])

    def test_unpacked_the_batch_runs_padded_and_shrinks_as_rows_exit(
        self, predictor, threshold, monkeypatch
    ):
        model = predictor._model
        monkeypatch.setattr(model, "packed", False)  # as for an encoder that cannot be packed
        predictor.confidence_threshold = threshold
        forward_calls = []  # (batch size, under inference mode)
        layer_shapes = {index: [] for index in range(len(model.encoder.layers))}  # (rows, tokens)
        forward = model.forward

        def recording_forward(**inputs):
            mask = inputs["tokens"]["tokens"]["mask"]
            forward_calls.append((mask.shape[0], torch.is_inference_mode_enabled()))
            return forward(**inputs)

        def record(index):
            def hook(module, inputs, output):
                layer_shapes[index].append(tuple(inputs[0].shape[:2]))

            return hook

        monkeypatch.setattr(model, "forward", recording_forward)
        handles = [
            layer.register_forward_hook(record(index))
            for index, layer in enumerate(model.encoder.layers)
        ]
        try:
            lines = _varied_lines()
            outputs = predictor.predict_batch_json(lines)
        finally:
            for handle in handles:
                handle.remove()
        assert forward_calls == [(len(lines), True)]  # the whole batch, in one call
        exits = [output["exit_layer"] for output in outputs]
        for layer, shapes in layer_shapes.items():
            # One call per layer anybody reaches, on exactly the rows that have not exited yet.
            running = sum(exit >= layer for exit in exits)
            assert [rows for rows, _ in shapes] == ([running] if running else [])

    def test_forward_on_instances_equals_allennlps_exactly(self, predictor, threshold):
        predictor.confidence_threshold = threshold
        instances = [predictor._json_to_instance(line) for line in _varied_lines()]
        for instance in instances:
            predictor._dataset_reader.apply_token_indexers(instance)
        ours = predictor._forward_on_instances(instances)
        with inference_switches(predictor._model, exit_policy=predictor.exit_policy):
            theirs = predictor._model.forward_on_instances(instances)
        assert len(ours) == len(theirs)
        for one, other in zip(ours, theirs):
            assert one.keys() == other.keys()
            for key in one:
                if isinstance(one[key], numpy.ndarray):
                    numpy.testing.assert_array_equal(one[key], other[key])
                else:
                    assert one[key] == other[key]

    def test_run_all_heads_outputs_survive_sub_batching(self, predictor, batching):
        predictor.confidence_threshold = 1.0
        predictor._model.run_all_heads = True
        try:
            lines = _varied_lines()
            fast = predictor.predict_batch_json(lines)
            reference = _reference(predictor, lines)
        finally:
            predictor._model.run_all_heads = False
        for one, other in zip(fast, reference):
            assert one["label"] == other["label"]
            numpy.testing.assert_allclose(one["head_probs"], other["head_probs"], atol=1e-4)
            numpy.testing.assert_allclose(one["head_logits"], other["head_logits"], atol=1e-5)


# How far batch size may move a probability: float32 rounding, which differs with the shapes of
# the products a batch makes (see the README's "Predict" section). Measured on these fixtures
# about 6e-8; the README states what real encoders give.
BATCH_TOLERANCE = 1e-6


@pytest.mark.parametrize("carry_rows", [True, False], ids=["carried", "batch_by_batch"])
def test_batch_size_moves_probabilities_by_float32_rounding_only(
    tmp_path_factory, threshold, carry_rows
):
    """`allennlp predict`'s two ways at --batch-size 7 against line by line, unrounded."""
    predictor = Predictor.from_path(
        trained_archive(tmp_path_factory, "text"),
        "early_exit_classifier",
        decimals=12,
        confidence_threshold=threshold,
        carry_rows=carry_rows,
    )
    lines = _varied_lines()
    singles = [predictor.predict_json(line) for line in lines]
    if carry_rows:
        sevens = [output for _, output in predictor.predict_json_stream(iter(lines), 7)]
    else:
        sevens = [
            output
            for start in range(0, len(lines), 7)
            for output in predictor.predict_batch_json(lines[start : start + 7])
        ]
    assert [(one["label"], one["exit_head"]) for one in singles] == [
        (seven["label"], seven["exit_head"]) for seven in sevens
    ]
    differences = [
        abs(value - other)
        for one, seven in zip(singles, sevens)
        for value, other in zip(one["probs"], seven["probs"])
    ]
    assert max(differences) <= BATCH_TOLERANCE
