import copy

import pytest
import torch
import transformers
from allennlp.common.checks import ConfigurationError
from allennlp.data import Vocabulary

from early_exit.models import EarlyExitClassifier
from early_exit.modules import LayerwiseTransformer, PackedRows, PaddedRows
from early_exit.modules.layer_runners import LayerRunner, OnnxRuntimeLayerRunner
from early_exit.modules.layer_runners.torch_runner import BertEmbeddingsAtInference
from tests import TINY_BERT

SMALL = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37)
FAMILIES = {
    "roberta": lambda: transformers.RobertaConfig(vocab_size=120, **SMALL),
    "electra": lambda: transformers.ElectraConfig(vocab_size=120, embedding_size=32, **SMALL),
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=120, dim=32, n_layers=4, n_heads=2, hidden_dim=37
    ),
}


def _save_random_encoder(config, directory) -> str:
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(str(directory))
    return str(directory)


def _vocab() -> Vocabulary:
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(["a", "b", "c"], "labels")
    return vocab


def _inputs():
    torch.manual_seed(1)
    token_ids = torch.randint(5, 100, (5, 7))  # (batch_size, num_tokens)
    mask = torch.ones_like(token_ids, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    token_ids[~mask] = 1
    return token_ids, mask


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_layerwise_run_equals_the_hugging_face_forward(family, tmp_path):
    path = _save_random_encoder(FAMILIES[family](), tmp_path / family)
    encoder = LayerwiseTransformer(path, num_layers=4, keep_pooler=False).eval()
    token_ids, mask = _inputs()
    with torch.no_grad():
        hidden = encoder.embed(token_ids)
        layer_mask = encoder.layer_mask(mask, hidden.dtype)
        for index in range(4):
            hidden = encoder.run_layer(index, hidden, layer_mask)
        reference = encoder.transformer(input_ids=token_ids, attention_mask=mask.long())
    torch.testing.assert_close(
        hidden[mask], reference.last_hidden_state[mask], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_early_exit_classifier_works_for_each_family(family, tmp_path):
    path = _save_random_encoder(FAMILIES[family](), tmp_path / family)
    model = EarlyExitClassifier(_vocab(), path, exit_layers=[0, 2, 3], head_pooling="cls").eval()
    token_ids, mask = _inputs()
    tokens = {"tokens": {"token_ids": token_ids, "mask": mask}}
    with torch.no_grad():
        model.run_all_heads = True
        full = model(tokens)
        model.run_all_heads = False
        confidence = full["head_probs"][:, 0].max(dim=-1).values.sort().values
        # Half-way between two instances' confidences: no instance sits on the threshold.
        model.confidence_threshold = float(confidence[2] + confidence[3]) / 2
        early = model(tokens)
        singles = [
            model(
                {
                    "tokens": {
                        "token_ids": token_ids[i : i + 1, : int(mask[i].sum())],
                        "mask": mask[i : i + 1, : int(mask[i].sum())],
                    }
                }
            )
            for i in range(5)
        ]
    assert set(early["exit_head"].tolist()) >= {0}
    assert len(set(early["exit_head"].tolist())) > 1
    for i, single in enumerate(singles):
        assert int(single["exit_head"][0]) == int(early["exit_head"][i])
        torch.testing.assert_close(single["probs"][0], early["probs"][i], atol=1e-5, rtol=0)


def test_cls_pooler_needs_an_encoder_with_a_pooler(tmp_path):
    path = _save_random_encoder(FAMILIES["electra"](), tmp_path / "electra")
    with pytest.raises(ConfigurationError, match="no pooler"):
        EarlyExitClassifier(_vocab(), path, exit_layers=[0, 3], head_pooling="cls_pooler")


def test_pooler_is_removed_unless_the_heads_use_it():
    assert EarlyExitClassifier(_vocab(), TINY_BERT, [0, 3]).encoder.transformer.pooler is None
    with_pooler = EarlyExitClassifier(_vocab(), TINY_BERT, [0, 3], head_pooling="cls_pooler")
    assert with_pooler.encoder.transformer.pooler is not None


PACKABLE = {"bert": True, "roberta": True, "electra": True, "distilbert": True}


def _encoder_path(family, tmp_path) -> str:
    if family == "bert":
        return TINY_BERT
    if family == "bert_relative_key":  # attention scores depend on positions: not packable
        config = transformers.BertConfig(
            vocab_size=120, position_embedding_type="relative_key", **SMALL
        )
        return _save_random_encoder(config, tmp_path / family)
    return _save_random_encoder(FAMILIES[family](), tmp_path / family)


def _long_and_short_inputs():
    """Rows of 90 and of 2 to 5 tokens: the attention runs them in separate padded groups."""
    torch.manual_seed(2)
    token_ids = torch.randint(5, 100, (6, 90))  # (batch_size, num_tokens)
    lengths = torch.tensor([90, 3, 2, 85, 5, 90])
    mask = torch.arange(90).unsqueeze(0) < lengths.unsqueeze(1)
    token_ids[~mask] = 1
    return token_ids, mask


@pytest.mark.parametrize("prepack_weights", [True, False])
@pytest.mark.parametrize("inputs", [_inputs, _long_and_short_inputs])
@pytest.mark.parametrize("family", sorted(PACKABLE))
def test_packed_layers_equal_the_hugging_face_forward(family, inputs, prepack_weights, tmp_path):
    encoder = LayerwiseTransformer(
        _encoder_path(family, tmp_path), 4, keep_pooler=False, prepack_weights=prepack_weights
    ).eval()
    assert encoder.supports_packing is PACKABLE[family]
    if not encoder.supports_packing:
        return
    token_ids, mask = inputs()
    rows = torch.arange(token_ids.shape[0])
    with torch.no_grad():
        packed = PackedRows.from_padded(rows, encoder.embed(token_ids), mask)
        if inputs is _long_and_short_inputs:
            assert len(packed.attention_groups) > 1
        for index in range(4):
            packed.hidden = encoder.run_packed_layer(index, packed)
        reference = encoder.transformer(input_ids=token_ids, attention_mask=mask.long())
    torch.testing.assert_close(
        packed.hidden, reference.last_hidden_state[mask], atol=1e-5, rtol=1e-5
    )


def test_an_encoder_that_cannot_be_packed_runs_padded(tmp_path):
    path = _encoder_path("bert_relative_key", tmp_path)
    model = EarlyExitClassifier(_vocab(), path, exit_layers=[1, 3]).eval()
    assert model.packed and not model.encoder.supports_packing
    token_ids, mask = _inputs()
    with torch.no_grad():
        output = model({"tokens": {"token_ids": token_ids, "mask": mask}})
        reference = model.encoder.transformer(
            input_ids=token_ids, attention_mask=mask.long(), output_hidden_states=True
        )
        rows = torch.arange(mask.shape[0])
        pooled = [
            model.engine.pool(PaddedRows(rows, hidden, mask))
            for hidden in reference.hidden_states[1:]
        ]
    torch.testing.assert_close(output["logits"], model.heads[-1](pooled), atol=1e-5, rtol=1e-5)


def _unpadded_inputs():
    """Two rows of 7 tokens: nothing to pack away (as any batch of one)."""
    torch.manual_seed(3)
    return torch.randint(5, 100, (2, 7)), torch.ones(2, 7, dtype=torch.bool)


@pytest.mark.parametrize("inputs", [_long_and_short_inputs, _unpadded_inputs])
@pytest.mark.parametrize("with_types", [True, False])
def test_packed_embedding_equals_the_padded_embedding_of_the_real_tokens(with_types, inputs):
    encoder = LayerwiseTransformer(TINY_BERT, 4, keep_pooler=False).eval()
    assert encoder.embeds_packed
    token_ids, mask = inputs()
    type_ids = None
    if with_types:
        width = token_ids.shape[1]
        type_ids = (torch.arange(width).unsqueeze(0) >= 2).long().expand_as(token_ids) * mask
    with torch.no_grad():
        packed = encoder.embed_packed(token_ids, mask, type_ids)  # (num_real_tokens, hidden)
        padded = encoder.embed(token_ids, type_ids)  # (batch_size, num_tokens, hidden)
        # The caller may say whether anything is padded (the model knows it from the lengths).
        told = encoder.embed_packed(token_ids, mask, type_ids, not bool(mask.all()))
    assert torch.equal(told, packed)
    assert packed.shape == (int(mask.sum()), encoder.hidden_size)
    torch.testing.assert_close(packed, padded[mask], atol=1e-6, rtol=0)
    if with_types:  # the token types reach the embedding
        assert not torch.allclose(packed, encoder.embed_packed(token_ids, mask), atol=1e-3)


@pytest.mark.parametrize("family", ["roberta", "electra"])
def test_other_families_pack_after_embedding_the_padded_batch(family, tmp_path):
    # RoBERTa numbers positions from its padding index: explicit BERT positions would be wrong.
    path = _encoder_path(family, tmp_path)
    model = EarlyExitClassifier(_vocab(), path, exit_layers=[1, 3]).eval()
    assert model.encoder.supports_packing and not model.encoder.embeds_packed
    token_ids, mask = _long_and_short_inputs()
    tokens = {"tokens": {"token_ids": token_ids, "mask": mask}}
    with torch.no_grad():
        packed = model(tokens)
        model.packed = False
        padded = model(tokens)
    torch.testing.assert_close(packed["probs"], padded["probs"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("runner", ["torch", "onnxruntime", "module_call"])
@pytest.mark.parametrize("with_types", [True, False])
def test_unpadded_bert_embedding_at_inference_is_the_modules_bit_for_bit(with_types, runner):
    # The torch runner's fast path, kept by the onnxruntime runner (its embeddings stay in torch);
    # the base runner's module call (as a runner without the fast path has it) is the reference.
    encoder = LayerwiseTransformer(TINY_BERT, 4, keep_pooler=False).eval()
    if runner == "onnxruntime":
        encoder.use_layer_runner(OnnxRuntimeLayerRunner())
    elif runner == "module_call":
        encoder._unpadded_embedding = LayerRunner().unpadded_embedding(
            encoder.transformer.embeddings
        )
    fast_path = runner != "module_call"
    assert isinstance(encoder._unpadded_embedding, BertEmbeddingsAtInference) == fast_path
    embeddings = encoder.transformer.embeddings
    token_ids, mask = _unpadded_inputs()
    type_ids = (torch.arange(7) >= 3).long().expand_as(token_ids) if with_types else None
    calls = []
    module_forward = embeddings.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return module_forward(*args, **kwargs)

    embeddings.forward = counted
    with torch.no_grad():
        expected = module_forward(input_ids=token_ids, token_type_ids=type_ids).flatten(0, 1)
        fast = encoder.embed_packed(token_ids, mask, type_ids)
        # computed without calling the module (on the fast path)
        assert torch.equal(fast, expected) and bool(calls) != fast_path
        # A hook on any part, or training mode, needs the module itself.
        calls.clear()
        seen = []
        hook = embeddings.LayerNorm.register_forward_hook(lambda *args: seen.append(1))
        assert torch.equal(encoder.embed_packed(token_ids, mask, type_ids), expected)
        assert calls and seen
        hook.remove()
        encoder.train()
        calls.clear()
        encoder.embed_packed(token_ids, mask, type_ids)
        assert calls


def test_a_copy_of_the_encoder_embeds_with_its_own_modules():
    encoder = LayerwiseTransformer(TINY_BERT, 4, keep_pooler=False).eval()
    copied = copy.deepcopy(encoder)
    assert copied._unpadded_embedding.embeddings is copied.transformer.embeddings
    with torch.no_grad():
        copied.transformer.embeddings.word_embeddings.weight.add_(1.0)
        token_ids, mask = _unpadded_inputs()
        assert not torch.equal(
            copied.embed_packed(token_ids, mask), encoder.embed_packed(token_ids, mask)
        )
