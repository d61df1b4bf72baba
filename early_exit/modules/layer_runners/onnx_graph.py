"""
One transformer layer as an ONNX graph on packed rows: what the `onnxruntime` layer runner exports.
"""

import logging
import warnings
from typing import List

import torch

from early_exit.modules.layer_adapters import LayerAdapter

INPUT_NAMES = ("hidden", "slots", "places", "mask")
OPSET = 17


class _GraphRows:
    """
    What an adapter's `run_packed` reads of `PackedRows`, in graph-friendly operations only: the
    rows padded as one group (`PackedRows.one_group`) by gathering, never by scattering (ONNX
    Runtime's scatter costs as much as the layer's matrix products at a few hundred tokens).
    """

    def __init__(
        self,
        hidden: torch.Tensor,
        slots: torch.Tensor,
        places: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        self.hidden = hidden  # (num_tokens, hidden_size)
        self._slots = slots  # (num_rows * longest,)
        self._places = places  # (num_tokens,)
        self._shape = mask.shape
        # Additive (0 or the lowest float) rather than boolean: a boolean mask exports as a
        # select on every attention score and a NaN guard after the softmax, which together cost
        # ONNX Runtime about an eighth of a packed layer at batch size 32.
        blocked = torch.zeros(mask.shape, dtype=hidden.dtype).masked_fill(
            ~mask, torch.finfo(hidden.dtype).min
        )  # (num_rows, 1, 1, longest)
        self.attention_masks = [blocked]

    def pad(self, packed: torch.Tensor) -> List[torch.Tensor]:
        # A padding slot holds some real token: as a key it is masked, as a query dropped.
        padded = packed.index_select(0, self._slots)  # (num_rows * longest, features)
        return [padded.view(self._shape[0], self._shape[-1], packed.shape[-1])]

    def unpad(self, padded: List[torch.Tensor]) -> torch.Tensor:
        flat = padded[0].reshape(-1, padded[0].shape[-1])  # (num_rows * longest, features)
        return flat.index_select(0, self._places)  # (num_tokens, features)


class _PackedLayer(torch.nn.Module):
    """A layer run by its adapter on packed rows, with tensors only in and out (to export it)."""

    def __init__(self, adapter: LayerAdapter, layer: torch.nn.Module) -> None:
        super().__init__()
        self._adapter = adapter
        self.layer = layer

    def forward(  # type: ignore[override]
        self, hidden: torch.Tensor, slots: torch.Tensor, places: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self._adapter.run_packed(self.layer, _GraphRows(hidden, slots, places, mask))


def export_packed_layer(adapter: LayerAdapter, layer: torch.nn.Module, path: str) -> None:
    """
    Writes `layer` (in eval mode, on the CPU, float32) on packed rows as an ONNX graph to `path`:
    inputs `INPUT_NAMES` (the packed tokens and `PackedRows.one_group`'s layout), output `hidden`
    `(num_tokens, hidden_size)`; the number of tokens, rows and the longest row are dynamic.
    """
    num_tokens, hidden_size = 5, _hidden_size(layer)
    example = (
        torch.zeros((num_tokens, hidden_size)),
        torch.tensor([0, 1, 2, 3, 4, 0]),  # two rows, of 3 and 2 tokens
        torch.tensor([0, 1, 2, 3, 4]),
        torch.tensor([[True, True, True], [True, True, False]]).view(2, 1, 1, 3),
    )
    dynamic = {
        "hidden": {0: "num_tokens"},
        "slots": {0: "num_slots"},
        "places": {0: "num_tokens"},
        "mask": {0: "num_rows", 3: "longest"},
        "output": {0: "num_tokens"},
    }
    module = _PackedLayer(adapter, layer).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (deprecated, still in torch 2.x) handles this graph's dynamic
        # shapes as it is; its deprecation warning is not the user's concern.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            path,
            input_names=list(INPUT_NAMES),
            output_names=["output"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(source: str, target: str) -> None:
    """
    ONNX Runtime's dynamic int8 quantization of `source` into `target`: every matrix product's
    weights int8 per output channel, activations quantized at run time.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # It logs a line per tensor and advice on pre-processing on the root logger.
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            source,
            target,
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def _hidden_size(layer: torch.nn.Module) -> int:
    for module in layer.modules():
        if isinstance(module, torch.nn.LayerNorm):
            return int(module.normalized_shape[0])
    raise ValueError(f"no LayerNorm in {type(layer).__name__}: cannot tell its hidden size")
