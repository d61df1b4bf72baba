from typing import Optional

from overrides import overrides

from early_exit.modules.layer_runners.exported_graph_runner import (
    SMALL_CALL_TOKENS,
    Call,
    ExportedGraphRunner,
)
from early_exit.modules.layer_runners.layer_runner import LayerRunner

__all__ = ["OnnxRuntimeLayerRunner", "SMALL_CALL_TOKENS"]


@LayerRunner.register("onnxruntime")
class OnnxRuntimeLayerRunner(ExportedGraphRunner):
    """
    Each transformer layer as an ONNX Runtime session on the CPU, on packed rows: the layer's
    linear blocks on the real tokens only, the attention on the rows padded to the longest inside
    the graph. The embeddings, heads and exit policy stay in torch between layers; a row still
    leaves after its head and skips every later layer's session.

    Each layer is exported (with `torch.onnx`, through the encoder family's adapter, so that the
    graph computes what the torch runner computes) and, for `int8`, quantized with ONNX Runtime's
    dynamic quantization (int8 weights per output channel, activations quantized per call). That
    happens once per layer's weights and settings (`ExportedGraphRunner`): the graph is cached
    beside the model's archive (else in the user's cache) under a hash of the layer's weights,
    the precision and the library versions, so a second load of the same archive builds sessions
    only; one log line says what the export or the reuse took. When the weights change (a
    training step, another archive) the graph is made again.

    Padded rows (training, `packed: false`) and runs with gradients go through the layers in
    torch, as the "torch" runner. An int8 runner changes the heads' confidences a little: refit
    its temperatures (`calibration_key`) with `allennlp calibrate ... -o '{"model.layer_runner":
    {"type": "onnxruntime", "precision": "int8"}}'`.

    Registered as a `LayerRunner` with name "onnxruntime".

    # Parameters

    precision : `str`, optional (default = `"fp32"`)
        `"fp32"` or `"int8"` (dynamic, per-channel weights).
    threads : `int`, optional (default = automatic)
        Intra-op threads of each layer's session. By default a call of fewer than
        `SMALL_CALL_TOKENS` tokens (batch size 1) runs on one thread and a larger one on torch's
        number of threads (two sessions per layer on the same graph).
    spinning : `bool`, optional (default = `False`)
        Let the sessions' idle threads spin for the next call. Off by default: one session per
        layer means as many thread pools, and spinning pools take the cores from each other
        and from torch between the layers.
    cache_dir : `str`, optional (default = `layer_runners/` beside the model's archive, else
        `$EARLY_EXIT_CACHE/layer_runners`, else `~/.cache/early_exit/layer_runners`)
        Where exported graphs are kept. If none of these can be written, the graphs of this run
        go into a temporary folder instead (a warning says so).
    """

    NAME = "onnxruntime"
    PRECISIONS = ("fp32", "int8")

    def __init__(
        self,
        precision: str = "fp32",
        threads: Optional[int] = None,
        spinning: bool = False,
        cache_dir: Optional[str] = None,
    ) -> None:
        super().__init__(precision, threads, cache_dir)
        self.spinning = spinning

    @overrides
    def _compile(self, path: str, threads: int) -> Call:
        return session_call(path, threads, self.spinning)


def session_call(path: str, threads: int, spinning: bool = False) -> Call:
    """
    The graph at `path` as an ONNX Runtime session on the CPU with `threads` intra-op threads
    (spinning between calls or not), called with its inputs by name; returns its first output.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]
