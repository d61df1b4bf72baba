from typing import List, Optional

import torch

from early_exit.modules.packed_rows import PackedRows


class LayerAdapter:
    """
    How one family of Hugging Face encoders is run a layer at a time: where its layers are, how a
    layer runs on padded rows (the layer module itself) and on packed rows. Packing needs only the
    attention core re-arranged (`packed_attention`: between the query, key and value projections and
    the attention output, each row's tokens side by side); every other block of the layer is the
    family's own module, called on the `(num_tokens, hidden_size)` matrix of real tokens.
    """

    def layers(self, transformer: torch.nn.Module) -> Optional[torch.nn.ModuleList]:
        """The encoder's layers, or `None` if `transformer` is not of this family's layout."""
        raise NotImplementedError

    def packable(self, layer: torch.nn.Module) -> bool:
        """Whether `run_packed` computes what `layer` computes."""
        raise NotImplementedError

    def run_padded(
        self, layer: torch.nn.Module, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """`layer` on `(num_rows, num_tokens, hidden_size)`, masked by `layer_mask`."""
        raise NotImplementedError

    def run_packed(self, layer: torch.nn.Module, packed: PackedRows) -> torch.Tensor:
        """
        `layer` (at inference) on `packed.hidden` `(num_tokens, hidden_size)`; the same shape back.
        """
        raise NotImplementedError

    def layer_mask(
        self, transformer: torch.nn.Module, mask: torch.BoolTensor, dtype: torch.dtype
    ) -> Optional[torch.Tensor]:
        """The attention mask `run_padded` takes, from a `(num_rows, num_tokens)` padding mask."""
        raise NotImplementedError


def packed_attention(
    packed: PackedRows,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    num_heads: int,
    head_size: int,
) -> torch.Tensor:
    """
    Scaled dot-product self-attention of each row over its own real tokens, from the packed
    projections `(num_tokens, num_heads * head_size)`: the rows are padded in `packed`'s attention
    groups (rows of similar length), attended with `scaled_dot_product_attention` and packed again.
    Returns the context `(num_tokens, num_heads * head_size)`, heads merged as Hugging Face merges
    them.
    """

    def split_heads(padded: torch.Tensor) -> torch.Tensor:
        # (rows, longest, heads * head_size) -> (rows, heads, longest, head_size)
        return padded.view(padded.shape[0], padded.shape[1], num_heads, head_size).transpose(1, 2)

    contexts: List[torch.Tensor] = []
    for query, key, value, mask in zip(
        packed.pad(queries), packed.pad(keys), packed.pad(values), packed.attention_masks
    ):
        context = torch.nn.functional.scaled_dot_product_attention(
            split_heads(query), split_heads(key), split_heads(value), attn_mask=mask
        )  # (rows, heads, longest, head_size)
        contexts.append(context.transpose(1, 2).flatten(2))  # (rows, longest, heads * head_size)
    return packed.unpad(contexts)  # (num_tokens, heads * head_size)
