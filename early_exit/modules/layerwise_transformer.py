from typing import Optional

import torch
from allennlp.common import cached_transformers
from allennlp.common.checks import ConfigurationError
from transformers.models.bert.modeling_bert import BertEmbeddings

from early_exit.modules.layer_adapters import LAYER_ADAPTERS
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.padded_rows import PaddedRows
from early_exit.modules.row_set import RowSet
from early_exit.modules.layer_runners import LayerRunner, TorchLayerRunner


class LayerwiseTransformer(torch.nn.Module):
    """
    A Hugging Face encoder that is run one transformer layer at a time, so that a caller can stop
    after any layer and drop finished rows between layers. The encoder is loaded through
    `transformers` (via allennlp's `cached_transformers`); a `LayerAdapter` knows its family's
    layout (BERT-style: BERT, RoBERTa, ELECTRA, MiniLM, XLM-R; DistilBERT-style).

    `run_layer` calls a layer as it is, on padded rows. `run_packed_layer` runs it on the real
    tokens alone (`PackedRows`): only the attention core is re-arranged, every other block is the
    layer's own module (see the adapters). `supports_packing` says whether every layer allows that
    (self-attention with absolute position embeddings).

    How the layers are computed is the `layer_runner`'s: torch by default (with oneDNN-prepacked
    linear layers on a CPU), ONNX Runtime in fp32 or int8, torch on a CUDA device in fp32 or half
    precision; the state dict is the same. The runner also says how `embed_packed` computes
    BERT's embeddings of rows without padding (the torch runner's fast path, or the module).

    Layers after `num_layers` are removed from the module: they are never computed and not part of
    the state dict (so not stored in a model archive).

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
        For the default runner (`layer_runner` not given): `TorchLayerRunner(prepack_weights)`.
    layer_runner : `LayerRunner`, optional (default = the "torch" runner)
        How the transformer layers are computed; bound to the layers here.
    """

    def __init__(
        self,
        model_name: str,
        num_layers: int,
        keep_pooler: bool,
        load_weights: bool = True,
        prepack_weights: bool = True,
        layer_runner: Optional[LayerRunner] = None,
    ) -> None:
        super().__init__()
        self.archive_file: Optional[str] = None  # the archive the weights came from, if any
        self.transformer = cached_transformers.get(
            model_name, make_copy=True, load_weights=load_weights
        )
        config = self.transformer.config
        for adapter in LAYER_ADAPTERS:
            layers = adapter.layers(self.transformer)
            if layers is not None:
                break
        else:
            raise ConfigurationError(
                f"{model_name} ({type(self.transformer).__name__}) is not a BERT-style or "
                "DistilBERT-style encoder; early exit needs access to its individual layers"
            )
        self._adapter = adapter
        self._is_bert = hasattr(self.transformer, "encoder")
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
        self.has_token_types = self._is_bert and getattr(config, "type_vocab_size", 0) > 0
        self.supports_packing = all(adapter.packable(layer) for layer in self.layers)
        # BERT's own embeddings take explicit position ids; other families number positions their
        # own way (RoBERTa from the padding index), so `embed_packed` is BERT's only.
        self.embeds_packed = (
            self.supports_packing and type(self.transformer.embeddings) is BertEmbeddings
        )
        self.use_layer_runner(layer_runner or TorchLayerRunner(prepack_weights))

    def use_layer_runner(self, runner: LayerRunner) -> None:
        """Computes the layers with `runner` from now on (bound to them here)."""
        runner.bind(self._adapter, self.layers, self.supports_packing)
        runner.loaded_from(self.archive_file)
        self.layer_runner = runner
        # How `embed_packed` embeds rows without padding: the runner's way.
        self._unpadded_embedding = (
            runner.unpadded_embedding(self.transformer.embeddings) if self.embeds_packed else None
        )

    def loaded_from(self, archive_file: str) -> None:
        """
        The weights came from `archive_file` (set after an archive is loaded): every runner of
        this encoder, this one and any set later, keeps what it builds once beside it.
        """
        self.archive_file = archive_file
        self.layer_runner.loaded_from(archive_file)

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self._adapter.layers(self.transformer)

    def embed(
        self, token_ids: torch.LongTensor, type_ids: Optional[torch.LongTensor] = None
    ) -> torch.Tensor:
        """The embedding layer's output, shape `(batch_size, num_tokens, hidden_size)`."""
        if self._is_bert:
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
        # One row, or rows of one length: nothing to pick out; embedded the runner's way.
        if not padded:
            if not self.has_token_types:
                type_ids = None
            # (num_tokens, hidden_size)
            return self._unpadded_embedding(token_ids, type_ids).flatten(0, 1)
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        ids = token_ids[mask].unsqueeze(0)  # (1, num_real_tokens)
        if self.has_token_types and type_ids is not None:
            types = type_ids[mask].unsqueeze(0)  # (1, num_real_tokens)
        else:
            types = torch.zeros_like(ids)  # what `embed` gets from BERT's zero buffer
        return self.transformer.embeddings(
            input_ids=ids, token_type_ids=types, position_ids=positions[mask].unsqueeze(0)
        )[0]

    def layer_mask(self, mask: torch.BoolTensor, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """
        The attention mask in the form this encoder's layers take, from a `(batch_size, num_tokens)`
        boolean padding mask (for BERT-style layers `None` when nothing is padded).
        """
        return self._adapter.layer_mask(self.transformer, mask, dtype)

    def run_rows(self, index: int, rows: RowSet) -> torch.Tensor:
        """
        Layer `index` on `rows` in their layout: `(num_tokens, hidden_size)` for `PackedRows`,
        `(num_rows, num_tokens, hidden_size)` for `PaddedRows` (whose layer mask is made once).
        """
        if isinstance(rows, PackedRows):
            return self.run_packed_layer(index, rows)
        if not isinstance(rows, PaddedRows):
            raise TypeError(f"rows of an unknown layout: {type(rows).__name__}")
        if not rows.layer_mask_known:  # `None` (no padding) is a valid mask too
            rows.layer_mask = self.layer_mask(rows.mask, rows.hidden.dtype)
            rows.layer_mask_known = True
        return self.run_layer(index, rows.hidden, rows.layer_mask)

    def run_layer(
        self, index: int, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """
        Runs transformer layer `index` on `hidden`, shape `(batch_size, num_tokens, hidden_size)`.
        """
        return self.layer_runner.run_padded(index, hidden, layer_mask)

    def run_packed_layer(self, index: int, packed: PackedRows) -> torch.Tensor:
        """
        Runs layer `index` (at inference) on the real tokens of `packed`, whose `hidden` is
        `(num_tokens, hidden_size)`; returns the layer's output of the same shape. Needs
        `supports_packing`.
        """
        return self.layer_runner.run_packed(index, packed)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's own pooler on a layer's output: `(batch_size, hidden_size)`."""
        return self.transformer.pooler(hidden)
