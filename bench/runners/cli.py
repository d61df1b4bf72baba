"""
Early exit under each layer runner against the peers a user would deploy instead, on the same
trained weights, timed side by side (`interleaved_times`, medians of the rounds) at batch size 1
and 32, with the accuracy of each on the same evaluation data.

For each runner ("torch", "onnxruntime" fp32 and int8, "openvino" fp32) the temperatures are
refitted on the dev file where the runner computes in another precision, and the threshold is the
cheapest on the dev file within `--max-accuracy-drop` of that runner's full-depth dev accuracy.
The peers run the full model (encoder, pooled layers, last head): plain torch as `transformers`
runs it, ONNX Runtime fp32 and int8 (dynamic, per-channel) and OpenVINO fp32 from one ONNX export.

Usage (from the repo root, after `make install`; without `--archive`, those
of `scripts/reproduce_results.py` that exist):

    .venv/bin/python -m bench.runners [--archive NAME=ARCHIVE:DEV:EVAL ...]
        [--instances 500] [--repeats 9] [--threads 2] [--max-accuracy-drop 0.01]
        [--work-dir build/runners] [--output docs/performance.md]
"""

import argparse
import copy
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from bench.performance.data import parse_datasets
from bench.performance.report import write_markdown
from bench.runners import peers
from early_exit.common.files import display_path
from early_exit.dataset_readers import read_indexed
from early_exit.common.machine import machine_description, run_command

ROOT = Path(__file__).resolve().parent.parent.parent
RUNNERS = [
    {"type": "torch"},
    {"type": "onnxruntime", "precision": "fp32"},
    {"type": "onnxruntime", "precision": "int8"},
    {"type": "openvino", "precision": "fp32"},
]
EXPORTING = ("onnxruntime", "openvino")  # the runners that export graphs (into --work-dir/cache)
BATCH_SIZES = (1, 32)
GRID = [round(0.5 + step * 0.005, 3) for step in range(101)]  # 0.5 to 1.0
COMMAND = "python -m bench.runners"
SETTLE_SECONDS = 0.05  # before each turn, so that one runtime's spinning threads have stopped


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--archive",
        action="append",
        help="NAME=ARCHIVE:DEV:EVAL (repeatable; default: the archives of "
        "scripts/reproduce_results.py that exist); thresholds and int8 temperatures are fit on "
        "DEV, accuracy and speed measured on EVAL",
    )
    parser.add_argument("--dev-data", action="append", help="NAME=DEV, with --archive NAME=ARCHIVE")
    parser.add_argument("--eval-data", action="append", help="NAME=EVAL, likewise")
    parser.add_argument("--instances", type=int, default=500, help="of EVAL, for the timing")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-accuracy-drop", type=float, default=0.01)
    parser.add_argument("--work-dir", default=str(ROOT / "build" / "runners"))
    parser.add_argument(
        "--output",
        default=str(ROOT / "docs" / "performance.md"),
        help="the page whose bench.runners section is replaced (a new file is made if missing)",
    )
    args = parser.parse_args(argv)
    # The runners' one line per build: what exporting (or reusing) the graphs cost.
    logging.basicConfig(format="%(message)s")
    logging.getLogger("early_exit.modules.layer_runners").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the exports fork
    datasets = parse_datasets(args)
    torch.set_num_threads(args.threads)
    sections = [_measure(dataset, args) for dataset in datasets]
    page = _page(sections, args)
    print(page)
    write_markdown(Path(args.output), page, command=COMMAND, new_file_tail="")
    print(f"written: {display_path(args.output, ROOT)}")


def _measure(dataset, args) -> Dict:
    """One dataset's rows: each runner and each peer, with accuracy and times."""
    from early_exit.models.archive_loading import load_early_exit_archive

    archive = load_early_exit_archive(dataset.archive)
    model, reader = archive.model.eval(), archive.validation_dataset_reader
    dev, evaluation = (read_indexed(reader, path) for path in (dataset.dev, dataset.eval))
    timed = evaluation[: args.instances]
    work = Path(args.work_dir) / dataset.name
    rows: List[Dict] = []
    contenders: List[Callable[[int], Callable[[slice], float]]] = []
    full_depth = []  # each runner at threshold 1.0, at batch size 1: its cost per layer
    for settings in RUNNERS:
        copy_ = copy.deepcopy(model)
        cache = {"cache_dir": str(Path(args.work_dir) / "cache")}
        copy_.layer_runner = {**settings, **(cache if settings["type"] in EXPORTING else {})}
        rows.append(_choose(copy_, dev, evaluation, args.max_accuracy_drop))
        contenders.append(_early_exit_runs(copy_, timed))
        full_depth.append(_early_exit_runs(copy_, timed, full_depth=True))
    full = peers.FullPath(model).eval()
    exported = peers.export_full_path(full, str(work / "peers"))
    for name, make in [
        ("plain transformers (torch)", lambda: peers.torch_peer(full)),
        ("ONNX Runtime fp32", lambda: peers.onnxruntime_peer(exported["fp32"], args.threads)),
        ("ONNX Runtime int8", lambda: peers.onnxruntime_peer(exported["int8"], args.threads)),
        ("OpenVINO fp32", lambda: peers.openvino_peer(exported["fp32"], args.threads)),
    ]:
        run = make()
        rows.append(_peer_row(name, model, run, evaluation))
        contenders.append(_peer_runs(model, run, timed))
    _time(contenders, rows, len(timed), args.repeats, full_depth)
    return {
        "dataset": dataset,
        "rows": rows,
        "num_layers": model.encoder.num_layers,
        "num_timed": len(timed),
        "num_eval": len(evaluation),
    }


def _choose(model, dev, evaluation, max_drop: float) -> Dict:
    """Temperatures (refit where the runner has its own) and the threshold, chosen on dev."""
    from early_exit.calibration.temperature_scaling import fit_head_temperatures
    from early_exit.models.head_outputs import collect_head_outputs
    from early_exit.sweep.recommendation import choose_on_dev
    from early_exit.sweep.sweep_table import sweep_table

    runner = model.layer_runner
    on_dev = collect_head_outputs(model, dev, description=f"{runner.describe()}: dev")
    if runner.calibration_key() is not None:
        fits = fit_head_temperatures(on_dev, model.exit_layers)
        model.set_temperatures([fit.temperature for fit in fits])
    on_eval = collect_head_outputs(model, evaluation, description=f"{runner.describe()}: eval")
    tables = [
        sweep_table(
            outputs.logits,
            outputs.labels,
            GRID,
            model.exit_layers,
            model.full_depth,
            model.serving_temperatures,
        )
        for outputs in (on_dev, on_eval)
    ]
    dev_full = tables[0][-1].accuracy
    choice = choose_on_dev(tables[0], dev_full, tables[1], [max_drop])[0]
    model.confidence_threshold = choice.policy.threshold
    return {
        "name": f"early_exit, {runner.describe()}",
        "full_accuracy": tables[1][-1].accuracy,
        "accuracy": choice.on_eval.accuracy,
        "threshold": choice.policy.threshold,
        "compute": choice.on_eval.relative_compute,
    }


def _peer_row(name: str, model, run, evaluation) -> Dict:
    from early_exit.models.model_inputs import batch_on_device
    from early_exit.sweep.timing import prepare_batches

    batches = prepare_batches(model, evaluation, 32)
    labels = batch_on_device(model, evaluation)["label"].long().view(-1)  # (num_eval,)
    with torch.inference_mode():
        predicted = [
            torch.from_numpy(run(inputs)).argmax(-1) for inputs in peers.peer_inputs(batches)
        ]
    correct = int((torch.cat(predicted) == labels).sum())
    accuracy = correct / len(evaluation)
    return {"name": name, "full_accuracy": accuracy, "accuracy": accuracy, "compute": 1.0}


def _settled(work: Callable[[], None]) -> float:
    from early_exit.sweep.timing import stopwatch

    time.sleep(SETTLE_SECONDS)
    with torch.inference_mode():
        return stopwatch(work)


def _early_exit_runs(model, instances, full_depth: bool = False):
    """Timed runs of `model` at its threshold, or (`full_depth`) at 1.0, as settings per call."""
    from early_exit.modules.exit_policies import MaxProbabilityPolicy
    from early_exit.sweep.timing import prepare_batches, time_batches

    settings = model.inference_settings()
    if full_depth:
        settings = settings.replace(exit_policy=MaxProbabilityPolicy(1.0))

    def at(batch_size: int) -> Callable[[slice], float]:
        batches = prepare_batches(model, instances, batch_size)
        carry = batch_size > 1
        return lambda part: _settled(lambda: time_batches(model, batches, carry, settings))

    return at


def _peer_runs(model, run, instances) -> Callable[[int], Callable[[slice], float]]:
    from early_exit.sweep.timing import prepare_batches

    def at(batch_size: int) -> Callable[[slice], float]:
        inputs = peers.peer_inputs(prepare_batches(model, instances, batch_size))

        def work() -> None:
            for one in inputs:
                run(one)

        return lambda part: _settled(work)

    return at


def _time(contenders, rows: List[Dict], num_instances: int, repeats: int, full_depth) -> None:
    """
    Every contender interleaved at each batch size (at batch size 1 also each runner at full
    depth, for its cost per layer); medians into `rows` as ms per sentence.
    """
    from early_exit.sweep.timing import interleaved_times

    for batch_size in BATCH_SIZES:
        runs = [at(batch_size) for at in contenders]
        if batch_size == 1:
            runs += [at(batch_size) for at in full_depth]
        print(f"timing at batch size {batch_size}: {len(runs)} runs, {repeats} rounds")
        times = interleaved_times(runs, repeats)
        for index, seconds in enumerate(times):
            ms = statistics.median(seconds) * 1e3 / num_instances
            if index < len(rows):
                rows[index][f"ms_{batch_size}"] = ms
            else:
                rows[index - len(rows)]["ms_full_1"] = ms


def _page(sections: List[Dict], args) -> str:
    lines = [
        "## Layer runners against the peers",
        "",
        "Early exit under each layer runner and the",
        "full model under the runtimes a user would deploy instead, on the same trained weights.",
        "Accuracy on the whole evaluation file; ms per sentence: the median of "
        f"{args.repeats} interleaved",
        f"rounds over its first {args.instances} sentences, {args.threads} threads. Early exit at "
        "the cheapest threshold",
        f"within {args.max_accuracy_drop * 100:g} point(s) of its own full-depth accuracy on the "
        "dev file (int8: temperatures",
        "refitted there); at batch size 32 it streams the batches as `allennlp predict` does.",
        "",
        f"Machine: {machine_description()}",
        "",
        "```",
        run_command(".venv/bin/python -m bench.runners", args_list(args)),
        "```",
    ]
    for section in sections:
        dataset = section["dataset"]
        lines += [
            "",
            f"### {dataset.name}",
            "",
            f"`{display_path(dataset.archive, ROOT)}`; {section['num_eval']} evaluation sentences "
            f"(`{display_path(dataset.eval, ROOT)}`), dev `{display_path(dataset.dev, ROOT)}`.",
            "",
            "| model | accuracy, full depth | accuracy | threshold | relative compute | "
            "ms, batch 1 | ms, batch 32 | ms per layer, batch 1 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in section["rows"]:
            threshold = f"{row['threshold']:.3f}" if "threshold" in row else "-"
            per_layer = row.get("ms_full_1", row["ms_1"]) / section["num_layers"]
            lines.append(
                f"| {row['name']} | {row['full_accuracy'] * 100:.1f} | "
                f"{row['accuracy'] * 100:.1f} | {threshold} | {row['compute']:.2f} | "
                f"{row['ms_1']:.2f} | {row['ms_32']:.2f} | {per_layer:.3f} |"
            )
    lines += [
        "",
        "ms per layer: the full model's time at batch size 1 over its layers (for early exit, "
        "timed at threshold 1.0 beside the rest), embeddings and head included.",
        "",
    ]
    return "\n".join(lines)


def args_list(args) -> List[str]:
    out: List[str] = []
    for option in ("archive", "dev_data", "eval_data"):
        for value in getattr(args, option) or []:
            out += [f"--{option.replace('_', '-')}", value]
    out += ["--instances", str(args.instances), "--repeats", str(args.repeats)]
    out += ["--threads", str(args.threads), "--max-accuracy-drop", str(args.max_accuracy_drop)]
    return out + ["--output", display_path(args.output, ROOT)]
