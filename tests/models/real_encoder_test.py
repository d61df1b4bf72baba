"""The early-exit classifier on the real pretrained all-MiniLM-L6-v2 (installed offline by
`make install`): per-instance exits in a batch equal one-at-a-time runs, and threshold 1.0 equals the
encoder's own forward pass."""

import pytest
import torch
from allennlp.data import Batch, Vocabulary

from early_exit.dataset_readers import EarlyExitTextClassificationReader
from early_exit.models import EarlyExitClassifier
from early_exit.modules.padded_rows import PaddedRows
from tests import FIXTURES_ROOT, PROJECT_ROOT

MINILM = PROJECT_ROOT / "models" / "all-MiniLM-L6-v2"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MINILM.exists(), reason="run `make install` to link the MiniLM encoder"),
]


def _tensors(model, instances):
    batch = Batch(instances)
    batch.index_instances(model.vocab)
    return batch.as_tensor_dict()


def test_minilm_exits_per_instance_and_matches_the_encoder():
    reader = EarlyExitTextClassificationReader(str(MINILM), max_length=64)
    instances = list(reader.read(str(FIXTURES_ROOT / "data" / "text_classification.tsv")))
    vocab = Vocabulary.from_instances(instances)
    torch.manual_seed(0)
    model = EarlyExitClassifier(vocab, str(MINILM), exit_layers=[0, 2, 5]).eval()
    assert model.full_depth == 6
    with torch.no_grad():
        model.run_all_heads = True
        full = model(**_tensors(model, instances))
        model.run_all_heads = False
        indexed = _tensors(model, instances)["tokens"]["tokens"]
        reference = model.encoder.transformer(
            input_ids=indexed["token_ids"],
            attention_mask=indexed["mask"].long(),
            token_type_ids=indexed["type_ids"],
            output_hidden_states=True,
        )
        mask = indexed["mask"].bool()
        rows = torch.arange(mask.shape[0])
        pooled = [
            model.engine.pool(PaddedRows(rows, hidden, mask))
            for hidden in reference.hidden_states[1:]
        ]
        torch.testing.assert_close(
            full["head_logits"][:, 2], model.heads[2](pooled), atol=1e-4, rtol=1e-4
        )

        confidence = full["head_probs"][:, 0].max(dim=-1).values.sort().values
        middle = len(confidence) // 2
        model.confidence_threshold = float(confidence[middle - 1] + confidence[middle]) / 2
        batched = model(**_tensors(model, instances))
        singles = [model(**_tensors(model, [instance])) for instance in instances]
    assert len(set(batched["exit_layer"].tolist())) > 1
    for index, single in enumerate(singles):
        assert int(single["exit_layer"][0]) == int(batched["exit_layer"][index])
        torch.testing.assert_close(single["probs"][0], batched["probs"][index], atol=1e-5, rtol=0)
