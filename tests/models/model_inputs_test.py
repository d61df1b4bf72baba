"""
`batch_on_device` batches instances as a data loader does; `inference_switches` sets a model's
switches for a block and puts every one back, also when the block fails.
"""

import pytest
import torch
from allennlp.common import Params
from allennlp.data import DatasetReader, Vocabulary
from allennlp.models import Model

import early_exit  # noqa: F401  (registers the components)
from early_exit.models.model_inputs import batch_on_device, inference_switches
from early_exit.modules.exit_policies import EntropyPolicy, MaxProbabilityPolicy
from tests import FIXTURES_ROOT, TINY_BERT

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


@pytest.fixture(scope="module")
def built():
    params = Params.from_file(str(CONFIG))
    params["dataset_reader"]["transformer_model"] = TINY_BERT
    params["model"]["transformer_model"] = TINY_BERT
    reader = DatasetReader.from_params(params["dataset_reader"])
    instances = list(reader.read(str(DATA)))
    vocab = Vocabulary.from_instances(instances)
    torch.manual_seed(0)
    return Model.from_params(vocab=vocab, params=params["model"]), instances


def test_batch_on_device_pads_every_field(built):
    model, instances = built
    tensors = batch_on_device(model, instances[:3])
    token_ids = tensors["tokens"]["tokens"]["token_ids"]  # (3, longest)
    assert token_ids.shape[0] == 3 and tensors["label"].shape == (3,)
    longest = max(instance.fields["tokens"].sequence_length() for instance in instances[:3])
    assert token_ids.shape[1] == longest
    with torch.inference_mode():
        assert model.eval()(**tensors)["logits"].shape == (3, model.num_labels)


def test_switches_are_set_in_the_block_and_put_back(built):
    model, instances = built
    model.train()
    model.exit_policy = EntropyPolicy(0.2)
    model.run_all_heads, model.packed = False, True
    with inference_switches(model, MaxProbabilityPolicy(0.0), run_all_heads=True, packed=False):
        assert not model.training and model.exit_policy == MaxProbabilityPolicy(0.0)
        assert model.run_all_heads and not model.packed
        with torch.inference_mode():
            model(**batch_on_device(model, instances[:2]))
    assert model.training and model.exit_policy == EntropyPolicy(0.2)
    assert not model.run_all_heads and model.packed
    assert model.get_metrics()["accuracy"] == 0.0  # the block's runs are not counted


def test_switches_left_alone_and_put_back_after_an_error(built):
    model, _ = built
    model.eval()
    model.confidence_threshold = 0.7
    with pytest.raises(RuntimeError, match="inside"):
        with inference_switches(model, packed=False):
            assert model.confidence_threshold == 0.7 and not model.packed
            model.confidence_threshold = 0.1
            raise RuntimeError("inside")
    assert not model.training and model.confidence_threshold == 0.7 and model.packed
