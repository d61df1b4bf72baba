"""
The torch runner's CPU fast path for the encoder's linear layers at inference: oneDNN with each
weight reordered once. Another way of running a layer is a layer runner
(`early_exit.modules.layer_runners`), not a change here.
"""

import torch
from overrides import overrides

from early_exit.modules.tensor_cache import VersionedCache


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


class PrepackedLinear(torch.nn.Linear):
    """
    A drop-in `torch.nn.Linear` (the same parameters and state dict keys) that, on a CPU without
    gradients in float32, runs through oneDNN with its weight reordered once into oneDNN's blocked
    layout, instead of torch's default linear: a linear call's fixed cost is what dominates a layer
    on the few rows left after most have exited (docs/performance.md). The reordered weight is
    cached outside the state dict and made anew when the weight changes; results agree with torch's
    linear to float rounding, as any other order of summation would. Anywhere else (training, a
    GPU, half precision, `prepack` off) it is `torch.nn.Linear` itself.

    # Parameters

    As `torch.nn.Linear`; `from_linear` wraps an existing layer's parameters without copying them.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prepack = True
        self._reordered: VersionedCache[torch.Tensor] = VersionedCache()

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> "PrepackedLinear":
        """A `PrepackedLinear` sharing `linear`'s weight and bias (no copy, no initialisation)."""
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    @overrides
    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        weight = self.weight
        if not (
            self.prepack
            and ONEDNN_LINEAR
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()  # exported to ONNX: the graph has torch's linear
            and input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
        ):
            return super().forward(input)
        reordered = self._reordered.get(
            (weight,), lambda: torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        )
        return torch.ops.mkldnn._linear_pointwise(input, reordered, self.bias, "none", [], "")


def use_prepacked_linears(module: torch.nn.Module, prepack: bool) -> None:
    """
    Replaces every plain `torch.nn.Linear` inside `module` by a `PrepackedLinear` on its parameters.
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, PrepackedLinear.from_linear(child))
    for child in module.modules():
        if isinstance(child, PrepackedLinear):
            child.prepack = prepack
