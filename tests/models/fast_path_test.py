"""
The early-exit fast path against the reference: when rows exit, the later layers see only the rows
still running and only the columns those rows need (padding re-trimmed), and the outputs equal
those of running every head on the whole padded batch and of running each instance alone.
"""

import copy
from typing import List, Tuple

import torch
from allennlp.common import Params
from allennlp.data import Batch, DatasetReader, Vocabulary
from allennlp.models import Model

import early_exit  # noqa: F401  (registers the components)
from tests import FIXTURES_ROOT, TINY_BERT

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


class TestShrinkingBatch:
    def setup_method(self):
        params = Params.from_file(str(CONFIG))
        params["dataset_reader"]["transformer_model"] = TINY_BERT
        params["model"]["transformer_model"] = TINY_BERT
        reader = DatasetReader.from_params(params["dataset_reader"])
        self.instances = list(reader.read(str(DATA)))
        self.vocab = Vocabulary.from_instances(self.instances)
        torch.manual_seed(0)
        self.model = Model.from_params(vocab=self.vocab, params=params["model"]).eval()

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
