"""
`bench/layer_cost.py`'s inputs: the first n sentences embedded and packed, as the engine packs.
"""

import torch

from bench.layer_cost import packed_inputs
from early_exit.dataset_readers import EarlyExitTextClassificationReader
from early_exit.modules.layerwise_transformer import LayerwiseTransformer

TINY_BERT = "test_fixtures/tiny_bert"
DATA = "test_fixtures/data/text_classification.tsv"


def test_each_row_is_its_sentence_embedded_alone_without_padding():
    encoder = LayerwiseTransformer(TINY_BERT, 2, keep_pooler=False).eval()
    reader = EarlyExitTextClassificationReader(TINY_BERT, max_length=128)
    sentences = [[t.text_id for t in i["tokens"].tokens] for i in reader.read(DATA)][:3]
    inputs = packed_inputs(encoder, DATA, [1, 3])
    assert [count for count, _ in inputs] == [1, 3]
    packed = inputs[1][1]
    assert packed.lengths.tolist() == [len(ids) for ids in sentences]
    assert packed.num_tokens == sum(len(ids) for ids in sentences)
    start = 0
    for ids in sentences:
        alone = torch.tensor([ids])  # (1, length)
        with torch.inference_mode():
            expected = encoder.embed_packed(alone, torch.ones_like(alone, dtype=torch.bool))
        assert torch.allclose(packed.hidden[start : start + len(ids)], expected, atol=1e-6)
        start += len(ids)
    assert torch.equal(inputs[0][1].hidden, packed.hidden[: len(sentences[0])])
