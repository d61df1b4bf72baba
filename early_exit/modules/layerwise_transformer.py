from typing import Optional

import torch
from allennlp.common import cached_transformers
from allennlp.common.checks import ConfigurationError

from early_exit.modules.packed_rows import PackedRows


class LayerwiseTransformer(torch.nn.Module):
    """
    A Hugging Face encoder that is run one transformer layer at a time, so that a caller can stop
    after any layer and drop finished rows between layers. The encoder is loaded through
    `transformers` (via allennlp's `cached_transformers`).

    `run_layer` calls a layer as it is, on padded rows. `run_packed_layer` runs a BERT-style layer
    on the real tokens alone (`PackedRows`): it calls the layer's own query, key and value
    projections, attention output and feed-forward modules, and only the step between them (split
    into heads, `scaled_dot_product_attention` on groups of rows padded to their longest, merge) is
    written here, as the layer's self-attention does it. `supports_packing` says whether an encoder's
    layers allow that (BERT-style self-attention with absolute position embeddings).

    Layers after `num_layers` are removed from the module: they are never computed and not part of
    the state dict (so not stored in a model archive).

    Two encoder layouts are supported:

    - BERT-style (`model.embeddings`, `model.encoder.layer`, optional `model.pooler`): BERT,
      RoBERTa, ELECTRA, MiniLM, XLM-R and other BERT-family models;
    - DistilBERT-style (`model.embeddings`, `model.transformer.layer`, no pooler, no token types).

    # Parameters

    model_name : `str`
        A Hugging Face model name or a local directory.
    num_layers : `int`
        How many transformer layers to keep (from the bottom).
    keep_pooler : `bool`
        Keep the encoder's own pooler (for `cls_pooler` heads). If `False` it is removed, so that no
        parameter is left without a gradient.
    load_weights : `bool`, optional (default = `True`)
        Load the pretrained weights. `False` builds the architecture from the config only (used when
        loading a model archive, whose state dict has the weights anyway).
    """

    def __init__(
        self, model_name: str, num_layers: int, keep_pooler: bool, load_weights: bool = True
    ) -> None:
        super().__init__()
        self.transformer = cached_transformers.get(
            model_name, make_copy=True, load_weights=load_weights
        )
        config = self.transformer.config
        if hasattr(self.transformer, "encoder") and hasattr(self.transformer.encoder, "layer"):
            self._layout = "bert"
            layers = self.transformer.encoder.layer
        elif hasattr(self.transformer, "transformer") and hasattr(
            self.transformer.transformer, "layer"
        ):
            self._layout = "distilbert"
            layers = self.transformer.transformer.layer
        else:
            raise ConfigurationError(
                f"{model_name} ({type(self.transformer).__name__}) is not a BERT-style or "
                "DistilBERT-style encoder; early exit needs access to its individual layers"
            )
        self.full_depth = len(layers)
        if not 1 <= num_layers <= self.full_depth:
            raise ConfigurationError(
                f"cannot keep {num_layers} layers of {model_name}, which has {self.full_depth}"
            )
        del layers[num_layers:]
        self.num_layers = num_layers
        self.hidden_size = config.hidden_size if hasattr(config, "hidden_size") else config.dim
        pooler = getattr(self.transformer, "pooler", None)
        if keep_pooler and pooler is None:
            raise ConfigurationError(
                f"{model_name} ({type(self.transformer).__name__}) has no pooler, so "
                "head_pooling='cls_pooler' is not available; use 'cls' or 'mean'"
            )
        if not keep_pooler and pooler is not None:
            self.transformer.pooler = None
        self.has_token_types = self._layout == "bert" and getattr(config, "type_vocab_size", 0) > 0
        self.supports_packing = self._layout == "bert" and all(
            self._packable(layer) for layer in self.layers
        )

    @staticmethod
    def _packable(layer: torch.nn.Module) -> bool:
        """Whether `run_packed_layer` computes what this BERT-style layer computes."""
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

    @property
    def layers(self) -> torch.nn.ModuleList:
        if self._layout == "bert":
            return self.transformer.encoder.layer
        return self.transformer.transformer.layer

    def embed(
        self, token_ids: torch.LongTensor, type_ids: Optional[torch.LongTensor] = None
    ) -> torch.Tensor:
        """The embedding layer's output, shape `(batch_size, num_tokens, hidden_size)`."""
        if self._layout == "bert":
            if not self.has_token_types:
                type_ids = None
            return self.transformer.embeddings(input_ids=token_ids, token_type_ids=type_ids)
        return self.transformer.embeddings(token_ids)

    def layer_mask(self, mask: torch.BoolTensor, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """
        The attention mask in the form this encoder's layers take, from a `(batch_size, num_tokens)`
        boolean padding mask. For BERT-style layers `None` when nothing is padded (they then skip
        masking); DistilBERT's layers always take the 0/1 mask.
        """
        if self._layout == "bert":
            if bool(mask.all()):
                return None
            # (batch_size, 1, 1, num_tokens), additive: 0 for tokens, a large negative for padding
            return self.transformer.get_extended_attention_mask(
                mask.long(), mask.shape, dtype=dtype
            )
        return mask.long()  # (batch_size, num_tokens), DistilBERT's layers take the 0/1 mask

    def run_layer(
        self, index: int, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Runs transformer layer `index` on `hidden`, shape `(batch_size, num_tokens, hidden_size)`."""
        if self._layout == "bert":
            return self.layers[index](hidden, attention_mask=layer_mask)[0]
        return self.layers[index](hidden, attn_mask=layer_mask)[0]

    def run_packed_layer(self, index: int, packed: PackedRows) -> torch.Tensor:
        """
        Runs BERT-style layer `index` (at inference) on the real tokens of `packed`, whose `hidden`
        is `(num_tokens, hidden_size)`; returns the layer's output of the same shape. Needs
        `supports_packing`.
        """
        layer = self.layers[index]
        attention = layer.attention.self
        hidden = packed.hidden  # (num_tokens, hidden_size)
        heads, head_size = attention.num_attention_heads, attention.attention_head_size

        def split_heads(padded: torch.Tensor) -> torch.Tensor:
            # (rows, longest, heads * head_size) -> (rows, heads, longest, head_size)
            return padded.view(padded.shape[0], padded.shape[1], heads, head_size).transpose(1, 2)

        queries, keys, values = (
            packed.pad(projection(hidden))  # per group: (rows, longest, heads * head_size)
            for projection in (attention.query, attention.key, attention.value)
        )
        contexts = []
        for query, key, value, mask in zip(queries, keys, values, packed.attention_masks):
            context = torch.nn.functional.scaled_dot_product_attention(
                split_heads(query), split_heads(key), split_heads(value), attn_mask=mask
            )  # (rows, heads, longest, head_size)
            contexts.append(context.transpose(1, 2).flatten(2))  # (rows, longest, all heads)
        context = packed.unpad(contexts)  # (num_tokens, heads * head_size)
        attention_output = layer.attention.output(context, hidden)  # (num_tokens, hidden_size)
        intermediate = layer.intermediate(attention_output)  # (num_tokens, intermediate_size)
        return layer.output(intermediate, attention_output)  # (num_tokens, hidden_size)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's own pooler on a layer's output: `(batch_size, hidden_size)`."""
        return self.transformer.pooler(hidden)
