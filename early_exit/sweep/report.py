"""
Writing a sweep's results: the table as CSV and Markdown, a PNG plot, a JSON summary, and a compact
text version for the console.
"""

import contextlib
import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from early_exit.common.files import atomic_path, write_errors_named
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.recommendation import thresholds_only
from early_exit.sweep.recommendation import MAX_ACCURACY_DROP, Recommendation
from early_exit.sweep.run import SweepResult
from early_exit.sweep.sweep_table import SweepRow

CSV_FILE = "sweep.csv"
MARKDOWN_FILE = "sweep.md"
PLOT_FILE = "sweep.png"
JSON_FILE = "sweep.json"

# Thresholds always shown in the compact console table (when they are in the grid).
_COMPACT_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
# The same for the policies whose thresholds run the other way or on a coarser grid (a policy
# type not named here shows every row).
_COMPACT_BY_POLICY = {
    "max_probability": _COMPACT_THRESHOLDS,
    "entropy": (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "confident_patience": (0.9, 0.99),
}


def _timing_batch_sizes(result: SweepResult) -> List[int]:
    return sorted({timing.batch_size for timing in result.timings})


def _parameter_names(rows: Sequence[SweepRow]) -> List[str]:
    """The parameters of the rows' policies, in the order they first come."""
    return list(dict.fromkeys(name for row in rows for name in row.policy.parameters()))


def table_records(result: SweepResult) -> List[Dict[str, Any]]:
    """
    The full sweep table as flat records (one per row), the columns of `sweep.csv`: `policy` (the
    exit policy's name) and its parameters (`threshold`, `patience`: empty where a policy has no
    such parameter), `accuracy`, `accuracy_drop` (against the full model), `ece`,
    `relative_compute`, `compute_speedup` (the full model's compute over this row's),
    `mean_exit_layer`, `exit_fraction_layer_{l}` for each exit layer and, for each timed batch size
    `b`, `seconds_per_instance_bs{b}` and `speedup_bs{b}` (empty where a row was not timed).
    """
    timings = {(timing.policy, timing.batch_size): timing for timing in result.timings}
    full = result.full_model
    parameters = _parameter_names(result.rows)
    records = []
    for row in result.rows:
        record: Dict[str, Any] = {"policy": row.policy.registered_name()}
        record.update({name: row.policy.parameters().get(name) for name in parameters})
        record.update(
            {
                "accuracy": row.accuracy,
                "accuracy_drop": full.accuracy - row.accuracy,
                "ece": row.ece,
                "relative_compute": row.relative_compute,
                "compute_speedup": full.relative_compute / row.relative_compute,
                "mean_exit_layer": row.mean_exit_layer,
            }
        )
        for layer in result.exit_layers:
            record[f"exit_fraction_layer_{layer}"] = row.exit_fractions[layer]
        for size in _timing_batch_sizes(result):
            timing = timings.get((row.policy, size))
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


# The columns of the table that hold a policy's parameters, shown as given (`0.9`, not `0.9000`).
_PARAMETER_COLUMNS = ("threshold", "patience")


def _format_parameter(value: Any) -> str:
    return "" if value is None else f"{value:g}"


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
        [
            _format_parameter(record[name]) if name in _PARAMETER_COLUMNS else record[name]
            for name in headers
        ]
        for record in records
    ]
    return markdown_table(headers, rows)


def compact_records(
    result: SweepResult, max_rows: int = 25, records: Optional[List[Dict[str, Any]]] = None
) -> List[Dict[str, Any]]:
    """
    The table, or a subset of it when it has more than `max_rows` rows: round thresholds
    (`max_probability`: 0.1 steps, 0.95, 0.99, 0.999, 1.0; `entropy` likewise from 0; 0.9 and 0.99
    for `confident_patience`), every patience, the timed rows and the recommended ones.
    """
    records = table_records(result) if records is None else records
    if len(records) <= max_rows:
        return records
    keep = {timing.policy for timing in result.timings}
    keep.update(recommendation.policy for recommendation in result.recommendations)
    return [
        record
        for row, record in zip(result.rows, records)
        if row.policy in keep or _is_round(row.policy)
    ]


def _is_round(policy: ExitPolicy) -> bool:
    thresholds = _COMPACT_BY_POLICY.get(policy.registered_name())
    threshold = policy.parameters().get("threshold")
    return thresholds is None or threshold is None or round(threshold, 10) in thresholds


def model_line(result: Any) -> str:
    """The heads, the temperatures and (where not the default) the layer runner of a sweep."""
    runner = result.sources.get("layer_runner")
    return (
        f"Exit layers {result.exit_layers} of a {result.full_depth}-layer encoder; temperatures "
        f"{[round(value, 4) for value in result.temperatures]}"
        + (f" (layer runner {runner})" if runner else "")
    )


def _header_lines(result: SweepResult) -> List[str]:
    full = result.full_model
    lines = []
    if "archive_file" in result.sources:
        lines.append(f"Archive: {result.sources['archive_file']}")
    if "data_file" in result.sources:
        lines.append(f"Data: {result.sources['data_file']} ({result.num_instances} instances)")
    else:
        lines.append(f"Instances: {result.num_instances}")
    lines.append(model_line(result))
    policies = result.policies
    lines.append(f"Exit {'policy' if len(policies) == 1 else 'policies'}: {', '.join(policies)}")
    lines.append(
        f"Full model (threshold 1.0, no early exit): accuracy {full.accuracy:.4f}, relative "
        f"compute {full.relative_compute:.4f}"
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
    thresholds = _thresholds_only(result)
    rows = [
        [
            _label(timing.policy, thresholds),
            timing.batch_size,
            timing.seconds_per_instance,
            timing.speedup,
            timing.relative_compute,
        ]
        for timing in sorted(result.timings, key=lambda timing: timing.batch_size)  # stable
    ]
    headers = ["threshold" if thresholds else "policy"]
    headers += ["batch_size", "seconds_per_instance", "speedup", "relative_compute"]
    return markdown_table(headers, rows)


def _thresholds_only(result: SweepResult) -> bool:
    """True for a sweep of confidence thresholds only (the default; see `thresholds_only`)."""
    policies = [row.policy for row in result.rows] + [timing.policy for timing in result.timings]
    return thresholds_only(policies)


def _label(policy: ExitPolicy, thresholds: bool) -> str:
    """`0.9` in a sweep of confidence thresholds only, otherwise e.g. `entropy(threshold=0.3)`."""
    return f"{policy.threshold:g}" if thresholds else policy.describe()


def _timing_caption(result: SweepResult) -> str:
    first = result.timings[0]
    repeats = len(first.repeat_seconds)
    return (
        f"Measured on the first {first.num_instances} instances, median of {repeats} repeat(s); "
        "speedup over the full model (threshold 1.0) in the same run; relative compute on the "
        "timed instances; batches of more than one streamed through the model as `allennlp "
        "predict` runs them (the rows that go on past a head wait for later batches' rows)."
    )


def _console_columns(record: Dict[str, Any], one_policy: bool) -> Dict[str, Any]:
    return {
        name: value
        for name, value in record.items()
        if not name.startswith("seconds_per_instance")
        and name != "compute_speedup"
        and not (one_policy and name == "policy")  # the header names it
    }


def format_summary(result: SweepResult, full_table: bool = False, max_rows: int = 25) -> str:
    """
    The console report: header, recommendation, reference points, timing and the table (a subset
    of the thresholds unless `full_table`, and without the per-instance seconds and compute-based
    speedup columns, which the files have).
    """
    records = table_records(result)
    shown = records if full_table else compact_records(result, max_rows, records)
    shown = [_console_columns(record, len(result.policies) == 1) for record in shown]
    parts = ["\n".join(_header_lines(result)), "\n".join(_recommendation_lines(result))]
    parts.append(_reference_table(result))
    if result.timings:
        parts.append(_timing_caption(result) + "\n" + _timing_table(result))
    what = "thresholds" if _thresholds_only(result) else "rows"
    caption = (
        "Sweep"
        if len(shown) == len(records)
        else (f"Sweep ({len(shown)} of {len(records)} {what}; all of them in the files)")
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
    thresholds = _thresholds_only(result)
    title = "# Confidence threshold sweep" if thresholds else "# Exit policy sweep"
    sections = [title, "\n\n".join(_header_lines(result))]
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
    heading = "## All thresholds" if thresholds else "## All rows"
    sections.append(heading + "\n\n" + _records_table(table_records(result)))
    with open(path, "w", encoding="utf-8") as markdown_file:
        markdown_file.write("\n\n".join(sections) + "\n")


def write_json(result: SweepResult, path: str, files: Optional[Dict[str, str]] = None) -> None:
    summary = result.to_json()
    if files:
        summary["files"] = files
    with open(path, "w", encoding="utf-8") as json_file:
        json.dump(summary, json_file, indent=2)
        json_file.write("\n")


def _curves(rows: Sequence[SweepRow]) -> Dict[str, List[SweepRow]]:
    """Each policy type's rows by name, sorted by relative compute (ties in the table's order)."""
    curves: Dict[str, List[SweepRow]] = {}
    for row in rows:
        curves.setdefault(row.policy.registered_name(), []).append(row)
    return {
        name: sorted(curve, key=lambda row: row.relative_compute)  # stable
        for name, curve in curves.items()
    }


def _plot_measured(
    axes: Any, result: SweepResult, thresholds: bool, colors: Dict[str, str]
) -> None:
    """
    Measured speedups against accuracy: one line per batch size through the timed thresholds, each
    annotated, in a sweep of thresholds only; otherwise one line per policy (in its curve's colour)
    and batch size (a marker each), without annotations, which would overlap.
    """
    full = result.full_model
    accuracy_at = {row.policy: row.accuracy for row in [full, *result.rows]}
    markers = "o^sv<>"
    for index, size in enumerate(_timing_batch_sizes(result)):
        timings = sorted(
            (timing for timing in result.timings if timing.batch_size == size),
            key=lambda timing: timing.speedup,
        )
        timings = [timing for timing in timings if timing.policy in accuracy_at]
        if thresholds:
            axes.plot(
                [timing.speedup for timing in timings],
                [accuracy_at[timing.policy] for timing in timings],
                "-o",
                label=f"measured, batch size {size}",
            )
            for timing in timings:
                axes.annotate(
                    _label(timing.policy, thresholds),
                    (timing.speedup, accuracy_at[timing.policy]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
            continue
        marker = markers[index % len(markers)]
        axes.plot([], [], marker, color="black", label=f"measured, batch size {size}")
        for name, color in colors.items():
            own = [timing for timing in timings if timing.policy.registered_name() == name]
            axes.plot(
                [timing.speedup for timing in own],
                [accuracy_at[timing.policy] for timing in own],
                "-" + marker,
                color=color,
            )


def plot_sweep(result: SweepResult, path: str) -> None:
    """
    Writes a PNG with two panels: accuracy against relative compute (one curve per swept exit
    policy, each head alone, the oracle and the recommendation), and accuracy against speedup over
    the full model (measured at the timed policies for each batch size, and the compute-based
    speedup of the curves, the heads and the oracle for comparison). Uses matplotlib's Agg canvas
    directly, so no display and no global backend are touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    full = result.full_model
    thresholds = _thresholds_only(result)
    curves = _curves(result.rows)
    figure = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(figure)
    compute_axes, speed_axes = figure.subplots(1, 2)

    colors = {}
    for name, curve in curves.items():
        (line,) = compute_axes.plot(
            [row.relative_compute for row in curve],
            [row.accuracy for row in curve],
            "-o",
            markersize=3,
            label="early exit (threshold sweep)" if thresholds else f"early exit: {name}",
        )
        colors[name] = line.get_color()
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
                label=f"recommended: {_label(row.policy, thresholds)} ({recommendation.goal}"
                + (", guaranteed)" if recommendation.guarantee else ")"),
            )
    compute_axes.set_xlabel("relative compute (fraction of the encoder's layers)")
    compute_axes.set_ylabel("accuracy")
    compute_axes.set_title("accuracy vs compute")
    compute_axes.grid(alpha=0.3)
    compute_axes.legend(fontsize=8, loc="lower right" if thresholds else "best")

    for index, (name, curve) in enumerate(curves.items()):
        speed_axes.plot(
            [full.relative_compute / row.relative_compute for row in curve],
            [row.accuracy for row in curve],
            ":",
            color="gray" if thresholds else colors[name],
            label="compute-based speedup (ideal)" if index == 0 else None,
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
    _plot_measured(speed_axes, result, thresholds, colors)
    title = "accuracy vs speedup over the full model"
    if not result.timings:
        title += " (timing skipped)"
    speed_axes.set_xlabel("speedup over threshold 1.0 (x)")
    speed_axes.set_ylabel("accuracy")
    speed_axes.set_title(title)
    speed_axes.grid(alpha=0.3)
    speed_axes.legend(fontsize=8, loc="lower left" if thresholds else "best")

    figure.tight_layout()
    figure.savefig(path, format="png")


def sweep_output_files(output_dir: str) -> Dict[str, str]:
    """The paths `write_sweep_outputs` writes, by kind (`csv`, `markdown`, `plot`, `json`)."""
    return {
        "csv": os.path.join(output_dir, CSV_FILE),
        "markdown": os.path.join(output_dir, MARKDOWN_FILE),
        "plot": os.path.join(output_dir, PLOT_FILE),
        "json": os.path.join(output_dir, JSON_FILE),
    }


def write_sweep_outputs(result: SweepResult, output_dir: str) -> Dict[str, str]:
    """
    Writes `sweep.csv`, `sweep.md`, `sweep.png` and `sweep.json` into `output_dir` (created if
    needed) and returns their paths by kind (`csv`, `markdown`, `plot`, `json`). All four are
    written to temporaries first and moved into place only once every one is complete, so a
    failure leaves the files of an earlier sweep as they were.
    """
    files = sweep_output_files(output_dir)
    with contextlib.ExitStack() as stack:
        temporary = {kind: stack.enter_context(atomic_path(path)) for kind, path in files.items()}
        with write_errors_named(files["csv"]):  # each names its own file, not the last opened
            write_csv(result, temporary["csv"])
        with write_errors_named(files["markdown"]):
            write_markdown(result, temporary["markdown"])
        with write_errors_named(files["plot"]):
            plot_sweep(result, temporary["plot"])
        with write_errors_named(files["json"]):
            write_json(result, temporary["json"], files)
    return files
