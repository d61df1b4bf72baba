"""
Ways to run one transformer layer in int8 with OpenVINO, against ONNX Runtime's int8 layer and
both runtimes' fp32 (profile finding 15 of docs/performance.md): one layer of an archive, exported
on packed rows as the exported-graph runners export it, called on packed rows of one sentence
(one thread) and of 32 (two threads), interleaved, ms per call (medians) and the largest
difference from the torch layer.

- OpenVINO on ONNX Runtime's dynamically quantized graph (MatMulInteger), with and without
  OpenVINO's CPU dynamic quantization hint;
- OpenVINO on the graph with int8 weights per output channel behind a DequantizeLinear (the
  compressed-weight form OpenVINO's CPU plugin runs as an int8 matrix product when
  `DYNAMIC_QUANTIZATION_GROUP_SIZE` quantizes the activations), per group of 32 and per token;
- OpenVINO fp32 computing in bfloat16 (its default on CPUs with bfloat16 units).

    .venv/bin/python -m bench.runners.openvino_probe ARCHIVE [--layer 2] [--repeats 7]
"""

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable, Dict

import numpy
import torch

from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.modules import PackedRows
from early_exit.modules.layer_runners.onnx_graph import export_packed_layer, quantize_int8
from early_exit.modules.layer_runners.onnxruntime_runner import session_call
from early_exit.modules.layer_runners.openvino_runner import compile_settings

Feeds = Dict[str, numpy.ndarray]


def weights_int8(source: str, target: str) -> None:
    """`source` with every Gemm's weight as int8 per output channel behind a DequantizeLinear."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(source)
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Gemm" and node.input[1] in weights:
            name = node.input[1]
            weight = numpy_helper.to_array(weights[name])  # (out, in)
            scale = (numpy.abs(weight).max(axis=1) / 127.0).astype(numpy.float32)
            quantized = numpy.clip(numpy.round(weight / scale[:, None]), -127, 127)
            model.graph.initializer.remove(weights[name])
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(quantized.astype(numpy.int8), name + "_q"),
                    numpy_helper.from_array(scale, name + "_scale"),
                    numpy_helper.from_array(numpy.zeros(len(scale), numpy.int8), name + "_zero"),
                ]
            )
            inputs = [name + "_q", name + "_scale", name + "_zero"]
            nodes.append(helper.make_node("DequantizeLinear", inputs, [name], axis=0))
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, target)


def openvino_call(path: str, threads: int, **extra) -> Callable[[Feeds], numpy.ndarray]:
    import openvino

    config = {**compile_settings(threads), **extra}  # the openvino runner's, and `extra`
    request = openvino.Core().compile_model(path, "CPU", config).create_infer_request()
    return lambda feeds: request.infer(feeds, share_outputs=False)[0]


def packed_rows(rows: int, longest: int, hidden_size: int) -> PackedRows:
    torch.manual_seed(0)
    lengths = longest - torch.randint(0, max(1, longest // 3), (rows,))  # (rows,)
    hidden = torch.randn(int(lengths.sum()), hidden_size)  # (num_tokens, hidden_size)
    return PackedRows.from_tokens(torch.arange(rows), hidden, lengths)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive")
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    encoder = load_early_exit_archive(args.archive).model.encoder.eval()
    adapter, layer = encoder._adapter, encoder.layers[args.layer]
    work = tempfile.mkdtemp(prefix="openvino_probe_")
    fp32, int8, weights8 = (os.path.join(work, name) for name in ("fp32", "int8", "w8"))
    export_packed_layer(adapter, layer, fp32)
    quantize_int8(fp32, int8)
    weights_int8(fp32, weights8)
    print("| rows, threads | how | ms / call | max abs difference from torch |")
    print("| --- | --- | ---: | ---: |")
    for rows, longest, threads in ((1, 25, 1), (32, 30, 2)):
        packed = packed_rows(rows, longest, encoder.hidden_size)
        slots, places, mask = packed.one_group()
        feeds = {"hidden": packed.hidden.numpy(), "slots": slots.numpy()}
        feeds.update(places=places.numpy(), mask=mask.numpy())
        with torch.inference_mode():
            expected = adapter.run_packed(layer, packed).numpy()
        calls = {
            "ONNX Runtime fp32": session_call(fp32, threads),
            "ONNX Runtime int8 (dynamic)": session_call(int8, threads),
            "OpenVINO fp32": openvino_call(fp32, threads),
            "OpenVINO on ONNX Runtime's int8 graph": openvino_call(int8, threads),
            "the same, dynamic quantization (groups of 32)": openvino_call(
                int8, threads, DYNAMIC_QUANTIZATION_GROUP_SIZE=32
            ),
            "OpenVINO int8 weights, activations fp32": openvino_call(
                weights8, threads, DYNAMIC_QUANTIZATION_GROUP_SIZE=0
            ),
            "OpenVINO int8 weights, dynamic quantization (groups of 32)": openvino_call(
                weights8, threads, DYNAMIC_QUANTIZATION_GROUP_SIZE=32
            ),
            "OpenVINO int8 weights, dynamic quantization (per token)": openvino_call(
                weights8, threads, DYNAMIC_QUANTIZATION_GROUP_SIZE=1 << 20
            ),
            "OpenVINO in bfloat16": openvino_call(fp32, threads, INFERENCE_PRECISION_HINT="bf16"),
        }
        times = {name: [] for name in calls}
        count = 200 if rows == 1 else 20
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                for _ in range(count):
                    call(feeds)
                times[name].append((time.perf_counter() - start) / count)
        for name, call in calls.items():
            diff = float(numpy.abs(call(feeds) - expected).max())
            ms = statistics.median(times[name]) * 1e3
            print(f"| {rows} x ~{longest} tokens, {threads} | {name} | {ms:.3f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
