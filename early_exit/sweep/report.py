"""
Writing a sweep's results: the table as CSV and Markdown, a PNG plot, a JSON summary, and a compact
text version for the console.
"""

import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from early_exit.sweep.recommendation import MAX_ACCURACY_DROP, Recommendation
from early_exit.sweep.run import SweepResult
from early_exit.sweep.sweep_table import SweepRow

CSV_FILE = "sweep.csv"
MARKDOWN_FILE = "sweep.md"
PLOT_FILE = "sweep.png"
JSON_FILE = "sweep.json"

# Thresholds always shown in the compact console table (when they are in the grid).
_COMPACT_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


def _timing_batch_sizes(result: SweepResult) -> List[int]:
    return sorted({timing.batch_size for timing in result.timings})


def table_records(result: SweepResult) -> List[Dict[str, Any]]:
    """
    The full sweep table as flat records (one per threshold), the columns of `sweep.csv`:
    `threshold`, `accuracy`, `accuracy_drop` (against the full model), `ece`, `relative_compute`,
    `compute_speedup` (the full model's compute over this threshold's), `mean_exit_layer`,
    `exit_fraction_layer_{l}` for each exit layer and, for each timed batch size `b`,
    `seconds_per_instance_bs{b}` and `speedup_bs{b}` (empty where a threshold was not timed).
    """
    timings = {(timing.threshold, timing.batch_size): timing for timing in result.timings}
    full = result.full_model
    records = []
    for row in result.rows:
        record: Dict[str, Any] = {
            "threshold": row.threshold,
            "accuracy": row.accuracy,
            "accuracy_drop": full.accuracy - row.accuracy,
            "ece": row.ece,
            "relative_compute": row.relative_compute,
            "compute_speedup": full.relative_compute / row.relative_compute,
            "mean_exit_layer": row.mean_exit_layer,
        }
        for layer in result.exit_layers:
            record[f"exit_fraction_layer_{layer}"] = row.exit_fractions[layer]
        for size in _timing_batch_sizes(result):
            timing = timings.get((row.threshold, size))
            record[f"seconds_per_instance_bs{size}"] = (
                None if timing is None else timing.seconds_per_instance
            )
            record[f"speedup_bs{size}"] = None if timing is None else timing.speedup
        records.append(record)
    return records


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def _format_threshold(threshold: float) -> str:
    return f"{threshold:g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown (GitHub) table, right-aligned numbers, floats to four decimals."""
    cells = [[_format_value(value) for value in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in cells)
    return "\n".join(lines)


def _records_table(records: List[Dict[str, Any]]) -> str:
    if not records:
        return "(no rows)"
    headers = list(records[0])
    rows = [
        [_format_threshold(record["threshold"])] + [record[name] for name in headers[1:]]
        for record in records
    ]
    return markdown_table(headers, rows)


def compact_records(
    result: SweepResult, max_rows: int = 25, records: Optional[List[Dict[str, Any]]] = None
) -> List[Dict[str, Any]]:
    """
    The table, or a subset of it when it has more than `max_rows` rows: round thresholds (0.1 steps,
    0.95, 0.99, 0.999, 1.0), the timed ones and the recommended ones.
    """
    records = table_records(result) if records is None else records
    if len(records) <= max_rows:
        return records
    keep = {round(threshold, 10) for threshold in _COMPACT_THRESHOLDS}
    keep.update(round(timing.threshold, 10) for timing in result.timings)
    keep.update(
        round(recommendation.threshold, 10)
        for recommendation in result.recommendations
        if recommendation.threshold is not None
    )
    return [record for record in records if round(record["threshold"], 10) in keep]


def _header_lines(result: SweepResult) -> List[str]:
    full = result.full_model
    lines = []
    if "archive_file" in result.sources:
        lines.append(f"Archive: {result.sources['archive_file']}")
    if "data_file" in result.sources:
        lines.append(f"Data: {result.sources['data_file']} ({result.num_instances} instances)")
    else:
        lines.append(f"Instances: {result.num_instances}")
    lines.append(
        f"Exit layers {result.exit_layers} of a {result.full_depth}-layer encoder; temperatures "
        f"{[round(value, 4) for value in result.temperatures]}"
    )
    lines.append(
        f"Full model (threshold 1.0): accuracy {full.accuracy:.4f}, relative compute "
        f"{full.relative_compute:.4f}"
    )
    return lines


def _recommendation_lines(result: SweepResult) -> List[str]:
    guaranteed = any(recommendation.guarantee for recommendation in result.recommendations)
    return [
        f"{_recommendation_prefix(recommendation, guaranteed)} {recommendation.message}"
        for recommendation in result.recommendations
    ]


def _recommendation_prefix(recommendation: Recommendation, guaranteed: bool) -> str:
    if guaranteed and recommendation.guarantee is None and recommendation.goal == MAX_ACCURACY_DROP:
        return "Plain pick (no guarantee):"
    return "Recommended"


def _reference_table(result: SweepResult) -> str:
    rows: List[List[Any]] = []
    for point in result.single_heads:
        rows.append([f"layer {point.layer} alone", point.accuracy, point.relative_compute])
    oracle = result.oracle
    rows.append(
        [
            "oracle, unsolved at first head",
            oracle.accuracy,
            oracle.relative_compute_unsolved_at_first,
        ]
    )
    rows.append(
        ["oracle, unsolved at last head", oracle.accuracy, oracle.relative_compute_unsolved_at_last]
    )
    return markdown_table(["reference point", "accuracy", "relative_compute"], rows)


def _timing_table(result: SweepResult) -> str:
    rows = [
        [
            _format_threshold(timing.threshold),
            timing.batch_size,
            timing.seconds_per_instance,
            timing.speedup,
            timing.relative_compute,
        ]
        for timing in sorted(result.timings, key=lambda t: (t.batch_size, t.threshold))
    ]
    return markdown_table(
        ["threshold", "batch_size", "seconds_per_instance", "speedup", "relative_compute"], rows
    )


def _timing_caption(result: SweepResult) -> str:
    first = result.timings[0]
    repeats = len(first.repeat_seconds)
    return (
        f"Measured on the first {first.num_instances} instances, median of {repeats} repeat(s); "
        "speedup over the full model (threshold 1.0) in the same run; relative compute on the "
        "timed instances; batches of more than one streamed through the model as `allennlp "
        "predict` runs them (the rows that go on past a head wait for later batches' rows)."
    )


def _console_columns(record: Dict[str, Any]) -> Dict[str, Any]:
    return {
        name: value
        for name, value in record.items()
        if not name.startswith("seconds_per_instance") and name != "compute_speedup"
    }


def format_summary(result: SweepResult, full_table: bool = False, max_rows: int = 25) -> str:
    """
    The console report: header, recommendation, reference points, timing and the table (a subset
    of the thresholds unless `full_table`, and without the per-instance seconds and compute-based
    speedup columns, which the files have).
    """
    records = table_records(result)
    shown = records if full_table else compact_records(result, max_rows, records)
    shown = [_console_columns(record) for record in shown]
    parts = ["\n".join(_header_lines(result)), "\n".join(_recommendation_lines(result))]
    parts.append(_reference_table(result))
    if result.timings:
        parts.append(_timing_caption(result) + "\n" + _timing_table(result))
    caption = (
        "Sweep"
        if len(shown) == len(records)
        else (f"Sweep ({len(shown)} of {len(records)} thresholds; all of them in the files)")
    )
    parts.append(caption + "\n" + _records_table(shown))
    return "\n\n".join(part for part in parts if part) + "\n"


def write_csv(result: SweepResult, path: str) -> None:
    records = table_records(result)
    with open(path, "w", newline="", encoding="utf-8") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=list(records[0]))
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})


def write_markdown(result: SweepResult, path: str) -> None:
    sections = ["# Confidence threshold sweep", "\n\n".join(_header_lines(result))]
    sections.append(
        "## Recommendation\n\n" + "\n".join(f"- {line}" for line in _recommendation_lines(result))
    )
    sections.append("## Reference points\n\n" + _reference_table(result))
    if result.timings:
        sections.append(
            "## Measured speed\n\n" + _timing_caption(result) + "\n\n" + _timing_table(result)
        )
    else:
        sections.append("## Measured speed\n\nTiming was skipped.")
    sections.append("## All thresholds\n\n" + _records_table(table_records(result)))
    with open(path, "w", encoding="utf-8") as markdown_file:
        markdown_file.write("\n\n".join(sections) + "\n")


def write_json(result: SweepResult, path: str, files: Optional[Dict[str, str]] = None) -> None:
    summary = result.to_json()
    if files:
        summary["files"] = files
    with open(path, "w", encoding="utf-8") as json_file:
        json.dump(summary, json_file, indent=2)
        json_file.write("\n")


def _curve(rows: Sequence[SweepRow]) -> List[SweepRow]:
    return sorted(rows, key=lambda row: (row.relative_compute, row.threshold))


def plot_sweep(result: SweepResult, path: str) -> None:
    """
    Writes a PNG with two panels: accuracy against relative compute (the threshold curve, each head
    alone, the oracle and the recommendation), and accuracy against speedup over the full model
    (measured at the timed thresholds for each batch size, and the compute-based speedup of the
    curve, the heads and the oracle for comparison). Uses matplotlib's Agg canvas directly, so no
    display and no global backend are touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    full = result.full_model
    curve = _curve(result.rows)
    figure = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(figure)
    compute_axes, speed_axes = figure.subplots(1, 2)

    compute_axes.plot(
        [row.relative_compute for row in curve],
        [row.accuracy for row in curve],
        "-o",
        markersize=3,
        label="early exit (threshold sweep)",
    )
    compute_axes.plot(
        [point.relative_compute for point in result.single_heads],
        [point.accuracy for point in result.single_heads],
        "s",
        markersize=8,
        label="each head alone",
    )
    for point in result.single_heads:
        compute_axes.annotate(
            f"layer {point.layer}",
            (point.relative_compute, point.accuracy),
            textcoords="offset points",
            xytext=(5, -12),
            fontsize=8,
        )
    oracle = result.oracle
    compute_axes.plot(
        [oracle.relative_compute_unsolved_at_first, oracle.relative_compute_unsolved_at_last],
        [oracle.accuracy, oracle.accuracy],
        "*--",
        markersize=12,
        label="oracle (unsolved at first / last head)",
    )
    for recommendation in result.recommendations:
        if recommendation.row is not None:
            row = recommendation.row
            compute_axes.plot(
                [row.relative_compute],
                [row.accuracy],
                "o",
                markersize=12,
                markerfacecolor="none",
                markeredgewidth=2,
                label=f"recommended: {row.threshold:g} ({recommendation.goal}"
                + (", guaranteed)" if recommendation.guarantee else ")"),
            )
    compute_axes.set_xlabel("relative compute (fraction of the encoder's layers)")
    compute_axes.set_ylabel("accuracy")
    compute_axes.set_title("accuracy vs compute")
    compute_axes.grid(alpha=0.3)
    compute_axes.legend(fontsize=8, loc="lower right")

    speed_axes.plot(
        [full.relative_compute / row.relative_compute for row in curve],
        [row.accuracy for row in curve],
        ":",
        color="gray",
        label="compute-based speedup (ideal)",
    )
    speed_axes.plot(
        [full.relative_compute / point.relative_compute for point in result.single_heads],
        [point.accuracy for point in result.single_heads],
        "s",
        markersize=8,
        markerfacecolor="none",
        label="each head alone (compute-based)",
    )
    speed_axes.plot(
        [
            full.relative_compute / oracle.relative_compute_unsolved_at_first,
            full.relative_compute / oracle.relative_compute_unsolved_at_last,
        ],
        [oracle.accuracy, oracle.accuracy],
        "*--",
        markersize=12,
        markerfacecolor="none",
        label="oracle (compute-based)",
    )
    accuracy_at = {row.threshold: row.accuracy for row in result.rows}
    for size in _timing_batch_sizes(result):
        timings = sorted(
            (timing for timing in result.timings if timing.batch_size == size),
            key=lambda timing: timing.speedup,
        )
        timings = [timing for timing in timings if timing.threshold in accuracy_at]
        speed_axes.plot(
            [timing.speedup for timing in timings],
            [accuracy_at[timing.threshold] for timing in timings],
            "-o",
            label=f"measured, batch size {size}",
        )
        for timing in timings:
            speed_axes.annotate(
                f"{timing.threshold:g}",
                (timing.speedup, accuracy_at[timing.threshold]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    title = "accuracy vs speedup over the full model"
    if not result.timings:
        title += " (timing skipped)"
    speed_axes.set_xlabel("speedup over threshold 1.0 (x)")
    speed_axes.set_ylabel("accuracy")
    speed_axes.set_title(title)
    speed_axes.grid(alpha=0.3)
    speed_axes.legend(fontsize=8, loc="lower left")

    figure.tight_layout()
    figure.savefig(path)


def write_sweep_outputs(result: SweepResult, output_dir: str) -> Dict[str, str]:
    """
    Writes `sweep.csv`, `sweep.md`, `sweep.png` and `sweep.json` into `output_dir` (created if
    needed) and returns their paths by kind (`csv`, `markdown`, `plot`, `json`).
    """
    os.makedirs(output_dir, exist_ok=True)
    files = {
        "csv": os.path.join(output_dir, CSV_FILE),
        "markdown": os.path.join(output_dir, MARKDOWN_FILE),
        "plot": os.path.join(output_dir, PLOT_FILE),
        "json": os.path.join(output_dir, JSON_FILE),
    }
    write_csv(result, files["csv"])
    write_markdown(result, files["markdown"])
    plot_sweep(result, files["plot"])
    write_json(result, files["json"], files)
    return files
