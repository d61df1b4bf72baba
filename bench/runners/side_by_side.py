"""
The layer runners side by side without `bench.runners`' accuracy passes (profile finding 15 of
docs/performance.md): early exit at a given threshold and at full depth, batch size 1 and 32
(streamed, as `allennlp predict` runs), interleaved, ms per sentence (medians) and the median
per-round ratio to the "onnxruntime" fp32 runner.

    .venv/bin/python -m bench.runners.side_by_side NAME=ARCHIVE:EVAL:THRESHOLD ...
        [--instances 100] [--repeats 5] [--cache build/runners/cache]
"""

import argparse
import copy
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from early_exit.dataset_readers import read_indexed
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.modules.exit_policies import MaxProbabilityPolicy
from early_exit.sweep.timing import interleaved_times, prepare_batches, stopwatch, time_batches

RUNNERS = [
    {"type": "torch"},
    {"type": "onnxruntime", "precision": "fp32"},
    {"type": "onnxruntime", "precision": "int8"},
    {"type": "openvino"},
]
REFERENCE = "onnxruntime fp32"


def probe_arguments(doc: str, instances: int, repeats: int) -> argparse.ArgumentParser:
    """
    The options every runner probe takes (`--instances`, `--repeats`, `--threads`), described by
    the first paragraph of the probe's `doc`; a probe adds its own.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=instances)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def parse_probe_arguments(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
) -> argparse.Namespace:
    """The probe's arguments, with torch set to `--threads` threads."""
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def main(argv=None) -> None:
    parser = probe_arguments(__doc__, instances=100, repeats=5)
    parser.add_argument("archives", nargs="+", help="NAME=ARCHIVE:EVAL:THRESHOLD")
    parser.add_argument("--cache", default="build/runners/cache")
    args = parse_probe_arguments(parser, argv)
    print("| archive | batch size | depth | runner | ms / sentence | against onnxruntime fp32 |")
    print("| --- | ---: | --- | --- | ---: | ---: |")
    for spec in args.archives:
        name, rest = spec.split("=", 1)
        archive_file, data, threshold = rest.rsplit(":", 2)
        archive = load_early_exit_archive(archive_file)
        base = archive.model.eval()
        base.confidence_threshold = float(threshold)
        reader = archive.validation_dataset_reader
        instances = read_indexed(reader, data)[: args.instances]
        models = []
        for runner in RUNNERS:
            model = copy.deepcopy(base)
            cache = {} if runner["type"] == "torch" else {"cache_dir": args.cache}
            model.layer_runner = {**runner, **cache}
            models.append(model)
        for batch_size in (1, 32):
            _time(name, models, instances, batch_size, args.repeats)


def depth_times(
    models: Dict[str, Any], instances: List[Any], batch_size: int, repeats: int, reference: str
) -> List[Tuple[str, str, float, float]]:
    """
    Each model (by name) at its threshold and at full depth, timed interleaved: `(name, depth, ms
    per sentence, median per-round ratio to the model named `reference` at that depth)`.
    """
    runs, names = [], []
    for name, model in models.items():
        for depth in ("threshold", "full depth"):
            settings = model.inference_settings()
            if depth == "full depth":
                settings = settings.replace(exit_policy=MaxProbabilityPolicy(1.0))
            batches = prepare_batches(model, instances, batch_size)

            def run(part, model=model, batches=batches, settings=settings) -> float:
                with torch.inference_mode():
                    return stopwatch(lambda: time_batches(model, batches, batch_size > 1, settings))

            runs.append(run)
            names.append((name, depth))
    times = interleaved_times(runs, repeats)
    rows = []
    for (name, depth), seconds in zip(names, times):
        against = times[names.index((reference, depth))]
        ratio = statistics.median([one / other for one, other in zip(seconds, against)])
        rows.append((name, depth, statistics.median(seconds) * 1e3 / len(instances), ratio))
    return rows


def _time(name: str, models, instances, batch_size: int, repeats: int) -> None:
    named = {model.layer_runner.describe(): model for model in models}
    for runner, depth, ms, ratio in depth_times(named, instances, batch_size, repeats, REFERENCE):
        print(
            f"| {name} | {batch_size} | {depth} | {runner} | {ms:.2f} | {ratio:.3f} |", flush=True
        )


if __name__ == "__main__":
    main()
