"""
The predictor's fast path: batches split into sub-batches of similar length, outputs restored to
input order, its own `forward_on_instances` under `torch.inference_mode`. Every output must equal
the straightforward path's (allennlp's `Model.forward_on_instances` on the whole batch).
"""

import itertools
import json
import random

import numpy
import pytest
import torch
from allennlp.predictors import Predictor

from early_exit.predictors import length_sorted_groups
from tests.predictors.early_exit_classifier_test import _lines, assert_same_predictions
from tests.sweep.trained_models import TEXT_JSONL, trained_archive


def _cost(groups, lengths, overhead):
    return sum(overhead + len(group) * max(lengths[i] for i in group) for group in groups)


class TestLengthSortedGroups:
    def test_every_index_once_shortest_first(self):
        lengths = [5, 30, 5, 12, 40, 13, 7, 100, 6]
        groups = length_sorted_groups(lengths)
        flat = [index for group in groups for index in group]
        assert sorted(flat) == list(range(len(lengths)))
        assert [lengths[i] for i in flat] == sorted(lengths)

    def test_edge_cases(self):
        assert length_sorted_groups([]) == []
        assert length_sorted_groups([7]) == [[0]]
        assert length_sorted_groups([9, 9, 9]) == [[0, 1, 2]]  # equal lengths stay whole

    def test_overhead_decides_how_far_to_split(self):
        lengths = [5, 30, 5, 12, 40, 7]
        assert length_sorted_groups(lengths, overhead_tokens=10**6) == [[0, 2, 5, 3, 1, 4]]
        # Free forward passes: one per distinct length, equal lengths together.
        assert length_sorted_groups(lengths, overhead_tokens=0) == [[0, 2], [5], [3], [1], [4]]

    @pytest.mark.parametrize("seed", range(20))
    def test_cost_is_minimal(self, seed):
        rng = random.Random(seed)
        lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 9))]
        overhead = rng.choice([0, 16, 64, 256])
        groups = length_sorted_groups(lengths, overhead)
        order = sorted(range(len(lengths)), key=lambda index: lengths[index])
        best = min(
            _cost(
                [order[a:b] for a, b in zip((0,) + cuts, cuts + (len(order),))],
                lengths,
                overhead,
            )
            for size in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), size)
        )
        assert _cost(groups, lengths, overhead) == best


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
    return [
        predictor._format(output) for output in predictor._model.forward_on_instances(instances)
    ]


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


class TestSubBatchedPredictions:
    def test_same_outputs_as_one_padded_batch_in_input_order(self, predictor, threshold):
        predictor.confidence_threshold = threshold
        lines = _varied_lines()
        fast = [predictor.dump_line(output) for output in predictor.predict_batch_json(lines)]
        reference = [predictor.dump_line(output) for output in _reference(predictor, lines)]
        singles = [predictor.dump_line(predictor.predict_json(line)) for line in lines]
        assert_same_predictions(fast, reference)
        assert_same_predictions(fast, singles)
        if threshold not in (0.0, 1.0):
            assert len({json.loads(line)["exit_layer"] for line in fast}) > 1

    def test_batches_are_split_by_length_and_run_under_inference_mode(self, predictor, monkeypatch):
        model = predictor._model
        calls = []
        forward = model.forward

        def recording_forward(**inputs):
            mask = inputs["tokens"]["tokens"]["mask"]
            calls.append((tuple(mask.shape), int(mask.sum()), torch.is_inference_mode_enabled()))
            return forward(**inputs)

        monkeypatch.setattr(model, "forward", recording_forward)
        lines = _varied_lines()
        predictor.predict_batch_json(lines)
        assert len(calls) > 1
        assert sum(shape[0] for shape, _, _ in calls) == len(lines)
        assert all(inference for _, _, inference in calls)
        split_padded = sum(shape[0] * shape[1] for shape, _, _ in calls)
        longest = max(shape[1] for shape, _, _ in calls)
        assert split_padded < len(lines) * longest  # less padding than one batch would have

    def test_forward_on_instances_equals_allennlps_exactly(self, predictor, threshold):
        predictor.confidence_threshold = threshold
        instances = [predictor._json_to_instance(line) for line in _varied_lines()]
        for instance in instances:
            predictor._dataset_reader.apply_token_indexers(instance)
        ours = predictor._forward_on_instances(instances)
        theirs = predictor._model.forward_on_instances(instances)
        assert len(ours) == len(theirs)
        for one, other in zip(ours, theirs):
            assert one.keys() == other.keys()
            for key in one:
                if isinstance(one[key], numpy.ndarray):
                    numpy.testing.assert_array_equal(one[key], other[key])
                else:
                    assert one[key] == other[key]

    def test_run_all_heads_outputs_survive_sub_batching(self, predictor):
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
