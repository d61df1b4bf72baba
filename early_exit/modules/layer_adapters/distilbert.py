from typing import Optional

import torch
from overrides import overrides

from early_exit.modules.layer_adapters.layer_adapter import LayerAdapter, packed_attention
from early_exit.modules.packed_rows import PackedRows


class DistilBertLayerAdapter(LayerAdapter):
    """
    DistilBERT-style encoders (`transformer.layer`). Packed, a layer runs its attention's `q_lin`,
    `k_lin` and `v_lin`, `packed_attention`, `out_lin`, then its own `sa_layer_norm`, `ffn` and
    `output_layer_norm` modules as `TransformerBlock` combines them.
    """

    @overrides
    def layers(self, transformer: torch.nn.Module) -> Optional[torch.nn.ModuleList]:
        return getattr(getattr(transformer, "transformer", None), "layer", None)

    @overrides
    def packable(self, layer: torch.nn.Module) -> bool:
        attention = getattr(layer, "attention", None)
        return (
            attention is not None
            and all(hasattr(attention, name) for name in ("q_lin", "k_lin", "v_lin", "out_lin"))
            and isinstance(getattr(attention, "n_heads", None), int)
            and isinstance(getattr(attention, "dim", None), int)
            and all(hasattr(layer, name) for name in ("sa_layer_norm", "ffn", "output_layer_norm"))
        )

    @overrides
    def run_padded(
        self, layer: torch.nn.Module, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        return layer(hidden, attn_mask=layer_mask)[0]

    @overrides
    def run_packed(self, layer: torch.nn.Module, packed: PackedRows) -> torch.Tensor:
        attention = layer.attention
        hidden = packed.hidden  # (num_tokens, hidden_size)
        context = packed_attention(
            packed,
            attention.q_lin(hidden),
            attention.k_lin(hidden),
            attention.v_lin(hidden),
            attention.n_heads,
            attention.dim // attention.n_heads,
        )  # (num_tokens, hidden_size)
        attended = layer.sa_layer_norm(attention.out_lin(context) + hidden)  # (tokens, hidden)
        return layer.output_layer_norm(layer.ffn(attended) + attended)  # (num_tokens, hidden_size)

    @overrides
    def layer_mask(
        self, transformer: torch.nn.Module, mask: torch.BoolTensor, dtype: torch.dtype
    ) -> Optional[torch.Tensor]:
        return mask.long()  # (num_rows, num_tokens): DistilBERT's layers take the 0/1 mask
