"""
The early-exit fast paths against the reference: when rows exit, the later layers see only the rows
still running and only the columns (padded) or tokens (packed) those rows need, and the outputs
equal those of running every head on the whole padded batch and of running each instance alone.
"""

import copy
from typing import List, Tuple

import pytest
import torch
from allennlp.common import Params
from allennlp.data import Batch, DatasetReader, Vocabulary
from allennlp.models import Model

import early_exit  # noqa: F401  (registers the components)
from tests import FIXTURES_ROOT, TINY_BERT

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


class TestShrinkingBatch:
    """One padded batch (packing off), shrinking as rows exit."""

    def setup_method(self):
        params = Params.from_file(str(CONFIG))
        params["dataset_reader"]["transformer_model"] = TINY_BERT
        params["model"]["transformer_model"] = TINY_BERT
        reader = DatasetReader.from_params(params["dataset_reader"])
        self.instances = list(reader.read(str(DATA)))
        self.vocab = Vocabulary.from_instances(self.instances)
        torch.manual_seed(0)
        self.model = Model.from_params(vocab=self.vocab, params=params["model"]).eval()
        self.model.packed = False

    def _tensors(self, instances):
        batch = Batch(copy.deepcopy(instances))
        batch.index_instances(self.vocab)
        return batch.as_tensor_dict()

    def _first_head_confidence(self, instances) -> List[float]:
        self.model.run_all_heads = True
        try:
            with torch.no_grad():
                output = self.model(**self._tensors(instances))
        finally:
            self.model.run_all_heads = False
        return output["head_probs"][:, 0].max(dim=-1).values.tolist()

    def _longest_exits_first(self) -> Tuple[list, float]:
        """
        A batch whose longest instance is the only one to exit at the first head, and a threshold
        doing that: the most confident instance with shorter, less confident ones.
        """
        length = [len(instance["tokens"].tokens) for instance in self.instances]
        confidence = self._first_head_confidence(self.instances)
        for top in sorted(range(len(length)), key=lambda index: -confidence[index]):
            shorter = [index for index in range(len(length)) if length[index] < length[top]]
            if shorter:
                below = max(confidence[index] for index in shorter)
                assert below < confidence[top]
                batch = [self.instances[top]] + [self.instances[index] for index in shorter]
                return batch, (below + confidence[top]) / 2
        raise AssertionError("every confident instance is among the shortest")

    def test_padding_is_trimmed_when_the_longest_rows_exit(self):
        instances, threshold = self._longest_exits_first()
        shapes = []
        hooks = [
            layer.register_forward_pre_hook(
                lambda module, args, index=index: shapes.append((index, tuple(args[0].shape[:2])))
            )
            for index, layer in enumerate(self.model.encoder.layers)
        ]
        self.model.confidence_threshold = threshold
        try:
            with torch.no_grad():
                output = self.model(**self._tensors(instances))
        finally:
            for hook in hooks:
                hook.remove()
        lengths = [len(instance["tokens"].tokens) for instance in instances]
        exit_layers = output["exit_layer"].tolist()
        assert exit_layers[0] == 0 and min(exit_layers[1:]) > 0
        # Every layer sees exactly the rows still running, padded to the longest of them only.
        expected = []
        for index in range(max(exit_layers) + 1):
            running = [row for row, layer in enumerate(exit_layers) if layer >= index]
            expected.append((index, (len(running), max(lengths[row] for row in running))))
        assert shapes == expected
        assert shapes[1][1][1] < max(lengths)  # the longest row's padding is gone after it exits

    def test_shrinking_batch_equals_every_head_on_the_padded_batch_and_one_at_a_time(self):
        instances, threshold = self._longest_exits_first()
        self.model.confidence_threshold = threshold
        tensors = self._tensors(instances)
        with torch.no_grad():
            early = self.model(**tensors)
            singles = [self.model(**self._tensors([instance])) for instance in instances]
            self.model.run_all_heads = True
            reference = self.model(**tensors)
            self.model.run_all_heads = False
        assert early["exit_head"].tolist() == reference["exit_head"].tolist()
        torch.testing.assert_close(early["logits"], reference["logits"], atol=1e-5, rtol=0)
        torch.testing.assert_close(early["probs"], reference["probs"], atol=1e-5, rtol=0)
        for index, single in enumerate(singles):
            assert int(single["exit_head"][0]) == int(early["exit_head"][index])
            torch.testing.assert_close(single["probs"][0], early["probs"][index], atol=1e-5, rtol=0)


class TestPacked(TestShrinkingBatch):
    """
    The default at inference: every layer runs once on the real tokens of the rows still running,
    packed together; only the attention sees padding. The reference is one padded batch.
    """

    def setup_method(self):
        super().setup_method()
        self.model.packed = True
        assert self.model.encoder.supports_packing

    def _median_first_head_threshold(self) -> float:
        confidence = sorted(self._first_head_confidence(self.instances))
        middle = len(confidence) // 2
        return (confidence[middle - 1] + confidence[middle]) / 2

    def _run(self, packed: bool, **changes):
        self.model.packed = packed
        for name, value in changes.items():
            setattr(self.model, name, value)
        try:
            with torch.no_grad():
                return self.model(**self._tensors(self.instances))
        finally:
            self.model.packed = True
            self.model.run_all_heads = False

    @pytest.mark.parametrize("threshold", ["mixed", 0.0, 1.0])
    def test_same_outputs_as_one_padded_batch_and_one_at_a_time(self, threshold):
        if threshold == "mixed":
            threshold = self._median_first_head_threshold()
        self.model.confidence_threshold = threshold
        packed = self._run(packed=True)
        padded = self._run(packed=False)
        assert packed["exit_head"].tolist() == padded["exit_head"].tolist()
        if threshold not in (0.0, 1.0):
            assert len(set(packed["exit_head"].tolist())) > 1
        for key in ("logits", "probs", "relative_compute"):
            torch.testing.assert_close(packed[key], padded[key], atol=1e-5, rtol=0)
        with torch.no_grad():
            for index, instance in enumerate(self.instances):
                single = self.model(**self._tensors([instance]))
                assert int(single["exit_head"][0]) == int(packed["exit_head"][index])
                torch.testing.assert_close(
                    single["probs"][0], packed["probs"][index], atol=1e-5, rtol=0
                )

    def test_every_head_and_the_loss_packed_or_not(self):
        # run_all_heads and evaluation with labels at threshold 1.0 take the all-heads path.
        self.model.confidence_threshold = 1.0
        packed = self._run(packed=True, run_all_heads=True)
        padded = self._run(packed=False, run_all_heads=True)
        for key in ("head_logits", "head_probs", "logits", "loss"):
            torch.testing.assert_close(packed[key], padded[key], atol=1e-5, rtol=0)

    def _layer_tokens(self):
        """Records the input shape of each layer's query projection, called by both paths."""
        shapes = {index: [] for index in range(len(self.model.encoder.layers))}
        hooks = [
            layer.attention.self.query.register_forward_hook(
                lambda module, args, output, index=index: shapes[index].append(tuple(args[0].shape))
            )
            for index, layer in enumerate(self.model.encoder.layers)
        ]
        return shapes, hooks

    def _exits_computing_only_running_tokens(self, instances) -> List[int]:
        """Runs `instances`; checks that each layer ran once, on the running rows' real tokens."""
        shapes, hooks = self._layer_tokens()
        try:
            with torch.no_grad():
                exits = self.model(**self._tensors(instances))["exit_layer"].tolist()
        finally:
            for hook in hooks:
                hook.remove()
        lengths = [len(instance["tokens"].tokens) for instance in instances]
        hidden = self.model.encoder.hidden_size
        for layer, layer_shapes in shapes.items():
            running = sum(length for length, exit in zip(lengths, exits) if exit >= layer)
            assert layer_shapes == ([(running, hidden)] if running else [])
        return exits

    def test_padding_is_trimmed_when_the_longest_rows_exit(self):
        instances, threshold = self._longest_exits_first()
        self.model.confidence_threshold = threshold
        exits = self._exits_computing_only_running_tokens(instances)
        assert exits[0] == 0 and min(exits[1:]) > 0

    def test_one_call_per_layer_on_the_running_rows_tokens(self):
        self.model.confidence_threshold = self._median_first_head_threshold()
        exits = self._exits_computing_only_running_tokens(self.instances)
        assert len(set(exits)) > 1

    @pytest.mark.parametrize("pooling", ["cls", "cls_pooler"])
    def test_first_token_pooling_packed_or_padded(self, pooling):
        params = Params.from_file(str(CONFIG))
        params["model"]["transformer_model"] = TINY_BERT
        params["model"]["head_pooling"] = pooling
        torch.manual_seed(0)
        self.model = Model.from_params(vocab=self.vocab, params=params["model"]).eval()
        self.model.confidence_threshold = self._median_first_head_threshold()
        packed = self._run(packed=True)
        padded = self._run(packed=False)
        assert packed["exit_head"].tolist() == padded["exit_head"].tolist()
        assert len(set(packed["exit_head"].tolist())) > 1
        torch.testing.assert_close(packed["probs"], padded["probs"], atol=1e-5, rtol=0)
        everything = self._run(packed=True, run_all_heads=True)
        reference = self._run(packed=False, run_all_heads=True)
        torch.testing.assert_close(
            everything["head_logits"], reference["head_logits"], atol=1e-5, rtol=0
        )

    def test_training_never_packs(self):
        shapes, hooks = self._layer_tokens()
        self.model.train()
        try:
            tensors = self._tensors(self.instances)
            self.model(**tensors)
        finally:
            self.model.eval()
            for hook in hooks:
                hook.remove()
        padded = tuple(tensors["tokens"]["tokens"]["token_ids"].shape)
        assert all(layer_shapes[0][:2] == padded for layer_shapes in shapes.values())
