"""
The Markdown and the plots of docs/results.md's compute-budget section (between its `budget`
markers; `report.write_report` keeps the section when it rewrites the rest).
"""

import argparse
from pathlib import Path
from typing import Dict, List

import torch

from early_exit.common.files import atomic_open
from scripts.results.budget_candidates import (
    candidates_table,
    controller_text,
    hindsight_bias,
    target_marks,
)
from scripts.results.budget_measure import BATCH_SIZE, dev_curves, measure_dataset, stream_of
from scripts.results.budget_streams import (
    FOREIGN,
    FOREIGN_COUNT,
    collect,
    collect_foreign,
    streams,
)
from scripts.results.formatting import pct, title
from scripts.results.settings import ROOT

START, END = "<!-- budget:start -->", "<!-- budget:end -->"
COMMAND = ".venv/bin/python -m scripts.results.budget --work-dir build/results"
DATASETS = ("sst2", "ag_news")
PLOT_BUDGET = 0.4


def kept_section(path: Path = ROOT / "docs" / "results.md") -> List[str]:
    """The budget section of the current report, markers included (none if it has none)."""
    text = path.read_text() if path.exists() else ""
    if START not in text or END not in text:
        return []
    return [START + text.split(START, 1)[1].split(END, 1)[0] + END, ""]


def _with_section(text: str, section: str) -> str:
    if START in text and END in text:
        before, rest = text.split(START, 1)
        return before + section + rest.split(END, 1)[1]
    if "## Reproduce" in text:
        before, after = text.split("## Reproduce", 1)
        return before + section + "\n\n## Reproduce" + after
    return text + "\n" + section + "\n"


def _worst(outcome: Dict) -> str:
    return "-" if outcome["worst"] is None else f"{outcome['worst']:.3f}"


def _targets(row: Dict) -> str:
    marks = zip(("mean", "windows", "accuracy"), target_marks(*_run(row)))
    return ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in marks)


def _run(row: Dict) -> tuple:
    return row["policy"], row["budget"], row["per_window"]


def dataset_table(rows: List[Dict]) -> List[str]:
    lines = [
        "| stream | budget | dev threshold | fixed: mean / worst window / accuracy | policy starts "
        "at | policy, batch 32: mean / worst window / accuracy | its thresholds | batch 1: mean / "
        "worst window | best fixed in hindsight at the policy's mean: accuracy | per-window "
        "hindsight: accuracy | fixed spending the budget in hindsight: mean / worst window | "
        "targets met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        fixed, policy, one = row["fixed"], row["policy"], row["batch_1"]
        hindsight, spending = row["hindsight"], row["spending"]
        lines.append(
            f"| {row['stream']} | {row['budget']:g} | {row['start']:g} | {fixed['mean']:.3f} / "
            f"{_worst(fixed)} / {pct(fixed['accuracy'])} | {row['begins']:.4g} | "
            f"{policy['mean']:.3f} / {_worst(policy)} / {pct(policy['accuracy'])} | "
            f"{policy['low']:.3f} to {policy['high']:.4f} | {one['mean']:.3f} / {_worst(one)} | "
            f"{pct(hindsight['accuracy'])} | {pct(row['per_window'])} | "
            f"{spending['mean']:.3f} / {_worst(spending)} | {_targets(row)} |"
        )
    return lines


def plot(dataset: str, data: Dict, rows: List[Dict], window: int, out: Path) -> None:
    """Compute over each stream (the running mean over `window`) at `PLOT_BUDGET`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [row for row in rows if row["budget"] == PLOT_BUDGET]
    figure = Figure(figsize=(4.2 * len(shown), 3.2))
    FigureCanvasAgg(figure)
    for index, row in enumerate(shown):
        axes = figure.add_subplot(1, len(shown), index + 1)
        for name, outcome in (("fixed (dev)", row["fixed"]), ("compute_budget", row["policy"])):
            computes = torch.tensor(outcome["computes"], dtype=torch.double)
            running = computes.cumsum(0)
            running[window:] = running[window:] - running[:-window].clone()
            counts = torch.arange(1, len(computes) + 1).clamp(max=window)
            axes.plot((running / counts).tolist(), label=name)
        axes.axhline(PLOT_BUDGET, color="black", linestyle="--", label="budget")
        axes.set_title(f"{title(dataset)}: {row['stream']}")
        axes.set_xlabel("instance")
        axes.set_ylabel(f"mean compute, last {window}")
        axes.legend(fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        figure.savefig(handle, format="png", dpi=90)


def missed(rows: List[Dict]) -> List[str]:
    """The rows whose targets were missed, in words."""
    misses = [
        f"{row['stream']} at {row['budget']:g} ({_targets(row)})"
        for row in rows
        if " no" in _targets(row)
    ]
    return ["Targets missed: " + ("; ".join(misses) if misses else "none") + ".", ""]


def window_note(rows: List[Dict], switch: int, window: int, cheapest: float) -> List[str]:
    """
    Why a row's windows miss their target: its worst window at batch size 32 against batch size 1,
    and, on the stream that switches to the other dataset's text (at row `switch`), what the rows
    of that text spent in the batch decided before the policy saw any of them, and after.
    """
    seen = (switch // BATCH_SIZE + 1) * BATCH_SIZE  # the first batch decided after the switch
    notes = []
    for row in rows:
        policy, budget = row["policy"], row["budget"]
        if policy["worst"] is None or policy["worst"] - budget <= 0.05:
            continue
        note = (
            f"{row['stream']} at {budget:g}: worst window {policy['worst'] - budget:+.3f} at "
            f"batch size {BATCH_SIZE}, {row['batch_1']['worst'] - budget:+.3f} at batch size 1"
        )
        if " then " in row["stream"]:
            computes = policy["computes"]
            blind, after = computes[switch:seen], computes[seen : seen + 2 * BATCH_SIZE]
            excess = sum(compute - budget for compute in blind) / window
            note += (
                f"; the {len(blind)} rows of the other text decided before the policy saw any of "
                f"them spend {sum(blind) / len(blind):.2f} each (+{excess:.3f} on every window "
                f"that holds them), the two batches after {sum(after) / len(after):.2f} each"
            )
        notes.append(note)
    if not notes:
        return []
    return [
        "Where a window misses, it holds a switch (to another class, or to the other text): a "
        "batch is decided whole with the threshold the batches before it left, so the rows of "
        "the batch that straddles the switch run at the old threshold before any controller can "
        "see them, and the rows after can pay that back no faster than the cheapest exit (the "
        f"first head, {cheapest:.3f}) allows, while the window also carries the sampling noise "
        "of the rest (see the fixed threshold spending the budget). At batch size 1 each row is "
        "decided after the one before it was seen. Measured: " + "; ".join(notes) + ".",
        "",
    ]


def write_section(args: argparse.Namespace, window: int) -> None:
    from scripts.results.training import prepare_data
    from early_exit.modules.exit_policies.compute_budget import (
        DEADBAND,
        INTEGRAL_GAIN,
        PAYBACK_GAIN,
        PROPORTIONAL_GAIN,
    )

    work = args.work_dir
    cache = args.cache_dir or work / "budget"
    sections, lines = {}, []
    for dataset in DATASETS:
        paths = prepare_data(dataset, args.shared_data, work)
        archive = work / "models" / f"{dataset}_early_exit" / "model.tar.gz"
        data = collect(archive, paths["dev"], paths["eval"], cache / f"{dataset}_heads.pt")
        count = len(data["eval"]["labels"])
        orders = streams(data["eval"])
        runs = {name: stream_of(data, order) for name, order in orders.items()}
        other = prepare_data(FOREIGN[dataset], args.shared_data, work)["eval"]
        foreign = collect_foreign(archive, other, cache / f"{dataset}_foreign.pt")
        name = f"shuffled, then {title(FOREIGN[dataset])} text"
        runs[name] = stream_of(data, orders["shuffled"], foreign)
        rows = measure_dataset(data, runs, window)
        sections[dataset] = (runs, dev_curves(data))
        plot(dataset, data, rows, window, ROOT / "docs" / "results" / f"budget_{dataset}.png")
        lines += [f"### {title(dataset)} ({count:,} evaluation instances)", ""]
        lines += dataset_table(rows) + [""] + missed(rows)
        lines += window_note(rows, count, window, data["head_compute"][0])
        lines += [f"![{title(dataset)}: compute over the stream](results/budget_{dataset}.png)"]
        lines += [""]
    chosen = (window, INTEGRAL_GAIN, PROPORTIONAL_GAIN, PAYBACK_GAIN, DEADBAND, None)
    section = "\n".join(
        [
            START,
            *intro(window),
            *lines,
            *controller_text(),
            *candidates_table(sections, chosen),
            "",
            *hindsight_bias(sections, window),
            END,
        ]
    )
    report = ROOT / "docs" / "results.md"
    text = report.read_text() if report.exists() else ""
    with atomic_open(report) as out:
        out.write(_with_section(text, section))
    print(section)


def intro(window: int) -> List[str]:
    return [
        "## Holding a compute budget on a drifting stream",
        "",
        f"Generated by `{COMMAND}` (every head's outputs collected once per dataset, then the "
        "policies run on arrays through the policy's own code); do not edit by hand.",
        "",
        "The `compute_budget` exit policy (`max_probability` wrapped, window "
        f"{window}, batches of {BATCH_SIZE}, no `start`: it starts where the dev split's compute "
        "curve reaches the budget, as from an archive that `allennlp calibrate` wrote) against "
        "the fixed threshold `sweep-thresholds --compute-budget` picks on dev, on four streams: "
        "the evaluation split shuffled (no drift: the control), short to long (by wordpieces), "
        "class by class (one label's texts after another's), and shuffled then "
        f"{FOREIGN_COUNT} texts of the other dataset's evaluation file (a source of text the "
        "model was not trained on; those rows have no label the model knows, so accuracies are "
        "taken on the labelled rows, the rest counting for compute only). Worst window: the "
        f"largest mean compute over {window} consecutive instances after the first {window} (the "
        "warm-up); `-` where the stream has no such window. Best fixed in hindsight: the most "
        "accurate threshold of the sweep grid whose mean compute on the stream is at most the "
        "policy's. Per-window hindsight: in each "
        f"block of {window} instances, the most accurate threshold whose compute in that block is "
        "within the budget: what any rule that holds the budget window by window could reach "
        "(above the global hindsight where choosing per block pays, below it where the global "
        "threshold overspends on hard blocks: the price of holding the budget per window). "
        "Targets: mean within 0.01 of the budget, every window within 0.05 above it, accuracy "
        "within 1 point of the per-window hindsight. The dev recommendation is the most accurate "
        "threshold within the budget on dev, so where accuracy saturates early (AG News) it "
        "spends well under the budget; the policy spends the budget (the premise: more compute, "
        "more accuracy; the accuracy columns show where it holds). Fixed spending the budget in "
        "hindsight: the grid threshold with the largest mean compute within the budget on the "
        "stream, and its worst window: how far a window's mean strays from the stream's by the "
        "sampling of the instances alone, under a rule that does not react (the floor a "
        "controller must beat by reacting to hold every window within 0.05).",
        "",
    ]
