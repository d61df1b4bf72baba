"""The command: its options, a run over the datasets, and writing the results."""

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict

import bench.performance
from bench.performance.accuracy import accuracy_part
from bench.performance.data import Dataset, load_hf_model, num_tokens, parse_datasets
from bench.performance.end_to_end import e2e_part
from bench.performance.memory import memory_child, memory_part
from bench.performance.model_time import model_time_part
from bench.performance.plots import plots
from bench.performance.report import report, write_markdown
from bench.performance.settings import ROOT
from early_exit.common.files import atomic_open


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.performance", description=bench.performance.__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--archive", action="append", help="NAME=ARCHIVE or NAME=ARCHIVE:DEV:EVAL")
    add("--dev-data", action="append", help="NAME=FILE: chooses the thresholds")
    add("--eval-data", action="append", help="NAME=FILE: everything measured")
    add("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add("--repeats", type=int, default=5, help="model-time repeats")
    add("--time-instances", type=int, default=96, help="evaluation instances timed in the model")
    add("--eval-instances", type=int, default=None, help="cap (default: all)")
    add("--e2e-instances", type=int, default=2048, help="lines given to allennlp predict")
    add("--e2e-repeats", type=int, default=3, help="allennlp predict repeats")
    add("--memory-instances", type=int, default=64, help="instances run for peak memory")
    add("--skip-e2e", action="store_true", help="no allennlp predict runs")
    add("--skip-memory", action="store_true", help="no memory measurement")
    add("--output", type=Path, default=ROOT / "docs" / "performance.md")
    add("--plots", type=Path, default=ROOT / "docs" / "performance")
    add("--memory-child", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    for option in ("repeats", "time_instances", "e2e_repeats", "memory_instances"):
        if getattr(args, option) < 1:
            raise SystemExit(f"error: --{option.replace('_', '-')} must be at least 1")
    if args.e2e_instances < 2:
        raise SystemExit("error: --e2e-instances must be at least 2")
    os.chdir(ROOT)  # archives name their encoder relative to the repo root
    datasets = parse_datasets(args)

    import logging
    import warnings

    import torch

    # Importing any part of early_exit registers its components with allennlp.
    from early_exit.common.machine import machine_info

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    machine = machine_info()
    results = [run_dataset(dataset, args) for dataset in datasets]
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    elapsed = time.time() - started

    args.plots.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.plots / "results.json") as out:
        out.write(json.dumps({"machine": machine, "results": results}, indent=1))
    plot_dir = os.path.relpath(args.plots.resolve(), args.output.resolve().parent)
    generated = report(results, machine, args, elapsed, plot_dir)
    write_markdown(args.output, generated)
    plots(results, args.plots)
    print(generated)
    print(f"\nwrote {args.output} and {args.plots}/ in {elapsed / 60:.1f} minutes", file=sys.stderr)


def run_dataset(dataset: Dataset, args: argparse.Namespace) -> Dict[str, Any]:
    """Every part for one archive: accuracy, model time, end to end, memory."""
    from early_exit.models.archive_loading import load_early_exit_archive

    print(f"{dataset.name}: loading {dataset.archive}", file=sys.stderr, flush=True)
    started = time.time()
    archive = load_early_exit_archive(dataset.archive)
    model, reader = archive.model.eval(), archive.validation_dataset_reader
    encoder = archive.config["model"]["transformer_model"]
    dev_instances = list(reader.read(dataset.dev))
    eval_instances = list(reader.read(dataset.eval))[: args.eval_instances or None]
    result: Dict[str, Any] = {
        "name": dataset.name,
        "archive": dataset.archive,
        "dev": dataset.dev,
        "eval": dataset.eval,
        "encoder": encoder,
        "mean_tokens_eval": statistics.mean(num_tokens(i) for i in eval_instances),
    }
    parts = result["part_seconds"] = {"loading": time.time() - started}
    tick = time.time()
    result["accuracy"] = accuracy_part(model, dev_instances, eval_instances)
    parts["accuracy"], tick = time.time() - tick, time.time()
    chosen = sorted({entry["threshold"] for entry in result["accuracy"]["chosen"].values()})
    thresholds = [1.0] + [threshold for threshold in chosen if threshold < 1.0]
    result.update(model_time(model, encoder, eval_instances, thresholds, args))
    parts["model_time"], tick = time.time() - tick, time.time()
    if not args.skip_e2e:
        result["e2e"] = e2e_part(
            dataset, reader, thresholds, args.e2e_instances, args.e2e_repeats, args.threads
        )
        parts["e2e"], tick = time.time() - tick, time.time()
    if not args.skip_memory:
        result["memory"] = memory_part(dataset, thresholds, args.memory_instances, args.threads)
        parts["memory"] = time.time() - tick
    result["seconds"] = time.time() - started
    print(
        f"{dataset.name}: done in {result['seconds']:.0f} s ("
        + ", ".join(f"{part} {seconds:.0f} s" for part, seconds in parts.items())
        + ")",
        file=sys.stderr,
        flush=True,
    )
    del archive, model
    gc.collect()
    return result


def model_time(model, encoder: str, eval_instances, thresholds, args) -> Dict[str, Any]:
    """The transformers reference loaded beside the model, and the model-time part."""
    hf = load_hf_model(encoder, model.num_labels)
    timed = eval_instances[: args.time_instances]
    with_type_ids = getattr(model.encoder, "has_token_types", True)
    out = {
        "transformers_class": type(hf).__name__,
        "attention": {
            "early_exit": getattr(model.encoder.transformer.config, "_attn_implementation", "?"),
            "transformers": getattr(hf.config, "_attn_implementation", "?"),
        },
        "model_time_instances": len(timed),
        "model_time": model_time_part(model, hf, timed, thresholds, args.repeats, with_type_ids),
    }
    del hf
    gc.collect()
    return out
