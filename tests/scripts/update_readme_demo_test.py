"""`make docs`' writer refuses a demo output that is not finished, before touching docs/demo.md."""

import subprocess
import sys

from scripts.results.settings import ROOT

SCRIPT = ROOT / "scripts" / "update_readme_demo.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True
    )


def test_an_unfinished_demo_output_is_one_error_line_and_leaves_the_demo_page_alone(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("{}")
    page = (ROOT / "docs" / "demo.md").read_bytes()
    result = _run(str(tmp_path), "60")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path} is not a finished `make demo` output")
    assert "model/calibration.json" in last and "sweep/sweep.json" not in last
    assert (ROOT / "docs" / "demo.md").read_bytes() == page


def test_missing_arguments_print_the_usage_as_one_error_line():
    result = _run()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: usage: ")
