from typing import Optional

import torch
from allennlp.common import Registrable

from early_exit.modules.layer_adapters import LayerAdapter
from early_exit.modules.packed_rows import PackedRows


class LayerRunner(Registrable):
    """
    How the encoder's transformer layers are computed: the one seam where another way of running a
    layer (oneDNN-prepacked torch, ONNX Runtime in fp32 or int8, ...) plugs in under the exits.
    A runner turns a layer's input rows into its output rows, packed (`run_packed`: the real
    tokens of the running rows, `(num_tokens, hidden_size)`) or padded (`run_padded`); the exit
    loop, heads and policies do not change with it. It is chosen once per model (the model's
    `layer_runner`) and bound to the encoder when the encoder is built (`bind`).

    A runner that computes the layers in another precision (`calibration_key` not `None`) has
    temperatures of its own: `allennlp calibrate -o '{"model.layer_runner": ...}'` refits them
    with the runner and stores them in the archive under that key.

    The embeddings are the encoder's; a runner says how BERT's are computed on unpadded rows
    (`unpadded_embedding`): by default the module itself, or the torch runner's fast path for a
    runner that keeps them in torch.

    Registered implementations: "torch" (the default), "onnxruntime", "openvino", "cuda".
    """

    default_implementation = "torch"
    # The archive the model's weights were loaded from, if any (`loaded_from`).
    archive_file: Optional[str] = None
    _calibration_key: Optional[str] = None  # see `calibration_key`

    def bind(self, adapter: LayerAdapter, layers: torch.nn.ModuleList, packable: bool) -> None:
        """
        Called once, when the encoder is built (before its weights are loaded): `layers` are the
        encoder's transformer layers, run by `adapter`'s family rules; `packable` says whether
        every layer can run on packed rows. Raises a `ConfigurationError` naming the option if
        the runner cannot run these layers.
        """
        self._adapter = adapter
        self._layers = layers

    def unpadded_embedding(self, embeddings: torch.nn.Module) -> "UnpaddedEmbedding":
        """
        How this runner computes BERT's embeddings (`BertEmbeddings`, absolute positions) of rows
        without padding at inference: asked once, when the runner is bound to an encoder. The
        base calls the module itself.
        """
        return UnpaddedEmbedding(embeddings)

    def loaded_from(self, archive_file: Optional[str]) -> None:
        """
        Told by the encoder which archive (a `model.tar.gz` or its extracted folder) the weights
        were loaded from, after loading and whenever the runner is bound: a runner that builds
        something once from the weights (an exported graph) keeps it beside the archive.
        """
        self.archive_file = archive_file

    def check_device(self, device: torch.device) -> None:
        """Raises a `ConfigurationError` if the runner cannot run on `device` (before any work)."""

    def run_packed(self, index: int, packed: PackedRows) -> torch.Tensor:
        """
        Layer `index` on the real tokens of `packed` (`packed.hidden`: `(num_tokens, hidden)`);
        returns the layer's output of the same shape.
        """
        raise NotImplementedError

    def run_padded(
        self, index: int, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """
        Layer `index` on padded rows `(num_rows, num_tokens, hidden_size)`, masked by
        `layer_mask` (the adapter's form); the same shape back. Training runs this way.
        """
        return self._adapter.run_padded(self._layers[index], hidden, layer_mask)

    def calibration_key(self) -> Optional[str]:
        """
        `None` when the runner computes what torch in float32 computes (up to float rounding),
        so that the model's own temperatures hold; otherwise the name its own temperatures are
        stored under in an archive (e.g. "onnxruntime_int8"): a runner of another precision sets
        `_calibration_key` once (the model reads it for every head it scales).
        """
        return self._calibration_key

    def describe(self) -> str:
        """A short name for reports and log lines, e.g. "onnxruntime int8"."""
        raise NotImplementedError


class UnpaddedEmbedding:
    """
    BERT's embeddings of rows without padding: `token_ids` and `type_ids` (`None`: BERT's zero
    token types) `(num_rows, num_tokens)` -> `(num_rows, num_tokens, hidden_size)`, here by
    calling the module itself. An object rather than a closure, so that a copy of the model
    (`copy.deepcopy`) calls its own copy of the module.
    """

    def __init__(self, embeddings: torch.nn.Module) -> None:
        self.embeddings = embeddings

    def __call__(self, token_ids: torch.Tensor, type_ids: Optional[torch.Tensor]) -> torch.Tensor:
        return self.embeddings(input_ids=token_ids, token_type_ids=type_ids)
