"""
Where an exported-graph runner's time per layer goes at batch size 1 (profile finding 18 of
docs/performance.md): early exit at full depth through the "onnxruntime" runner, its time per
layer split into the ONNX Runtime sessions' own calls and the hand-offs between them (the runner
preparing a call and reading its output, the engine pooling each layer for the heads, the
embeddings and the output once per sentence), beside the same sessions called back to back on the
same inputs (no hand-off) and the peers' one-graph ONNX Runtime exports of the same weights.

Every configuration is timed interleaved (`interleaved_times`, medians of the rounds); the splits
come from wrapping `onnxruntime.InferenceSession.run`, the runner's `run_packed` and the engine's
`pool` with a clock, in a separate pass (the wrappers add about a microsecond per call).

    .venv/bin/python -m bench.runners.handoff_probe ARCHIVE EVAL
        [--instances 200] [--repeats 7] [--threads 2] [--cache build/runners/cache]
        [--session-threads auto 2]

`--session-threads`: the runner's `threads` setting, one configuration each ("auto": the runner's
default, one thread for a call of fewer than `SMALL_CALL_TOKENS` tokens).
"""

import collections
import copy
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import onnxruntime
import torch

from bench.runners import peers
from bench.runners.side_by_side import parse_probe_arguments, probe_arguments
from early_exit.dataset_readers import read_indexed
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.modules.exit_policies import MaxProbabilityPolicy
from early_exit.sweep.timing import interleaved_times, prepare_batches, stopwatch, time_batches

PRECISIONS = ("fp32", "int8")


def main(argv=None) -> None:
    parser = probe_arguments(__doc__, instances=200, repeats=7)
    parser.add_argument("archive")
    parser.add_argument("eval")
    parser.add_argument("--cache", default="build/runners/cache")
    parser.add_argument("--session-threads", nargs="+", default=["auto"])
    args = parse_probe_arguments(parser, argv)
    archive = load_early_exit_archive(args.archive)
    base = archive.model.eval()
    instances = read_indexed(archive.validation_dataset_reader, args.eval)[: args.instances]
    num_layers = base.encoder.num_layers
    models = {}
    for precision in PRECISIONS:
        for threads in args.session_threads:
            model = copy.deepcopy(base)
            model.layer_runner = {
                "type": "onnxruntime",
                "precision": precision,
                "cache_dir": args.cache,
                "threads": None if threads == "auto" else int(threads),
            }
            models[f"{precision}, threads {threads}"] = model
    splits = {name: _splits(model, instances) for name, model in models.items()}
    names, runs = [], []
    for name, model in models.items():
        names.append(f"early exit, onnxruntime {name} runner, full depth")
        runs.append(_full_depth(model, instances))
        names.append(f"its sessions alone, back to back on the same inputs ({name})")
        runs.append(_sessions_alone(splits[name]["feeds"]))
    with tempfile.TemporaryDirectory() as folder:
        exported = peers.export_full_path(peers.FullPath(base).eval(), folder)
        inputs = peers.peer_inputs(prepare_batches(base, instances, 1))
        for precision in PRECISIONS:
            run = peers.onnxruntime_peer(exported[precision], args.threads)
            names.append(f"ONNX Runtime {precision}, one graph (peer)")
            runs.append(lambda part, run=run: stopwatch(lambda: [run(one) for one in inputs]))
        times = interleaved_times(runs, args.repeats)
    per_layer = {
        name: statistics.median(seconds) * 1e6 / len(instances) / num_layers
        for name, seconds in zip(names, times)
    }
    print(f"\n{len(instances)} sentences at batch size 1, {num_layers} layers, µs per layer:\n")
    print("| configuration | µs per layer |")
    print("| --- | ---: |")
    for name, microseconds in per_layer.items():
        print(f"| {name} | {microseconds:.0f} |")
    print("\nThe runner's time per layer split (a separate pass with clocks on each part):\n")
    print("| part | " + " | ".join(f"{name}: µs per layer" for name in models) + " |")
    print("| --- |" + " ---: |" * len(models))
    for part in next(iter(splits.values()))["parts"]:
        row = [splits[name]["parts"][part] for name in models]
        print(f"| {part} | " + " | ".join(f"{value:.0f}" for value in row) + " |")


def _full_depth(model, instances) -> Callable[[slice], float]:
    settings = model.inference_settings().replace(exit_policy=MaxProbabilityPolicy(1.0))
    batches = prepare_batches(model, instances, 1)

    def run(part) -> float:
        with torch.inference_mode():
            return time_batches(model, batches, False, settings)

    return run


def _sessions_alone(calls: List) -> Callable[[slice], float]:
    return lambda part: stopwatch(lambda: [session.run(None, feeds) for session, feeds in calls])


def _splits(model, instances) -> Dict:
    """
    One pass at full depth with clocks on the sessions, the runner and the pooling: µs per layer
    of each part, and every session call with its inputs (for `_sessions_alone`).
    """
    spent: Dict[str, float] = collections.Counter()
    calls: List = []
    original_run = onnxruntime.InferenceSession.run

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            spent[name] += time.perf_counter() - start
            return result

        return wrapper

    def session_run(session, output_names, feeds, *rest):
        start = time.perf_counter()
        result = original_run(session, output_names, feeds, *rest)
        spent["sessions"] += time.perf_counter() - start
        calls.append((session, feeds))  # views of tensors that no later step writes
        return result

    runner, engine = model.layer_runner, model.engine
    settings = model.inference_settings().replace(exit_policy=MaxProbabilityPolicy(1.0))
    batches = prepare_batches(model, instances, 1)
    with torch.inference_mode():
        time_batches(model, batches, False, settings)  # builds the sessions, untimed
        onnxruntime.InferenceSession.run = session_run
        runner.run_packed = timed("runner", runner.run_packed)
        engine.pool = timed("pooling", engine.pool)
        try:
            total = time_batches(model, batches, False, settings)
        finally:
            onnxruntime.InferenceSession.run = original_run
            del runner.run_packed, engine.pool
    layers = len(instances) * model.encoder.num_layers
    parts = {
        "full depth, all of it": total,
        "the sessions' calls": spent["sessions"],
        "the runner around them (inputs, weights' check, output)": spent["runner"]
        - spent["sessions"],
        "pooling each layer for the heads (the first torch operation after a session)": spent[
            "pooling"
        ],
        "the rest (embeddings, loop, last head, outputs)": total
        - spent["runner"]
        - spent["pooling"],
    }
    return {
        "parts": {name: seconds * 1e6 / layers for name, seconds in parts.items()},
        "feeds": calls,
    }


if __name__ == "__main__":
    main()
