"""
Writing the sweep of data without labels (`LabelFreeSweep`): `sweep.json`, `sweep.csv`, `sweep.md`
and the console summary. No accuracy columns: without labels there is no accuracy to show.
"""

import contextlib
import csv
import json
import os
from typing import Any, Dict, List

from early_exit.common.files import atomic_path, write_errors_named
from early_exit.sweep.guaranteed import LabelFreeSweep
from early_exit.sweep.report import (
    CSV_FILE,
    JSON_FILE,
    MARKDOWN_FILE,
    markdown_table,
    model_line,
)

_COLUMNS = ("policy", "relative_compute", "mean_exit_layer", "disagreement", "certified")


def _table_rows(result: LabelFreeSweep) -> List[List[Any]]:
    return [
        [_policy_text(record["policy"])]
        + [record[name] for name in _COLUMNS[1:-1]]
        + ["yes" if record["certified"] else ""]
        for record in result.records
    ]


def _policy_text(policy: Dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in policy.items() if key != "type")


def _header_lines(result: LabelFreeSweep) -> List[str]:
    lines = []
    if "archive_file" in result.sources:
        lines.append(f"Archive: {result.sources['archive_file']}")
    data = result.sources.get("data_file", "data")
    lines.append(f"Data: {data} ({result.num_instances} instances, labels not used)")
    lines.append(model_line(result))
    lines.append(f"Recommended {result.guarantee.message}")
    return lines


def format_label_free_summary(result: LabelFreeSweep, max_rows: int = 25) -> str:
    """The console report: header, guaranteed recommendation and (part of) the table."""
    rows = _table_rows(result)
    caption = "Disagreement with the full model"
    if len(rows) > max_rows:
        step = -(-len(rows) // max_rows)
        rows = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
        caption += f" ({len(rows)} of {len(result.records)} thresholds; all in the files)"
    return "\n".join(_header_lines(result)) + f"\n\n{caption}\n{markdown_table(_COLUMNS, rows)}\n"


def write_label_free_outputs(result: LabelFreeSweep, output_dir: str) -> Dict[str, str]:
    """
    Writes `sweep.csv`, `sweep.md` and `sweep.json` into `output_dir`; returns their paths. As
    `write_sweep_outputs`: all three atomically, moved into place once every one is complete.
    """
    os.makedirs(output_dir, exist_ok=True)
    files = {
        "csv": os.path.join(output_dir, CSV_FILE),
        "markdown": os.path.join(output_dir, MARKDOWN_FILE),
        "json": os.path.join(output_dir, JSON_FILE),
    }
    markdown = "# Threshold sweep without labels\n\n" + "\n\n".join(_header_lines(result))
    markdown += "\n\n## All thresholds\n\n" + markdown_table(_COLUMNS, _table_rows(result)) + "\n"
    with contextlib.ExitStack() as stack:
        temporary = {kind: stack.enter_context(atomic_path(path)) for kind, path in files.items()}
        with write_errors_named(files["csv"]):  # each names its own file, not the last opened
            with open(temporary["csv"], "w", newline="", encoding="utf-8") as csv_file:
                writer = csv.writer(csv_file)
                writer.writerow(_COLUMNS)
                writer.writerows(_table_rows(result))
        with write_errors_named(files["markdown"]):
            with open(temporary["markdown"], "w", encoding="utf-8") as markdown_file:
                markdown_file.write(markdown)
        with write_errors_named(files["json"]):
            with open(temporary["json"], "w", encoding="utf-8") as json_file:
                json.dump({**result.to_json(), "files": files}, json_file, indent=2)
                json_file.write("\n")
    return files
