"""
The start-up hook (`early_exit_startup`): in an environment made by `make install`, plain `allennlp`
finds this package's subcommands in any folder and prints no dependency's warning and tries no
download; the `early-exit` console script does the same in any environment the package is in.
"""

import importlib.metadata
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import List

import pytest

import early_exit  # noqa: F401  (registers what training the tiny model needs)
from tests import PROJECT_ROOT
from tests.sweep.trained_models import TEXT_DATA, TEXT_JSONL, trained_archive

BIN = Path(sys.executable).parent
# What a dependency printed before the hook: torchvision's and fairscale's warnings, nltk's downloads.
NOISE = re.compile(r"Warning|warn\(|nltk_data|Error loading|urlopen|Downloading")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return trained_archive(tmp_path_factory, "text")


def _run(program: str, arguments: List[str], cwd: Path) -> subprocess.CompletedProcess:
    script = BIN / program
    assert script.exists(), f"{script} is missing: run `make install` again"
    return subprocess.run(
        [str(script), *map(str, arguments)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _output(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_make_install_put_the_hook_where_python_starts():
    pth = Path(sysconfig.get_paths()["purelib"]) / "early_exit_startup.pth"
    assert pth.exists(), f"{pth} is missing: run `make install` again"
    assert "early_exit_startup" in sys.modules
    # installed by pip from the package's wheel, so that `pip uninstall` removes it
    installed = {str(file) for file in importlib.metadata.files("early_exit") or []}
    assert pth.name in installed, f"{pth} is not the package's: run `make install` again"


def test_calibrate_and_sweep_thresholds_are_found_from_any_folder(archive, tmp_path):
    assert not (tmp_path / ".allennlp_plugins").exists()
    calibrated = tmp_path / "calibrated.tar.gz"
    output = _output(
        _run("allennlp", ["calibrate", archive, TEXT_DATA, "--output-file", calibrated], tmp_path)
    )
    assert calibrated.exists()
    assert not NOISE.search(output), output
    output = _output(
        _run(
            "early-exit",
            [
                "sweep-thresholds",
                calibrated,
                TEXT_DATA,
                "--output-dir",
                "sweep",
                "--grid-step",
                0.5,
            ],
            tmp_path,
        )
    )
    assert (tmp_path / "sweep").is_dir() and any((tmp_path / "sweep").iterdir())
    assert not NOISE.search(output), output


def test_predict_prints_no_dependency_warning_and_tries_no_download(archive, tmp_path):
    output = _output(
        _run(
            "allennlp",
            ["predict", archive, TEXT_JSONL, "--output-file", tmp_path / "out.jsonl", "--silent"],
            PROJECT_ROOT,
        )
    )
    assert (tmp_path / "out.jsonl").read_text().count("\n") == TEXT_JSONL.read_text().count("\n")
    assert not NOISE.search(output), output
    assert not NOISE.search(_output(_run("allennlp", ["--help"], PROJECT_ROOT)))
