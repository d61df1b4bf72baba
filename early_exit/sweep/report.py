"""
Writing a sweep's results: the table as CSV and Markdown, a PNG plot (see `plot`), a JSON summary,
and a compact text version for the console; on data without labels, the table of compute and
disagreement with the full model, without accuracy columns and without a plot.
"""

import contextlib
import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from early_exit.common.files import atomic_path, write_errors_named
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.plot import plot_sweep
from early_exit.sweep.recommendation import MAX_ACCURACY_DROP
from early_exit.sweep.result import SweepResult
from early_exit.sweep.thresholds import policy_label

# The files of a sweep by kind, in the order they are written.
OUTPUT_FILES = {
    "csv": "sweep.csv",
    "markdown": "sweep.md",
    "plot": "sweep.png",
    "json": "sweep.json",
}

# The thresholds the compact console table always shows (when in the grid), by policy type (a
# type not named here shows every row).
_COMPACT_BY_POLICY = {
    "max_probability": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0),
    "entropy": (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "confident_patience": (0.9, 0.99),
}
# The columns of the table that hold a policy's parameters, shown as given (`0.9`, not `0.9000`).
_PARAMETER_COLUMNS = ("threshold", "patience")
_UNLABELLED_COLUMNS = ("policy", "relative_compute", "mean_exit_layer", "disagreement", "certified")


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
    parameters = list(
        dict.fromkeys(name for row in result.rows for name in row.policy.parameters())
    )
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
            record[f"seconds_per_instance_bs{size}"] = timing and timing.seconds_per_instance
            record[f"speedup_bs{size}"] = timing and timing.speedup
        records.append(record)
    return records


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


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
            ("" if value is None else f"{value:g}") if name in _PARAMETER_COLUMNS else value
            for name, value in record.items()
        ]
        for record in records
    ]
    return markdown_table(headers, rows)


def compact_records(
    result: SweepResult, max_rows: int = 25, records: Optional[List[Dict[str, Any]]] = None
) -> List[Dict[str, Any]]:
    """
    The table, or where it has more than `max_rows` rows, its round thresholds (see
    `_COMPACT_BY_POLICY`), every patience, the timed rows and the recommended ones.
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


def _header_lines(result: SweepResult) -> List[str]:
    """Where the model and data came from, the heads and, with labels, the full model's row."""
    sources = result.sources
    lines = [f"Archive: {sources['archive_file']}"] if "archive_file" in sources else []
    if not result.labelled:
        data = sources.get("data_file", "data")
        lines.append(f"Data: {data} ({result.num_instances} instances, labels not used)")
    elif "data_file" in sources:
        lines.append(f"Data: {sources['data_file']} ({result.num_instances} instances)")
    else:
        lines.append(f"Instances: {result.num_instances}")
    runner = sources.get("layer_runner")
    lines.append(
        f"Exit layers {result.exit_layers} of a {result.full_depth}-layer encoder; temperatures "
        f"{[round(value, 4) for value in result.temperatures]}"
        + (f" (layer runner {runner})" if runner else "")
    )
    if not result.labelled:
        return lines + [f"Recommended {result.guarantee.message}"]
    policies, full = result.policies, result.full_model
    lines.append(f"Exit {'policy' if len(policies) == 1 else 'policies'}: {', '.join(policies)}")
    lines.append(
        f"Full model (threshold 1.0, no early exit): accuracy {full.accuracy:.4f}, relative "
        f"compute {full.relative_compute:.4f}"
    )
    return lines


def _recommendation_lines(result: SweepResult) -> List[str]:
    guaranteed = any(recommendation.guarantee for recommendation in result.recommendations)
    return [
        (
            "Plain pick (no guarantee):"
            if guaranteed and each.guarantee is None and each.goal == MAX_ACCURACY_DROP
            else "Recommended"
        )
        + f" {each.message}"
        for each in result.recommendations
    ]


def _reference_table(result: SweepResult) -> str:
    rows: List[List[Any]] = [
        [f"layer {point.layer} alone", point.accuracy, point.relative_compute]
        for point in result.single_heads
    ]
    oracle = result.oracle
    for unsolved, compute in (
        ("first", oracle.relative_compute_unsolved_at_first),
        ("last", oracle.relative_compute_unsolved_at_last),
    ):
        rows.append([f"oracle, unsolved at {unsolved} head", oracle.accuracy, compute])
    return markdown_table(["reference point", "accuracy", "relative_compute"], rows)


def _timing_section(result: SweepResult, separator: str) -> str:
    """The timing table, after a caption that says how it was measured."""
    first, thresholds = result.timings[0], result.thresholds_only
    caption = (
        f"Measured on the first {first.num_instances} instances, median of "
        f"{len(first.repeat_seconds)} repeat(s); speedup over the full model (threshold 1.0) in "
        "the same run; relative compute on the timed instances; batches of more than one "
        "streamed through the model as `allennlp predict` runs them (the rows that go on past a "
        "head wait for later batches' rows)."
    )
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
    return caption + separator + markdown_table(headers, rows)


def _unlabelled_rows(result: SweepResult) -> List[List[Any]]:
    """The table without labels, in the order the guarantee walked it."""
    return [
        [policy_label(row.policy, form="parameters")]
        + [row.relative_compute, row.mean_exit_layer, row.disagreement]
        + ["yes" if certified else ""]
        for row, certified in result.walked_rows()
    ]


def format_summary(result: SweepResult, full_table: bool = False, max_rows: int = 25) -> str:
    """
    The console report: header, recommendation, reference points, timing and the table (a subset
    of the rows unless `full_table`, and without the per-instance seconds and compute-based
    speedup columns, which the files have).
    """
    header = "\n".join(_header_lines(result))
    if not result.labelled:
        rows, caption = _unlabelled_rows(result), "Disagreement with the full model"
        if len(rows) > max_rows and not full_table:
            step = -(-len(rows) // max_rows)
            total = len(rows)
            rows = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
            caption += f" ({len(rows)} of {total} thresholds; all in the files)"
        return f"{header}\n\n{caption}\n{markdown_table(_UNLABELLED_COLUMNS, rows)}\n"
    records = table_records(result)
    shown = records if full_table else compact_records(result, max_rows, records)
    one_policy = len(result.policies) == 1
    shown = [
        {
            name: value
            for name, value in record.items()
            if not name.startswith("seconds_per_instance")
            and name != "compute_speedup"
            and not (one_policy and name == "policy")  # the header names it
        }
        for record in shown
    ]
    parts = [header, "\n".join(_recommendation_lines(result)), _reference_table(result)]
    if result.timings:
        parts.append(_timing_section(result, "\n"))
    what = "thresholds" if result.thresholds_only else "rows"
    caption = "Sweep"
    if len(shown) != len(records):
        caption = f"Sweep ({len(shown)} of {len(records)} {what}; all of them in the files)"
    parts.append(caption + "\n" + _records_table(shown))
    return "\n\n".join(part for part in parts if part) + "\n"


def _table(result: SweepResult) -> Tuple[Sequence[str], List[List[Any]]]:
    """The columns and rows of `sweep.csv`."""
    if not result.labelled:
        return _UNLABELLED_COLUMNS, _unlabelled_rows(result)
    records = table_records(result)
    return list(records[0]), [list(record.values()) for record in records]


def _markdown(result: SweepResult) -> str:
    """`sweep.md`."""
    sections = ["\n\n".join(_header_lines(result))]
    if not result.labelled:
        table = markdown_table(_UNLABELLED_COLUMNS, _unlabelled_rows(result))
        return (
            "\n\n".join(["# Threshold sweep without labels", *sections, "## All thresholds", table])
            + "\n"
        )
    thresholds = result.thresholds_only
    sections.insert(0, "# Confidence threshold sweep" if thresholds else "# Exit policy sweep")
    sections.append(
        "## Recommendation\n\n" + "\n".join(f"- {line}" for line in _recommendation_lines(result))
    )
    sections.append("## Reference points\n\n" + _reference_table(result))
    timing = _timing_section(result, "\n\n") if result.timings else "Timing was skipped."
    sections.append("## Measured speed\n\n" + timing)
    table = _records_table(table_records(result))
    sections.append(("## All thresholds" if thresholds else "## All rows") + "\n\n" + table)
    return "\n\n".join(sections) + "\n"


def sweep_output_files(output_dir: str) -> Dict[str, str]:
    """The paths `write_sweep_outputs` writes, by kind (`csv`, `markdown`, `plot`, `json`)."""
    return {kind: os.path.join(output_dir, name) for kind, name in OUTPUT_FILES.items()}


def write_sweep_outputs(result: SweepResult, output_dir: str) -> Dict[str, str]:
    """
    Writes `sweep.csv`, `sweep.md`, `sweep.png` (not without labels) and `sweep.json` into
    `output_dir` and returns their paths by kind. All are written to temporaries first and moved
    into place only once every one is complete, so a failure leaves an earlier sweep's files.
    """
    files = sweep_output_files(output_dir)
    if not result.labelled:
        del files["plot"]

    def write_csv(path: str) -> None:
        columns, rows = _table(result)
        with open(path, "w", newline="", encoding="utf-8") as csv_file:
            csv.writer(csv_file).writerows([columns, *rows])

    def write_text(path: str, text: str) -> None:
        with open(path, "w", encoding="utf-8") as text_file:
            text_file.write(text)

    writers = {
        "csv": write_csv,
        "markdown": lambda path: write_text(path, _markdown(result)),
        "plot": lambda path: plot_sweep(result, path),
        "json": lambda path: write_text(
            path, json.dumps({**result.to_json(), "files": files}, indent=2) + "\n"
        ),
    }
    with contextlib.ExitStack() as stack:
        temporary = {kind: stack.enter_context(atomic_path(path)) for kind, path in files.items()}
        for kind, path in files.items():
            with write_errors_named(path):  # each names its own file
                writers[kind](temporary[kind])
    return files
