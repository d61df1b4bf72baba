import hashlib
import logging
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from allennlp.common.checks import ConfigurationError
from overrides import overrides

from early_exit.modules.layer_adapters import LayerAdapter
from early_exit.modules.layer_runners.graph_cache import GraphCache
from early_exit.modules.layer_runners.layer_runner import LayerRunner, UnpaddedEmbedding
from early_exit.modules.layer_runners.onnx_graph import OPSET, export_packed_layer, quantize_int8
from early_exit.modules.layer_runners.torch_runner import torch_unpadded_embedding
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.tensor_cache import VersionedCache

logger = logging.getLogger(__name__)

# Bump when the exported graph changes, so that older cached graphs are not used.
GRAPH_VERSION = 3
# Below this many tokens a layer call runs on one thread: waking a second costs more than it
# saves (ONNX Runtime on 2 cores: one thread was faster up to 192 tokens and slower from 384).
SMALL_CALL_TOKENS = 256

# A layer's compiled graph as a function of the graph's inputs (numpy arrays by name).
Call = Callable[[Dict[str, numpy.ndarray]], numpy.ndarray]


class ExportedGraphRunner(LayerRunner):
    """
    What the runners that run each layer as an exported ONNX graph on the CPU share ("onnxruntime",
    "openvino"): the export through the encoder family's adapter (`onnx_graph.py`, so that the
    graph computes what the torch runner computes), int8 quantization, the graph cache
    (`GraphCache`: beside the model's archive by default, keyed by the layer's weights and the
    settings), one compiled graph per layer and thread count, rebuilt when the layer's weights
    change, and the fallback to torch for padded rows and runs with gradients. A subclass says how
    a graph file is compiled (`_compile`).

    The graph files are the runtime's input, not its own: the same fp32 graph serves every such
    runner, so a second runtime on the same archive exports nothing.

    # Parameters

    precision : `str`
        One of the class's `PRECISIONS`.
    threads : `int`, optional (default = automatic)
        Threads of each layer's compiled graph. By default a call of fewer than
        `SMALL_CALL_TOKENS` tokens (batch size 1) runs on one thread and a larger one on torch's
        number of threads (two compiled graphs per layer on the same file).
    cache_dir : `str`, optional (default = beside the archive, else the user's cache)
        Where exported graphs are kept (see `GraphCache`).
    """

    NAME = ""
    PRECISIONS: Tuple[str, ...] = ("fp32",)

    def __init__(
        self,
        precision: str = "fp32",
        threads: Optional[int] = None,
        cache_dir: Optional[str] = None,
    ) -> None:
        if precision not in self.PRECISIONS:
            raise ConfigurationError(
                f"layer_runner {self.NAME}: precision must be one of "
                f"{', '.join(self.PRECISIONS)}, got {precision!r}{self._other_precisions()}"
            )
        if threads is not None and (isinstance(threads, bool) or threads < 1):
            raise ConfigurationError(
                f"layer_runner {self.NAME}: threads must be a positive integer, got {threads!r}"
            )
        self.precision = precision
        # Read by the model for every head it scales (`serving_temperatures`): made once. Every
        # runner of one graph precision computes the same layers, so they share temperatures.
        self._calibration_key = None if precision == "fp32" else f"onnxruntime_{precision}"
        self.threads = threads
        self.cache_dir = cache_dir
        self._graphs: Optional[GraphCache] = None
        self._calls: List[VersionedCache[Tuple[Call, Call]]] = []
        self.build_seconds = 0.0  # export, quantization and compilation, all layers so far

    def _other_precisions(self) -> str:
        """What to use instead, for a precision this runner does not have."""
        return ""

    @overrides
    def bind(self, adapter: LayerAdapter, layers: torch.nn.ModuleList, packable: bool) -> None:
        if not packable:
            raise ConfigurationError(
                f'layer_runner {{"type": "{self.NAME}"}} runs layers on packed rows, and this '
                "encoder's layers cannot be packed (self-attention with absolute positions is "
                'needed); use {"type": "torch"}'
            )
        super().bind(adapter, layers, packable)
        self._calls = [VersionedCache() for _ in layers]
        self._exported: Dict[int, str] = {}  # layer -> the graph this runner last exported
        # What each layer's graph is made from, listed once: loading weights, a training step or
        # `.to()` changes these tensors in place (seen by the cache); they are not replaced.
        self._layer_tensors = [[*layer.parameters(), *layer.buffers()] for layer in layers]

    @overrides
    def loaded_from(self, archive_file: Optional[str]) -> None:
        super().loaded_from(archive_file)
        self._graphs = None  # looked up again, beside this archive

    @overrides
    def unpadded_embedding(self, embeddings: torch.nn.Module) -> UnpaddedEmbedding:
        return torch_unpadded_embedding(embeddings)  # the embeddings stay in torch

    @property
    def graphs(self) -> GraphCache:
        """Where this runner's graphs are looked up and written."""
        if self._graphs is None:
            self._graphs = GraphCache(self.NAME, self.cache_dir, self.archive_file)
        return self._graphs

    @overrides
    def check_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise ConfigurationError(
                f'layer_runner {{"type": "{self.NAME}"}} runs on the CPU, but the model is on '
                f'{device}; use {{"type": "cuda"}} there (or "torch"), or --cuda-device -1'
            )

    @overrides
    def run_packed(self, index: int, packed: PackedRows) -> torch.Tensor:
        layer = self._layers[index]
        if torch.is_grad_enabled() or layer.training:
            return self._adapter.run_packed(layer, packed)
        small, large = self._layer_calls(index)
        call = small if packed.num_tokens < SMALL_CALL_TOKENS else large
        slots, places, mask = packed.one_group()
        hidden = packed.hidden
        if hidden.dtype != torch.float32:
            raise ConfigurationError(
                f'layer_runner {{"type": "{self.NAME}"}} runs float32 layers, got {hidden.dtype}'
            )
        feeds = {
            "hidden": hidden.contiguous().numpy(),
            "slots": slots.numpy(),
            "places": places.numpy(),
            "mask": mask.numpy(),
        }
        return torch.from_numpy(call(feeds))  # (num_tokens, hidden_size)

    @overrides
    def describe(self) -> str:
        return f"{self.NAME} {self.precision}"

    def _compile(self, path: str, threads: int) -> Call:
        """The graph file at `path` compiled for `threads` threads."""
        raise NotImplementedError

    def _layer_calls(self, index: int) -> Tuple[Call, Call]:
        """
        Layer `index`'s compiled graphs for small and large calls. When its weights changed since
        they were built (or were never built: the first call after loading), every layer whose
        weights changed is built now, and one line reports what that cost.
        """
        built: List[Tuple[int, bool, float, str]] = []  # (layer, exported, seconds, path)

        def build(layer: int) -> Tuple[Call, Call]:
            calls, exported, seconds, path = self._build(layer)
            built.append((layer, exported, seconds, path))
            return calls

        calls = self._calls[index].get(self._layer_tensors[index], lambda: build(index))
        if built:
            for other, cache in enumerate(self._calls):
                cache.get(self._layer_tensors[other], lambda: build(other))
            self._report(built)
        return calls

    def _build(self, index: int) -> Tuple[Tuple[Call, Call], bool, float, str]:
        start = time.perf_counter()
        layer = self._layers[index]
        name = f"{self._graph_key(layer)}.onnx"
        path = self.graphs.find(name)
        exported = path is None
        if path is None:
            path = self.graphs.write(name, lambda target: self._make_graph(layer, target))
            # Weights that change in this process (validation between training epochs) leave one
            # graph per layer behind, not one per change: this runner's own previous export goes.
            previous = self._exported.get(index)
            if previous is not None and previous != path and os.path.isfile(previous):
                os.remove(previous)
            self._exported[index] = path
        threads = self.threads or torch.get_num_threads()
        large = self._compile(path, threads)
        small = large if self.threads or threads == 1 else self._compile(path, 1)
        seconds = time.perf_counter() - start
        self.build_seconds += seconds
        return (small, large), exported, seconds, path

    def _report(self, built: Sequence[Tuple[int, bool, float, str]]) -> None:
        """One line for all the layers built at once: exports worth seeing, reuse at debug."""
        exported = [entry for entry in built if entry[1]]
        seconds = sum(entry[2] for entry in built)
        folders = sorted({os.path.dirname(entry[3]) for entry in built})
        if exported:
            reused = len(built) - len(exported)
            logger.info(
                "layer_runner %s: exported %d layer graph(s) in %.1f s%s, kept in %s (a later "
                "load of the same weights reuses them)",
                self.describe(),
                len(exported),
                seconds,
                f" ({reused} reused)" if reused else "",
                ", ".join(folders),
            )
        else:
            logger.info(
                "layer_runner %s: %d layer graph(s) reused from %s, ready in %.2f s (no export)",
                self.describe(),
                len(built),
                ", ".join(folders),
                seconds,
            )

    def _make_graph(self, layer: torch.nn.Module, target: str) -> None:
        if self.precision == "fp32":
            export_packed_layer(self._adapter, layer, target)
            return
        with tempfile.TemporaryDirectory(prefix="early_exit_onnx_") as work:
            plain = os.path.join(work, "layer.onnx")
            export_packed_layer(self._adapter, layer, plain)
            quantize_int8(plain, target)

    def _graph_key(self, layer: torch.nn.Module) -> str:
        """
        A hash of the layer's weights and class, the precision and the exporting libraries (not
        the runtime that compiles the graph: every runner reads the same file).
        """
        import onnxruntime

        digest = hashlib.sha256()
        settings = (
            GRAPH_VERSION,
            OPSET,
            self.precision,
            type(self._adapter).__name__,
            type(layer).__name__,
            torch.__version__,
            onnxruntime.__version__,  # int8 graphs are made by its quantization
        )
        digest.update(repr(settings).encode())
        for name, tensor in sorted(layer.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:40]

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_graphs"] = None  # a temporary folder belongs to this process
        return state
