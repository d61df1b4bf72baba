import contextlib
import hashlib
import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from allennlp.common.checks import ConfigurationError
from overrides import overrides

from early_exit.common.files import atomic_write
from early_exit.modules.layer_adapters import LayerAdapter
from early_exit.modules.layer_runners.layer_runner import LayerRunner, UnpaddedEmbedding
from early_exit.modules.layer_runners.onnx_graph import OPSET, export_packed_layer, quantize_int8
from early_exit.modules.layer_runners.torch_runner import torch_unpadded_embedding
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.tensor_cache import VersionedCache

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
# Bump when the exported graph changes, so that older cached graphs are not used.
GRAPH_VERSION = 3
# Below this many tokens a layer call runs on one thread: waking a second costs more than it
# saves (on 2 cores one thread was faster up to 192 tokens and slower from 384).
SMALL_CALL_TOKENS = 256


def default_cache_dir() -> str:
    """`$EARLY_EXIT_CACHE/layer_runners`, else `~/.cache/early_exit/layer_runners`."""
    root = os.environ.get("EARLY_EXIT_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "early_exit"
    )
    return os.path.join(root, "layer_runners")


@LayerRunner.register("onnxruntime")
class OnnxRuntimeLayerRunner(LayerRunner):
    """
    Each transformer layer as an ONNX Runtime session on the CPU, on packed rows: the layer's
    linear blocks on the real tokens only, the attention on the rows padded to the longest inside
    the graph. The embeddings, heads and exit policy stay in torch between layers; a row still
    leaves after its head and skips every later layer's session.

    Each layer is exported (with `torch.onnx`, through the encoder family's adapter, so that the
    graph computes what the torch runner computes) and, for `int8`, quantized with ONNX Runtime's
    dynamic quantization (int8 weights per output channel, activations quantized per call). That
    happens once per layer's weights and settings: the graph is cached in `cache_dir` under a
    hash of the layer's weights, the precision and the library versions, so a second load of the
    same archive builds sessions only; the time it took is logged. When the weights change (a
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
    cache_dir : `str`, optional (default = `$EARLY_EXIT_CACHE/layer_runners`, else
        `~/.cache/early_exit/layer_runners`)
        Where exported graphs are kept. If it cannot be written, the graphs of this run go into
        a temporary folder instead (a warning says so).
    """

    def __init__(
        self,
        precision: str = "fp32",
        threads: Optional[int] = None,
        spinning: bool = False,
        cache_dir: Optional[str] = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigurationError(
                f"layer_runner onnxruntime: precision must be one of {', '.join(PRECISIONS)}, "
                f"got {precision!r}"
            )
        if threads is not None and (isinstance(threads, bool) or threads < 1):
            raise ConfigurationError(
                f"layer_runner onnxruntime: threads must be a positive integer, got {threads!r}"
            )
        self.precision = precision
        # Read by the model for every head it scales (`serving_temperatures`): made once.
        self._calibration_key = None if precision == "fp32" else f"onnxruntime_{precision}"
        self.threads = threads
        self.spinning = spinning
        self.cache_dir = cache_dir or default_cache_dir()
        self._sessions: List[VersionedCache[Any]] = []
        self.build_seconds = 0.0  # export, quantization and session creation, all layers so far
        self._fallback_dir: Optional[str] = None  # where graphs go if `cache_dir` is not writable

    @overrides
    def bind(self, adapter: LayerAdapter, layers: torch.nn.ModuleList, packable: bool) -> None:
        if not packable:
            raise ConfigurationError(
                'layer_runner {"type": "onnxruntime"} runs layers on packed rows, and this '
                "encoder's layers cannot be packed (self-attention with absolute positions is "
                'needed); use {"type": "torch"}'
            )
        super().bind(adapter, layers, packable)
        self._sessions = [VersionedCache() for _ in layers]
        self._exported: Dict[int, str] = {}  # layer -> the graph this runner last exported
        # What each layer's graph is made from, listed once: loading weights, a training step or
        # `.to()` changes these tensors in place (seen by the cache); they are not replaced.
        self._layer_tensors = [[*layer.parameters(), *layer.buffers()] for layer in layers]

    @overrides
    def unpadded_embedding(self, embeddings: torch.nn.Module) -> UnpaddedEmbedding:
        return torch_unpadded_embedding(embeddings)  # the embeddings stay in torch

    @overrides
    def check_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise ConfigurationError(
                'layer_runner {"type": "onnxruntime"} runs on the CPU, but the model is on '
                f'{device}; use {{"type": "torch"}} there, or --cuda-device -1'
            )

    @overrides
    def run_packed(self, index: int, packed: PackedRows) -> torch.Tensor:
        layer = self._layers[index]
        if torch.is_grad_enabled() or layer.training:
            return self._adapter.run_packed(layer, packed)
        small, large = self._sessions[index].get(
            self._layer_tensors[index], lambda: self._layer_sessions(index)
        )
        session = small if packed.num_tokens < SMALL_CALL_TOKENS else large
        slots, places, mask = packed.one_group()
        hidden = packed.hidden
        if hidden.dtype != torch.float32:
            raise ConfigurationError(
                f'layer_runner {{"type": "onnxruntime"}} runs float32 layers, got {hidden.dtype}'
            )
        feeds = {
            "hidden": hidden.contiguous().numpy(),
            "slots": slots.numpy(),
            "places": places.numpy(),
            "mask": mask.numpy(),
        }
        return torch.from_numpy(session.run(None, feeds)[0])  # (num_tokens, hidden_size)

    @overrides
    def calibration_key(self) -> Optional[str]:
        return self._calibration_key

    @overrides
    def describe(self) -> str:
        return f"onnxruntime {self.precision}"

    def _layer_sessions(self, index: int) -> Tuple[Any, Any]:
        """
        Layer `index`'s sessions for small and large calls (one and the same with `threads`
        given or one torch thread), from the cached graph, exporting it first where needed.
        """
        import onnxruntime

        start = time.perf_counter()
        layer = self._layers[index]
        name = f"{self._graph_key(layer)}.onnx"
        path = os.path.join(self.cache_dir, name)
        made = not os.path.isfile(path)
        if made:
            path = self._write_graph(layer, name)
            # Weights that change in this process (validation between training epochs) leave one
            # graph per layer behind, not one per change: this runner's own previous export goes.
            previous = self._exported.get(index)
            if previous is not None and previous != path:
                with contextlib.suppress(OSError):
                    os.remove(previous)
            self._exported[index] = path

        def session(threads: int) -> Any:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if self.spinning else "0"
            )
            return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        large = session(self.threads or torch.get_num_threads())
        small = large if self.threads or torch.get_num_threads() == 1 else session(1)
        seconds = time.perf_counter() - start
        self.build_seconds += seconds
        # An export is worth a line on the console; loading a cached graph is not.
        logger.log(
            logging.INFO if made else logging.DEBUG,
            "%s layer %d: %s in %.2f s (%s)",
            self.describe(),
            index,
            "exported" if made else "loaded from the cache",
            seconds,
            path,
        )
        return small, large

    def _write_graph(self, layer: torch.nn.Module, name: str) -> str:
        """
        Exports `layer` as `name` into the cache and returns its path. A cache that cannot be
        written (a read-only home, a full disk) costs speed, not the run: the graph goes into a
        temporary folder of this process instead, with one warning naming the setting.
        """
        try:
            path = os.path.join(self.cache_dir, name)
            atomic_write(path, lambda target: self._make_graph(layer, target))
            return path
        except OSError as error:
            if self._fallback_dir is None:
                self._fallback = tempfile.TemporaryDirectory(prefix="early_exit_layers_")
                self._fallback_dir = self._fallback.name
                logger.warning(
                    "layer_runner onnxruntime: cannot write its graphs to %s (%s); exporting "
                    "into a temporary folder for this run only (set cache_dir or $EARLY_EXIT_CACHE "
                    "to a writable folder to export once)",
                    self.cache_dir,
                    error.strerror or error,
                )
        path = os.path.join(self._fallback_dir, name)
        self._make_graph(layer, path)
        return path

    def _make_graph(self, layer: torch.nn.Module, target: str) -> None:
        if self.precision == "fp32":
            export_packed_layer(self._adapter, layer, target)
            return
        with tempfile.TemporaryDirectory(prefix="early_exit_onnx_") as work:
            plain = os.path.join(work, "layer.onnx")
            export_packed_layer(self._adapter, layer, plain)
            quantize_int8(plain, target)

    def _graph_key(self, layer: torch.nn.Module) -> str:
        """A hash of the layer's weights and class, the precision and the exporting libraries."""
        import onnxruntime

        digest = hashlib.sha256()
        settings = (
            GRAPH_VERSION,
            OPSET,
            self.precision,
            type(self._adapter).__name__,
            type(layer).__name__,
            torch.__version__,
            onnxruntime.__version__,
        )
        digest.update(repr(settings).encode())
        for name, tensor in sorted(layer.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:40]
