"""
Writing a sweep's results: the table as CSV and Markdown, a PNG plot (see `plot`), a JSON summary,
and a compact text version for the console; on data without labels, the table of compute and
disagreement with the full model, without accuracy columns and without a plot.
"""

import contextlib
import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from early_exit.common.files import atomic_path, write_errors_named
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.plot import plot_sweep
from early_exit.sweep.recommendation import MAX_ACCURACY_DROP, Recommendation
from early_exit.sweep.result import SweepResult
from early_exit.sweep.sweep_table import SweepRow
from early_exit.sweep.thresholds import policy_label

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
        for size in result.timing_batch_sizes:
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
    thresholds = result.thresholds_only
    rows = [
        [
            policy_label(timing.policy, thresholds, "cell"),
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
    if not result.labelled:
        return _unlabelled_summary(result, max_rows=10**9 if full_table else max_rows)
    records = table_records(result)
    shown = records if full_table else compact_records(result, max_rows, records)
    shown = [_console_columns(record, len(result.policies) == 1) for record in shown]
    parts = ["\n".join(_header_lines(result)), "\n".join(_recommendation_lines(result))]
    parts.append(_reference_table(result))
    if result.timings:
        parts.append(_timing_caption(result) + "\n" + _timing_table(result))
    what = "thresholds" if result.thresholds_only else "rows"
    caption = (
        "Sweep"
        if len(shown) == len(records)
        else (f"Sweep ({len(shown)} of {len(records)} {what}; all of them in the files)")
    )
    parts.append(caption + "\n" + _records_table(shown))
    return "\n\n".join(part for part in parts if part) + "\n"


def write_csv(result: SweepResult, path: str) -> None:
    if not result.labelled:
        with open(path, "w", newline="", encoding="utf-8") as csv_file:
            writer = csv.writer(csv_file)
            writer.writerow(_UNLABELLED_COLUMNS)
            writer.writerows(_unlabelled_rows(result))
        return
    records = table_records(result)
    with open(path, "w", newline="", encoding="utf-8") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=list(records[0]))
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})


def write_markdown(result: SweepResult, path: str) -> None:
    if not result.labelled:
        markdown = "# Threshold sweep without labels\n\n" + "\n\n".join(_unlabelled_header(result))
        table = markdown_table(_UNLABELLED_COLUMNS, _unlabelled_rows(result))
        with open(path, "w", encoding="utf-8") as markdown_file:
            markdown_file.write(markdown + "\n\n## All thresholds\n\n" + table + "\n")
        return
    thresholds = result.thresholds_only
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


_UNLABELLED_COLUMNS = ("policy", "relative_compute", "mean_exit_layer", "disagreement", "certified")


def _unlabelled_rows(result: SweepResult) -> List[List[Any]]:
    """The table without labels, in the order the guarantee walked it."""
    return [
        [policy_label(row.policy, form="parameters")]
        + [row.relative_compute, row.mean_exit_layer, row.disagreement]
        + ["yes" if certified else ""]
        for row, certified in result.walked_rows()
    ]


def _unlabelled_header(result: SweepResult) -> List[str]:
    lines = []
    if "archive_file" in result.sources:
        lines.append(f"Archive: {result.sources['archive_file']}")
    data = result.sources.get("data_file", "data")
    lines.append(f"Data: {data} ({result.num_instances} instances, labels not used)")
    lines.append(model_line(result))
    lines.append(f"Recommended {result.guarantee.message}")
    return lines


def _unlabelled_summary(result: SweepResult, max_rows: int) -> str:
    """The console report without labels: header, guaranteed pick and (part of) the table."""
    rows = _unlabelled_rows(result)
    caption = "Disagreement with the full model"
    if len(rows) > max_rows:
        step = -(-len(rows) // max_rows)
        total = len(rows)
        rows = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
        caption += f" ({len(rows)} of {total} thresholds; all in the files)"
    table = markdown_table(_UNLABELLED_COLUMNS, rows)
    return "\n".join(_unlabelled_header(result)) + f"\n\n{caption}\n{table}\n"


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
    Writes `sweep.csv`, `sweep.md`, `sweep.png` (not without labels) and `sweep.json` into
    `output_dir` (created if needed) and returns their paths by kind (`csv`, `markdown`, `plot`,
    `json`). All of them are
    written to temporaries first and moved into place only once every one is complete, so a
    failure leaves the files of an earlier sweep as they were.
    """
    files = sweep_output_files(output_dir)
    if not result.labelled:
        del files["plot"]
    with contextlib.ExitStack() as stack:
        temporary = {kind: stack.enter_context(atomic_path(path)) for kind, path in files.items()}
        writers = {
            "csv": lambda: write_csv(result, temporary["csv"]),
            "markdown": lambda: write_markdown(result, temporary["markdown"]),
            "plot": lambda: plot_sweep(result, temporary["plot"]),
            "json": lambda: write_json(result, temporary["json"], files),
        }
        for kind, write in writers.items():
            if kind in files:
                with write_errors_named(files[kind]):  # each names its own file
                    write()
    return files
