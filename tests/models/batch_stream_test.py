"""
`BatchStream`: rows that go on past a head wait for the rows of later batches, so that a layer call
after the first runs at least `min_tokens` tokens (except when the stream ends), and every batch's
outputs equal those of `forward` on that batch, in order.
"""

import copy
from typing import Dict, List

import pytest
import torch
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from allennlp.data import Batch, DatasetReader, Vocabulary
from allennlp.models import Model

import early_exit  # noqa: F401  (registers the components)
from early_exit.models.batch_stream import BatchStream
from tests import FIXTURES_ROOT, TINY_BERT

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


def build(**model_changes):
    params = Params.from_file(str(CONFIG))
    params["dataset_reader"]["transformer_model"] = TINY_BERT
    params["model"]["transformer_model"] = TINY_BERT
    for name, value in model_changes.items():
        params["model"][name] = value
    reader = DatasetReader.from_params(params["dataset_reader"])
    # The fixture file twice: enough rows for several batches.
    instances = list(reader.read(str(DATA))) * 2
    vocab = Vocabulary.from_instances(instances)
    torch.manual_seed(0)
    model = Model.from_params(vocab=vocab, params=params["model"]).eval()
    return model, instances, vocab


def batches_of(instances, vocab, size: int) -> List[Dict]:
    batches = []
    for start in range(0, len(instances), size):
        batch = Batch(copy.deepcopy(instances[start : start + size]))
        batch.index_instances(vocab)
        tensors = batch.as_tensor_dict()
        tensors.pop("label")
        batches.append(tensors)
    return batches


def threshold_in_a_gap(values: torch.Tensor, quantile: float) -> float:
    """
    A threshold near `quantile` of `values` that sits in a gap between them, never on one: a row
    exactly at the threshold would exit or not by rounding, which differs between batchings
    (`torch.median` returns one of the values).
    """
    ordered = values.sort().values.tolist()
    for index in range(int(quantile * (len(ordered) - 1)), len(ordered) - 1):
        if ordered[index + 1] - ordered[index] > 1e-4:
            return (ordered[index] + ordered[index + 1]) / 2
    raise AssertionError("no gap between the values above the quantile")


def median_first_head_threshold(model, batches) -> float:
    model.run_all_heads = True
    with torch.inference_mode():
        confidence = torch.cat(
            [model(**batch)["head_probs"][:, 0].max(dim=-1).values for batch in batches]
        )
    model.run_all_heads = False
    return threshold_in_a_gap(confidence, 0.5)


def layer_calls(model) -> List[tuple]:
    """Patches the model's encoder to record (layer, rows, tokens) of every packed layer call."""
    calls = []
    run = model.encoder.run_packed_layer

    def recording(index, packed):
        calls.append((index, len(packed), packed.num_tokens))
        return run(index, packed)

    model.encoder.run_packed_layer = recording
    return calls


def assert_same_outputs(expected: List[Dict], got: List[Dict]) -> None:
    assert len(got) == len(expected)
    for one, other in zip(expected, got):
        for key in ("exit_head", "exit_layer"):
            assert torch.equal(one[key], other[key]), key
        for key in ("logits", "probs", "relative_compute"):
            assert other[key].shape == one[key].shape
            assert torch.allclose(one[key], other[key], atol=1e-5), key


class TestBatchStream:
    def setup_method(self):
        self.model, self.instances, self.vocab = build()
        self.batches = batches_of(self.instances, self.vocab, 5)  # 32 rows: 6 batches of 5, 1 of 2
        self.model.confidence_threshold = median_first_head_threshold(self.model, self.batches)

    def per_batch(self) -> List[Dict]:
        with torch.inference_mode():
            return [self.model(**batch) for batch in self.batches]

    @pytest.mark.parametrize("min_tokens", [1, 30, 100, 2048])
    def test_outputs_equal_forward_on_each_batch_in_order(self, min_tokens):
        expected = self.per_batch()
        with torch.inference_mode():
            got = list(self.model.forward_stream(self.batches, min_tokens=min_tokens))
        assert_same_outputs(expected, got)
        exit_heads = torch.cat([output["exit_head"] for output in got])
        assert 0 < int((exit_heads == 0).sum()) < len(exit_heads)  # some exit early, some not

    def test_rows_wait_for_later_batches(self):
        calls = layer_calls(self.model)
        self.per_batch()
        per_batch_calls = list(calls)
        calls.clear()
        stream = BatchStream(self.model, min_tokens=100)  # the fixture's batches: ~50 tokens
        returned = []
        with torch.inference_mode():
            for batch in self.batches[:-1]:
                returned.append(len(stream.push(**batch)))
            flushed_from = len(calls)
            returned.append(len(stream.push(**self.batches[-1])) + len(stream.finish()))
        assert sum(returned) == len(self.batches)
        assert returned[0] == 0  # the first batch's running rows wait for the next batches'
        # Before the end, a layer after the first runs only once 100 tokens wait for it.
        later = [tokens for layer, _, tokens in calls[:flushed_from] if layer > 0]
        assert later and min(later) >= 100
        first_layer = [rows for layer, rows, _ in calls if layer == 0]
        assert first_layer == [5] * 6 + [2]  # each batch as it came
        assert len(calls) < len(per_batch_calls)
        assert sum(rows for _, rows, _ in calls) == sum(rows for _, rows, _ in per_batch_calls)

    def test_exit_statistics_match(self):
        self.model.get_metrics(reset=True)
        self.per_batch()
        expected = self.model.get_metrics(reset=True)
        with torch.inference_mode():
            list(self.model.forward_stream(self.batches))
        assert self.model.get_metrics(reset=True) == pytest.approx(expected)

    @pytest.mark.parametrize(
        "change", [{"confidence_threshold": 1.0}, {"run_all_heads": True}, {"packed": False}]
    )
    def test_nothing_to_carry_runs_forward_on_each_batch(self, change):
        for name, value in change.items():
            setattr(self.model, name, value)
        calls = layer_calls(self.model)
        expected = self.per_batch()
        stream = BatchStream(self.model)
        assert not stream.carries
        with torch.inference_mode():
            got = [stream.push(**batch) for batch in self.batches]
        assert all(len(outputs) == 1 for outputs in got)  # each batch out at once
        assert stream.finish() == []
        assert_same_outputs(expected, [outputs[0] for outputs in got])
        if change != {"packed": False}:
            assert calls  # still packed

    @pytest.mark.parametrize("min_tokens", [0, 1.5, True])
    def test_min_tokens_must_be_a_positive_integer(self, min_tokens):
        with pytest.raises(ConfigurationError, match="min_tokens"):
            BatchStream(self.model, min_tokens=min_tokens)


class TestBatchStreamWithPreviousLogits(TestBatchStream):
    """Later heads read earlier heads' logits, which must travel with the waiting rows."""

    def setup_method(self):
        self.model, self.instances, self.vocab = build(add_previous_layer_logits=True)
        self.batches = batches_of(self.instances, self.vocab, 5)
        self.model.confidence_threshold = median_first_head_threshold(self.model, self.batches)
