"""
The outputs of `allennlp sweep-thresholds` and `allennlp calibrate --max-accuracy-drop` on the
fixtures, pinned byte for byte: what each command prints and every file it writes (markdown, CSV,
JSON, the calibration report, the calibrated archive's configuration; the plot by its hash under
the matplotlib it was pinned with, else by being a PNG). A refactoring of `sweep/` or of the
calibration must leave them as they are.

The model is a committed archive (`test_fixtures/pinned_outputs/model.tar.gz`, the tiny text
configuration trained for two epochs), so no training noise reaches the numbers. Every run happens
in a temporary directory with relative paths, so no absolute path reaches the outputs; timing is
off (it is measured, so never the same twice).

To pin again after a change that is meant to change an output, run this file with
`EARLY_EXIT_PIN_OUTPUTS=1` and commit the new files under `test_fixtures/pinned_outputs/` with the
reason.
"""

import argparse
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Dict, List

import matplotlib
import pytest

from early_exit.commands.calibrate import Calibrate
from early_exit.commands.sweep_thresholds import SweepThresholds
from tests import FIXTURES_ROOT

PINNED = FIXTURES_ROOT / "pinned_outputs"
ARCHIVE = PINNED / "model.tar.gz"
INPUTS = {
    "data.tsv": FIXTURES_ROOT / "data" / "text_classification.tsv",
    "sentences.jsonl": FIXTURES_ROOT / "predictors" / "sentences.jsonl",
}
PIN = bool(os.environ.get("EARLY_EXIT_PIN_OUTPUTS"))
PNG_HEADER = b"\x89PNG\r\n\x1a\n"

SWEEPS = {
    "default_goal_and_budget": ["data.tsv", "--compute-budget", "0.6"],
    "explicit_thresholds_guaranteed": [
        *("data.tsv", "--thresholds", "0.4,0.6,0.9"),
        *("--max-accuracy-drop", "0.3", "--delta", "0.2"),
    ],
    "consistency_grid_step": [
        *("data.tsv", "--grid-step", "0.1", "--risk", "consistency"),
        *("--max-accuracy-drop", "0.3", "--delta", "0.2", "--full-table"),
    ],
    "all_policies": [
        "data.tsv",
        "--policy",
        "all",
        "--risk",
        "none",
        "--max-accuracy-drop",
        "0.05",
    ],
    "entropy_full_table": ["data.tsv", "--policy", "entropy", "--full-table"],
    "unlabelled": [
        *("sentences.jsonl", "--thresholds", "0.4,0.6,0.9"),
        *("--max-accuracy-drop", "0.3", "--delta", "0.2"),
    ],
}
CALIBRATIONS = {
    "calibrate_accuracy": ["--max-accuracy-drop", "0.3", "--delta", "0.2"],
    "calibrate_consistency": ["--max-accuracy-drop", "0.2", "--risk", "consistency"],
}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A directory holding the archive and the data under short relative names."""
    shutil.copy(ARCHIVE, tmp_path / "model.tar.gz")
    for name, source in INPUTS.items():
        shutil.copy(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(command, argv: List[str]):
    parser = argparse.ArgumentParser()
    command.add_subparser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _png_pin() -> str:
    return f"matplotlib {matplotlib.__version__}"


def _check(case: str, outputs: Dict[str, bytes]) -> None:
    """Compares `outputs` (file name -> bytes) with the pinned files of `case`, or pins them."""
    directory = PINNED / case
    if PIN:
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        for name, content in outputs.items():
            (directory / name).write_bytes(content)
        return
    assert directory.is_dir(), f"no pinned outputs for {case}: run with EARLY_EXIT_PIN_OUTPUTS=1"
    assert sorted(outputs) == sorted(path.name for path in directory.iterdir())
    for name, content in outputs.items():
        expected = (directory / name).read_bytes()
        if name.endswith(".png.sha256"):
            pinned_with, pinned_hash = expected.decode().rsplit(" ", 1)
            if pinned_with == _png_pin():  # another matplotlib may draw other bytes
                assert content.decode().rsplit(" ", 1)[1] == pinned_hash, f"{case}/{name}"
            continue
        assert content.decode() == expected.decode(), f"{case}/{name} changed"


def _files(directory: Path) -> Dict[str, bytes]:
    outputs: Dict[str, bytes] = {}
    for path in sorted(directory.iterdir()):
        content = path.read_bytes()
        if path.suffix == ".png":
            assert content[:8] == PNG_HEADER and len(content) > 10_000
            digest = hashlib.sha256(content).hexdigest()
            outputs[path.name + ".sha256"] = f"{_png_pin()} {digest}".encode()
        else:
            outputs[path.name] = content
    return outputs


@pytest.mark.parametrize("case", sorted(SWEEPS))
def test_sweep_thresholds_outputs_are_pinned(case, workdir, capsys):
    data, *options = SWEEPS[case]
    argv = ["sweep-thresholds", "model.tar.gz", data, "--output-dir", "out", "--no-timing"]
    _run(SweepThresholds(), argv + options)
    outputs = _files(workdir / "out")
    written = {"sweep.csv", "sweep.md", "sweep.json"}
    assert set(outputs) == written | ({"sweep.png.sha256"} if data == "data.tsv" else set())
    outputs["stdout.txt"] = capsys.readouterr().out.encode()
    _check(case, outputs)


@pytest.mark.parametrize("case", sorted(CALIBRATIONS))
def test_calibrate_with_a_guarantee_outputs_are_pinned(case, workdir, capsys):
    output = "out/model-calibrated.tar.gz"
    argv = ["calibrate", "model.tar.gz", "data.tsv", "--output-file", output]
    _run(Calibrate(), argv + CALIBRATIONS[case])
    assert sorted(path.name for path in (workdir / "out").iterdir()) == [
        "model-calibrated.calibration.json",
        "model-calibrated.tar.gz",
    ]
    outputs = {
        "calibration.json": (workdir / "out" / "model-calibrated.calibration.json").read_bytes(),
        "stdout.txt": capsys.readouterr().out.encode(),
    }
    with tarfile.open(workdir / output) as archive:
        outputs["archive_members.txt"] = "\n".join(sorted(archive.getnames())).encode()
        config = archive.extractfile("config.json").read()
    json.loads(config)
    outputs["archive_config.json"] = config
    _check(case, outputs)
