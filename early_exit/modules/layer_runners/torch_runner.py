from typing import Optional, Tuple

import torch
from overrides import overrides

from early_exit.modules.layer_adapters import LayerAdapter
from early_exit.modules.layer_runners.layer_runner import LayerRunner, UnpaddedEmbedding
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.prepacked_linear import use_prepacked_linears


@LayerRunner.register("torch")
class TorchLayerRunner(LayerRunner):
    """
    The layers as torch modules: padded rows through the Hugging Face layer itself, packed rows
    through the adapter's packed form (the layer's own blocks around a re-arranged attention).
    Its fast paths: the linear layers are `PrepackedLinear`s, which on a CPU without gradients
    run through oneDNN with each weight reordered once (`prepack_weights`); the state dict is the
    same. BERT's embeddings of unpadded rows are re-expressed in fewer operators
    (`BertEmbeddingsAtInference`, bit for bit; also used by runners that keep the embeddings in
    torch). Works on any device and with gradients (training always runs this way).

    Registered as a `LayerRunner` with name "torch".

    # Parameters

    prepack_weights : `bool`, optional (default = `True`)
        Run the linear layers through oneDNN with reordered weights where that is possible;
        `False` runs them as `torch.nn.Linear`.
    """

    def __init__(self, prepack_weights: bool = True) -> None:
        self.prepack_weights = prepack_weights

    @overrides
    def bind(self, adapter: LayerAdapter, layers: torch.nn.ModuleList, packable: bool) -> None:
        super().bind(adapter, layers, packable)
        use_prepacked_linears(layers, self.prepack_weights)

    @overrides
    def unpadded_embedding(self, embeddings: torch.nn.Module) -> UnpaddedEmbedding:
        return torch_unpadded_embedding(embeddings)

    @overrides
    def run_packed(self, index: int, packed: PackedRows) -> torch.Tensor:
        return self._adapter.run_packed(self._layers[index], packed)  # (num_tokens, hidden_size)

    @overrides
    def describe(self) -> str:
        return "torch" if self.prepack_weights else "torch (no prepacking)"


def torch_unpadded_embedding(embeddings: torch.nn.Module) -> UnpaddedEmbedding:
    """
    The torch runner's way with BERT's embeddings of unpadded rows, for any runner that keeps the
    embeddings in torch: `BertEmbeddingsAtInference` where `embeddings` are the plain modules it
    re-expresses, else the module call.
    """
    parts = _plain_bert_embedding_parts(embeddings)
    if parts is None:
        return UnpaddedEmbedding(embeddings)
    return BertEmbeddingsAtInference(embeddings, parts)


class BertEmbeddingsAtInference(UnpaddedEmbedding):
    """
    `BertEmbeddings` of unpadded rows in eval mode with absolute positions, bit for bit (the same
    operations on the same values in the same order), in six operators instead of eight and
    without its five module calls: the position embeddings are the first rows of their table
    rather than a lookup of `arange(num_tokens)`, and the dropout (the identity) is not called.
    At batch size 1 the embedding is the largest part of a forward pass outside the layers.
    Where that does not hold (training mode, hooks on the module or a part) the module itself is
    called.
    """

    def __init__(self, embeddings: torch.nn.Module, parts: Tuple[torch.nn.Module, ...]) -> None:
        super().__init__(embeddings)
        self.parts = parts  # word, position and token-type embeddings, layer norm

    @overrides
    def __call__(self, token_ids: torch.Tensor, type_ids: Optional[torch.Tensor]) -> torch.Tensor:
        embeddings, parts = self.embeddings, self.parts
        if embeddings.training or any(
            module._forward_hooks or module._forward_pre_hooks for module in (embeddings, *parts)
        ):
            return super().__call__(token_ids, type_ids)
        words, positions, types, norm = parts
        num_tokens = token_ids.shape[1]
        if type_ids is None:  # BERT's zero buffer, as the module takes it
            type_ids = embeddings.token_type_ids[:, :num_tokens].expand_as(token_ids)
        # (num_rows, num_tokens, hidden_size)
        hidden = torch.nn.functional.embedding(token_ids, words.weight, words.padding_idx)
        hidden = hidden + torch.nn.functional.embedding(type_ids, types.weight, types.padding_idx)
        hidden += positions.weight[:num_tokens]  # (num_tokens, hidden_size), broadcast
        return torch.nn.functional.layer_norm(
            hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps
        )


def _plain_bert_embedding_parts(
    embeddings: torch.nn.Module,
) -> Optional[Tuple[torch.nn.Module, ...]]:
    """
    BERT's word, position and token-type embeddings and layer norm, if they are the plain torch
    modules (no `max_norm`) with absolute positions and the zero token-type buffer.
    """
    parts = tuple(
        getattr(embeddings, name, None)
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")
    )
    if (
        getattr(embeddings, "position_embedding_type", "absolute") != "absolute"
        or not isinstance(getattr(embeddings, "token_type_ids", None), torch.Tensor)
        or any(type(part) is not torch.nn.Embedding or part.max_norm for part in parts[:3])
        or type(parts[3]) is not torch.nn.LayerNorm
    ):
        return None
    return parts
