import contextlib
from typing import ContextManager, Dict, Optional

import torch
from allennlp.common.checks import ConfigurationError
from overrides import overrides

from early_exit.modules.layer_runners.layer_runner import LayerRunner
from early_exit.modules.layer_runners.torch_runner import TorchLayerRunner
from early_exit.modules.packed_rows import PackedRows

# What each precision computes the layers' matrix products and attention in (`None`: float32).
PRECISIONS: Dict[str, Optional[torch.dtype]] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@LayerRunner.register("cuda")
class CudaLayerRunner(TorchLayerRunner):
    """
    The layers as torch modules on a CUDA device: packed rows (the default at inference) attend
    with torch's `scaled_dot_product_attention` on length groups, which picks a fused kernel on
    the GPU; padded rows go through the Hugging Face layer itself. In `fp16` or `bf16` the layers
    run under `torch.autocast` at inference (matrix products and attention in half precision,
    layer norms and softmax in float32, each layer's output float32), while the embeddings, heads
    and exit policy stay float32; training and runs with gradients are float32. Half precision
    moves the heads' confidences a little, so such a runner has temperatures of its own
    (`calibration_key`): refit them with `allennlp calibrate ... --cuda-device 0 -o
    '{"model.layer_runner": {"type": "cuda", "precision": "fp16"}}'`.

    Refused (one `ConfigurationError`) where torch sees no CUDA device, when built; and, when the
    model runs, if the model is not on a CUDA device (`--cuda-device 0`, `model.to("cuda")`).

    Registered as a `LayerRunner` with name "cuda".

    # Parameters

    precision : `str`, optional (default = `"fp32"`)
        `"fp32"`, `"fp16"` or `"bf16"` (autocast, at inference).
    """

    def __init__(self, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ConfigurationError(
                f"layer_runner cuda: precision must be one of {', '.join(PRECISIONS)}, "
                f"got {precision!r}"
            )
        if not torch.cuda.is_available():
            raise ConfigurationError(
                'layer_runner {"type": "cuda"} needs a CUDA device, and torch '
                f'{torch.__version__} sees none on this machine; use {{"type": "torch"}} '
                '(or {"type": "onnxruntime", "precision": "int8"}) on the CPU'
            )
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigurationError(
                'layer_runner {"type": "cuda", "precision": "bf16"}: this GPU has no bfloat16 '
                '(before Ampere); use "precision": "fp16"'
            )
        # oneDNN's prepacked linear is the CPU's; on the GPU the layers are plain torch.
        super().__init__(prepack_weights=False)
        self.precision = precision
        self._dtype = PRECISIONS[precision]
        # Read by the model for every head it scales (`serving_temperatures`): made once.
        self._calibration_key = None if self._dtype is None else f"cuda_{precision}"

    @overrides
    def check_device(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise ConfigurationError(
                f'layer_runner {{"type": "cuda"}} runs on a CUDA device, but the model is on '
                f'{device}; pass --cuda-device 0 (model.to("cuda") in Python), or use '
                '{"type": "torch"} on the CPU'
            )

    @overrides
    def run_packed(self, index: int, packed: PackedRows) -> torch.Tensor:
        with self._precision(packed.hidden, index):
            output = super().run_packed(index, packed)
        return output.to(packed.hidden.dtype)  # (num_tokens, hidden_size)

    @overrides
    def run_padded(
        self, index: int, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        with self._precision(hidden, index):
            output = super().run_padded(index, hidden, layer_mask)
        return output.to(hidden.dtype)  # (num_rows, num_tokens, hidden_size)

    def _precision(self, hidden: torch.Tensor, index: int) -> ContextManager:
        """Autocast to the runner's precision at inference, on the tensors' device."""
        if self._dtype is None or torch.is_grad_enabled() or self._layers[index].training:
            return contextlib.nullcontext()
        return torch.autocast(hidden.device.type, dtype=self._dtype)

    @overrides
    def describe(self) -> str:
        return f"cuda {self.precision}"
