import re

import pytest

from bench.runners.cli import main
from tests import FIXTURES_ROOT
from tests.sweep.trained_models import trained_archive

DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


@pytest.fixture(scope="module")
def text_archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "text")


def test_the_page_has_every_runner_and_peer_with_consistent_accuracies(text_archive, tmp_path):
    output = tmp_path / "runners.md"
    argv = ["--archive", f"tiny={text_archive}:{DATA}:{DATA}"]
    argv += ["--instances", "6", "--repeats", "1", "--threads", "1"]
    main(argv + ["--work-dir", str(tmp_path / "work"), "--output", str(output)])
    rows = {}
    for line in output.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = cells
    assert list(rows) == [
        "early_exit, torch",
        "early_exit, onnxruntime fp32",
        "early_exit, onnxruntime int8",
        "plain transformers (torch)",
        "ONNX Runtime fp32",
        "ONNX Runtime int8",
        "OpenVINO fp32",
    ]
    # The peers run the model's full path: in fp32 they predict what the model does at full depth.
    full_depth = rows["early_exit, torch"][1]
    for name in ("early_exit, onnxruntime fp32", "plain transformers (torch)", "ONNX Runtime fp32"):
        assert rows[name][1] == full_depth, name
    assert rows["OpenVINO fp32"][1] == full_depth
    for cells in rows.values():
        assert float(cells[5]) > 0 and float(cells[6]) > 0  # ms at batch 1 and 32
    assert "\n.venv/bin/python -m bench.runners --archive " in output.read_text()
