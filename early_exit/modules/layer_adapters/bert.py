from typing import Optional

import torch
from overrides import overrides

from early_exit.modules.layer_adapters.layer_adapter import LayerAdapter, packed_attention
from early_exit.modules.packed_rows import PackedRows


class BertLayerAdapter(LayerAdapter):
    """
    BERT-style encoders (`encoder.layer`: BERT, RoBERTa, ELECTRA, MiniLM, XLM-R). Packed, a layer
    runs its self-attention's query, key and value modules, `packed_attention`, then its own
    `attention.output` (`BertSelfOutput`), `intermediate` and `output` modules as they are.
    """

    @overrides
    def layers(self, transformer: torch.nn.Module) -> Optional[torch.nn.ModuleList]:
        return getattr(getattr(transformer, "encoder", None), "layer", None)

    @overrides
    def packable(self, layer: torch.nn.Module) -> bool:
        attention = getattr(getattr(layer, "attention", None), "self", None)
        return (
            attention is not None
            and all(hasattr(attention, name) for name in ("query", "key", "value"))
            and isinstance(getattr(attention, "num_attention_heads", None), int)
            and isinstance(getattr(attention, "attention_head_size", None), int)
            and getattr(attention, "position_embedding_type", "absolute") == "absolute"
            and not getattr(attention, "is_decoder", False)
            and not getattr(layer, "add_cross_attention", False)
            and all(hasattr(layer, name) for name in ("intermediate", "output"))
            and hasattr(layer.attention, "output")
        )

    @overrides
    def run_padded(
        self, layer: torch.nn.Module, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        return layer(hidden, attention_mask=layer_mask)[0]

    @overrides
    def run_packed(self, layer: torch.nn.Module, packed: PackedRows) -> torch.Tensor:
        attention = layer.attention.self
        hidden = packed.hidden  # (num_tokens, hidden_size)
        context = packed_attention(
            packed,
            attention.query(hidden),
            attention.key(hidden),
            attention.value(hidden),
            attention.num_attention_heads,
            attention.attention_head_size,
        )  # (num_tokens, all_head_size)
        attention_output = layer.attention.output(context, hidden)  # (num_tokens, hidden_size)
        intermediate = layer.intermediate(attention_output)  # (num_tokens, intermediate_size)
        return layer.output(intermediate, attention_output)  # (num_tokens, hidden_size)

    @overrides
    def layer_mask(
        self, transformer: torch.nn.Module, mask: torch.BoolTensor, dtype: torch.dtype
    ) -> Optional[torch.Tensor]:
        if bool(mask.all()):
            return None  # BERT-style layers skip masking
        # (num_rows, 1, 1, num_tokens), additive: 0 for tokens, a large negative for padding
        return transformer.get_extended_attention_mask(mask.long(), mask.shape, dtype=dtype)
