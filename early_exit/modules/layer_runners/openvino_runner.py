import functools
import os
from typing import Any, Dict

from overrides import overrides

from early_exit.modules.layer_runners.exported_graph_runner import Call, ExportedGraphRunner
from early_exit.modules.layer_runners.layer_runner import LayerRunner

# OpenVINO's compiled graphs (its own cache, keyed by the graph and the settings), in this folder
# under the graphs' folder: a second load compiles in a fraction of the time.
COMPILED_FOLDER = "openvino"


@LayerRunner.register("openvino")
class OpenVinoLayerRunner(ExportedGraphRunner):
    """
    Each transformer layer as an OpenVINO compiled model on the CPU, on packed rows: the same
    per-layer ONNX graph as the "onnxruntime" runner's (exported once through the encoder family's
    adapter and cached with it, beside the model's archive: `ExportedGraphRunner`), compiled by
    OpenVINO, with its compiled form cached too (`openvino/` under the graphs' folder). The
    embeddings, heads and exit policy stay in torch between layers; a row that leaves after its
    head skips every later layer.

    float32 only: OpenVINO's CPU int8 paths measured slower than ONNX Runtime's int8 layer on this
    package's layers (docs/performance.md, profile findings), so int8 is the "onnxruntime" runner's.
    Padded rows (training) and runs with gradients go through the layers in torch.

    Registered as a `LayerRunner` with name "openvino".

    # Parameters

    precision : `str`, optional (default = `"fp32"`)
        `"fp32"` (stated as OpenVINO's inference precision: on a CPU with bfloat16 units it would
        otherwise compute in bfloat16).
    threads : `int`, optional (default = automatic)
        `INFERENCE_NUM_THREADS` of each layer's compiled model. By default a call of fewer than
        `SMALL_CALL_TOKENS` tokens (batch size 1) runs on one thread and a larger one on torch's
        number of threads (two compiled models per layer). One stream each, latency hint, no
        pinning of threads to cores (one compiled model per layer, and torch between them).
    cache_dir : `str`, optional (default = `layer_runners/` beside the model's archive, else
        `$EARLY_EXIT_CACHE/layer_runners`, else `~/.cache/early_exit/layer_runners`)
        Where exported graphs (and OpenVINO's compiled ones) are kept.
    """

    NAME = "openvino"
    PRECISIONS = ("fp32",)

    @overrides
    def _other_precisions(self) -> str:
        return '; for int8 use {"type": "onnxruntime", "precision": "int8"}'

    @overrides
    def _compile(self, path: str, threads: int) -> Call:
        config = compile_settings(threads)
        folder = os.path.dirname(path)
        if os.access(folder, os.W_OK):
            config["CACHE_DIR"] = os.path.join(folder, COMPILED_FOLDER)
        request = _core().compile_model(path, "CPU", config).create_infer_request()

        def call(feeds):
            # The output is copied out of the request's buffer, which its next call overwrites
            # (rows carried to a later batch still hold this one's hidden states).
            return request.infer(feeds, share_inputs=True, share_outputs=False)[0]

        return call


def compile_settings(threads: int) -> Dict[str, Any]:
    """
    OpenVINO's settings for one layer's compiled model on `threads` threads: float32 stated (on a
    CPU with bfloat16 units it would otherwise compute in bfloat16), one stream, latency, no
    pinning of threads to cores (one compiled model per layer, and torch between them).
    """
    return {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }


@functools.lru_cache(maxsize=None)
def _core() -> Any:
    """One OpenVINO `Core` per process, for every layer's compilation."""
    import openvino

    return openvino.Core()
