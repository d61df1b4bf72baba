import weakref
from typing import Optional, Tuple

import torch
from allennlp.common import cached_transformers
from allennlp.common.checks import ConfigurationError
from transformers.models.bert.modeling_bert import BertEmbeddings

from early_exit.modules.packed_rows import PackedRows


def _onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's linear with pre-reordered weights (CPU builds do)."""
    try:
        return (
            torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        )
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear_available()

# Linear layer -> ((weight storage, weight version), its weight in oneDNN's layout). Kept outside the
# modules: the reordered weights are opaque tensors that must not enter a state dict, a deep copy or
# a pickle, and an entry goes when its layer does.
_REORDERED_WEIGHTS: (
    "weakref.WeakKeyDictionary[torch.nn.Linear, Tuple[Tuple[int, int], torch.Tensor]]"
)
_REORDERED_WEIGHTS = weakref.WeakKeyDictionary()


def _dropout(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """`module(inputs)` for a dropout module; in eval mode, where dropout is the identity, no call."""
    return module(inputs) if module.training else inputs


class LayerwiseTransformer(torch.nn.Module):
    """
    A Hugging Face encoder that is run one transformer layer at a time, so that a caller can stop
    after any layer and drop finished rows between layers. The encoder is loaded through
    `transformers` (via allennlp's `cached_transformers`).

    `run_layer` calls a layer as it is, on padded rows. `run_packed_layer` runs a BERT-style layer
    on the real tokens alone (`PackedRows`): it uses the layer's own query, key and value
    projections, attention output and feed-forward modules, and only the steps between them (split
    into heads, `scaled_dot_product_attention` on groups of rows padded to their longest, merge;
    dropout, residual and layer norm after each linear block) are written here, as the layer's
    modules do them. `supports_packing` says whether an encoder's layers allow that (BERT-style
    self-attention with absolute position embeddings).

    On a CPU without gradients, `run_packed_layer` runs the linear layers through oneDNN with each
    weight reordered once into oneDNN's blocked layout (`linear`; `prepack_weights`). With torch's
    default CPU linear a MiniLM layer call has a fixed cost of about 1.1 ms (2 threads) whatever
    its rows; with reordered weights about 0.45 ms, and large calls gain 10 to 15% too
    (docs/performance.md, finding 11). The reordered weights are cached outside the state dict and
    made anew when a weight changes (training, `load_state_dict`). They agree with torch's linear
    to float rounding (about 1e-6 relative), as any other order of summation would.

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
    prepack_weights : `bool`, optional (default = `True`)
        Run the linear layers of `run_packed_layer` through oneDNN with reordered weights where that
        is possible (see above); `False` always calls the modules.
    """

    def __init__(
        self,
        model_name: str,
        num_layers: int,
        keep_pooler: bool,
        load_weights: bool = True,
        prepack_weights: bool = True,
    ) -> None:
        super().__init__()
        self.prepack_weights = prepack_weights
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
        # BERT's own embeddings take explicit position ids; other families number positions their
        # own way (RoBERTa from the padding index), so `embed_packed` is BERT's only.
        self.embeds_packed = (
            self.supports_packing and type(self.transformer.embeddings) is BertEmbeddings
        )
        # What `_bert_embeddings_at_inference` computes for BERT's embeddings: their parts.
        self._embedding_parts = self._plain_bert_embedding_parts() if self.embeds_packed else None

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
            and all(
                hasattr(getattr(layer, block, None), name)
                for block, name in (
                    ("intermediate", "dense"),
                    ("intermediate", "intermediate_act_fn"),
                    ("output", "dense"),
                    ("output", "dropout"),
                    ("output", "LayerNorm"),
                )
            )
            and all(
                hasattr(getattr(layer.attention, "output", None), name)
                for name in ("dense", "dropout", "LayerNorm")
            )
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

    def embed_packed(
        self,
        token_ids: torch.LongTensor,
        mask: torch.BoolTensor,
        type_ids: Optional[torch.LongTensor] = None,
        padded: Optional[bool] = None,
    ) -> torch.Tensor:
        """
        `embed` of a padded batch `(batch_size, num_tokens)`, for its real tokens (where `mask` is
        true) only, row after row: shape `(num_real_tokens, hidden_size)`, as `embed(...)[mask]`
        but in one call on the real tokens, each at its position in the padded row, without
        computing the padding or splitting the batch. Needs `embeds_packed`. `padded`, whether
        `mask` has a false anywhere, is read from `mask` if not given.
        """
        if padded is None:
            padded = not bool(mask.all())
        if not padded:  # (one row, or rows of one length): nothing to pick out
            embedded = self._bert_embeddings_at_inference(token_ids, type_ids)
            if embedded is None:
                embedded = self.embed(token_ids, type_ids)
            return embedded.flatten(0, 1)  # (num_tokens, hidden_size)
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        ids = token_ids[mask].unsqueeze(0)  # (1, num_real_tokens)
        if self.has_token_types and type_ids is not None:
            types = type_ids[mask].unsqueeze(0)  # (1, num_real_tokens)
        else:
            types = torch.zeros_like(ids)  # what `embed` gets from BERT's zero buffer
        return self.transformer.embeddings(
            input_ids=ids, token_type_ids=types, position_ids=positions[mask].unsqueeze(0)
        )[0]

    def _plain_bert_embedding_parts(self) -> Optional[Tuple[torch.nn.Module, ...]]:
        """
        BERT's word, position and token-type embeddings and layer norm, if they are the plain
        torch modules (no `max_norm`) with absolute positions and the zero token-type buffer.
        """
        embeddings = self.transformer.embeddings
        parts = tuple(
            getattr(embeddings, name, None)
            for name in (
                "word_embeddings",
                "position_embeddings",
                "token_type_embeddings",
                "LayerNorm",
            )
        )
        if (
            getattr(embeddings, "position_embedding_type", "absolute") != "absolute"
            or not isinstance(getattr(embeddings, "token_type_ids", None), torch.Tensor)
            or any(type(part) is not torch.nn.Embedding or part.max_norm for part in parts[:3])
            or type(parts[3]) is not torch.nn.LayerNorm
        ):
            return None
        return parts

    def _bert_embeddings_at_inference(
        self, token_ids: torch.LongTensor, type_ids: Optional[torch.LongTensor]
    ) -> Optional[torch.Tensor]:
        """
        `embed(token_ids, type_ids)` `(batch_size, num_tokens, hidden_size)` for `BertEmbeddings`
        in eval mode with absolute positions, bit for bit (the same operations on the same values
        in the same order), in six operators instead of eight and without its five module calls:
        the position embeddings are the first rows of their table rather than a lookup of
        `arange(num_tokens)`, and the dropout (the identity) is not called. At batch size 1 the
        embedding is the largest part of a forward pass outside the layers. `None` where that
        does not hold (another embedding class or parts, training mode, other positions, hooks):
        then the module itself is called.
        """
        embeddings, parts = self.transformer.embeddings, self._embedding_parts
        if (
            parts is None
            or embeddings.training
            or any(
                module._forward_hooks or module._forward_pre_hooks
                for module in (embeddings, *parts)
            )
        ):
            return None
        words, positions, types, norm = parts
        num_tokens = token_ids.shape[1]
        if not self.has_token_types or type_ids is None:  # BERT's zero buffer, as `embed` gets
            type_ids = embeddings.token_type_ids[:, :num_tokens].expand_as(token_ids)
        # (batch_size, num_tokens, hidden_size)
        hidden = torch.nn.functional.embedding(token_ids, words.weight, words.padding_idx)
        hidden = hidden + torch.nn.functional.embedding(type_ids, types.weight, types.padding_idx)
        hidden += positions.weight[:num_tokens]  # (num_tokens, hidden_size), broadcast
        return torch.nn.functional.layer_norm(
            hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps
        )

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
            packed.pad(self.linear(projection, hidden))  # per group: (rows, longest, all heads)
            for projection in (attention.query, attention.key, attention.value)
        )
        contexts = []
        for query, key, value, mask in zip(queries, keys, values, packed.attention_masks):
            context = torch.nn.functional.scaled_dot_product_attention(
                split_heads(query), split_heads(key), split_heads(value), attn_mask=mask
            )  # (rows, heads, longest, head_size)
            contexts.append(context.transpose(1, 2).flatten(2))  # (rows, longest, all heads)
        context = packed.unpad(contexts)  # (num_tokens, heads * head_size)
        # As BertSelfOutput, BertIntermediate and BertOutput compute them, with `linear` for `dense`.
        block = layer.attention.output
        attention_output = block.LayerNorm(
            _dropout(block.dropout, self.linear(block.dense, context)) + hidden
        )  # (num_tokens, hidden_size)
        intermediate = layer.intermediate.intermediate_act_fn(
            self.linear(layer.intermediate.dense, attention_output)
        )  # (num_tokens, intermediate_size)
        block = layer.output
        return block.LayerNorm(
            _dropout(block.dropout, self.linear(block.dense, intermediate)) + attention_output
        )  # (num_tokens, hidden_size)

    def linear(self, module: torch.nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
        """
        `module(inputs)`, through oneDNN with the weight reordered once where `prepack_weights` is
        on and that is possible: a plain `torch.nn.Linear` without hooks, float32 on a CPU, no
        gradients. Otherwise the module itself is called.
        """
        weight = module.weight
        if not (
            self.prepack_weights
            and ONEDNN_LINEAR
            and type(module) is torch.nn.Linear
            and not torch.is_grad_enabled()
            and inputs.device.type == "cpu"
            and inputs.dtype == torch.float32
            and weight.dtype == torch.float32
            and not module._forward_hooks
            and not module._forward_pre_hooks
        ):
            return module(inputs)
        version = (weight.data_ptr(), weight._version)
        cached = _REORDERED_WEIGHTS.get(module)
        if cached is None or cached[0] != version:
            cached = (version, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))
            _REORDERED_WEIGHTS[module] = cached
        return torch.ops.mkldnn._linear_pointwise(inputs, cached[1], module.bias, "none", [], "")

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's own pooler on a layer's output: `(batch_size, hidden_size)`."""
        return self.transformer.pooler(hidden)
