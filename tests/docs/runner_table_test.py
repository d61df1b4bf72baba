"""
The README's layer-runner table (step 6) quotes the SST-2 rows of the table `python -m bench.runners`
generates in docs/performance.md: every figure it shows is that table's, so a regenerated table
that the README does not follow fails here, naming the cell.
"""

import json
import re
from typing import Dict, List

from tests import PROJECT_ROOT

README_SECTION = "### 6. Pick a layer runner"
GENERATED_SECTION = "## Layer runners against the peers"
# The README's rows that are not a runner, by how their first cell starts: the generated label.
PEERS = {"the full model in ONNX Runtime int8": "ONNX Runtime int8"}


def _table(lines: List[str]) -> List[Dict[str, str]]:
    """The first Markdown table in `lines`: one dict per row, by column header."""
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row)) for row in body]


def _section(path, heading: str, subheading: str = "") -> List[str]:
    lines = path.read_text().splitlines()
    start = lines.index(heading)
    if subheading:
        start = lines.index(subheading, start)
    return lines[start + 1 :]


def _generated_label(first_cell: str) -> str:
    for start, label in PEERS.items():
        if first_cell.startswith(start):
            return label
    config = json.loads(re.match(r"`(\{.*?\})`", first_cell).group(1))
    if config["type"] == "torch":
        return "early_exit, torch"
    return f"early_exit, {config['type']} {config.get('precision', 'fp32')}"


def test_the_readme_runner_table_quotes_the_generated_sst2_rows():
    readme = _table(_section(PROJECT_ROOT / "README.md", README_SECTION))
    generated = {
        row["model"]: row
        for row in _table(
            _section(PROJECT_ROOT / "docs" / "performance.md", GENERATED_SECTION, "### sst2")
        )
    }
    assert len(readme) >= 4 and "early_exit, torch" in generated
    for row in readme:
        label = _generated_label(row["`layer_runner`"])
        measured = generated.get(label)
        shown = (row["ms, batch 1"], row["ms, batch 32"], row["accuracy (full depth)"])
        if measured is None:
            assert shown == ("-", "-", "-"), f"README shows figures for {label}, not measured"
            continue
        accuracy = measured["accuracy"]
        if measured["accuracy, full depth"] != accuracy or "(" in shown[2]:
            accuracy = f"{accuracy} ({measured['accuracy, full depth']})"
        expected = (measured["ms, batch 1"], measured["ms, batch 32"], accuracy)
        assert shown == expected, (
            f"README step 6, row {label}: {shown}, but docs/performance.md's generated SST-2 "
            f"table says {expected}: copy its figures into the README"
        )
