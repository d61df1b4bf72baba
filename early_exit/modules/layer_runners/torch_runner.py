import torch
from overrides import overrides

from early_exit.modules.layer_adapters import LayerAdapter
from early_exit.modules.layer_runners.layer_runner import LayerRunner
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.prepacked_linear import use_prepacked_linears


@LayerRunner.register("torch")
class TorchLayerRunner(LayerRunner):
    """
    The layers as torch modules: padded rows through the Hugging Face layer itself, packed rows
    through the adapter's packed form (the layer's own blocks around a re-arranged attention).
    Its CPU fast path: the linear layers are `PrepackedLinear`s, which on a CPU without gradients
    run through oneDNN with each weight reordered once (`prepack_weights`); the state dict is the
    same. Works on any device and with gradients (training always runs this way).

    Registered as a `LayerRunner` with name "torch".

    # Parameters

    prepack_weights : `bool`, optional (default = `True`)
        Run the linear layers through oneDNN with reordered weights where that is possible;
        `False` runs them as `torch.nn.Linear`.
    """

    def __init__(self, prepack_weights: bool = True) -> None:
        self.prepack_weights = prepack_weights

    @overrides
    def bind(self, adapter: LayerAdapter, layers: torch.nn.ModuleList, packable: bool) -> None:
        super().bind(adapter, layers, packable)
        use_prepacked_linears(layers, self.prepack_weights)

    @overrides
    def run_packed(self, index: int, packed: PackedRows) -> torch.Tensor:
        return self._adapter.run_packed(self._layers[index], packed)  # (num_tokens, hidden_size)

    @overrides
    def describe(self) -> str:
        return "torch" if self.prepack_weights else "torch (no prepacking)"
