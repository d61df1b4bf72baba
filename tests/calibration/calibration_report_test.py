import json

import pytest

from early_exit.calibration.calibration_report import (
    calibration_report,
    format_calibration_table,
    write_calibration_report,
)
from early_exit.calibration.temperature_scaling import TemperatureFit

FITS = [
    TemperatureFit(
        1.5, 0.9, 0.7, 0.2, 0.05, 40, "only 40 instance(s), the temperature is unreliable"
    ),
    TemperatureFit(0.75, 0.6, 0.5, 0.1, 0.04, 40, None),
]


def test_report_has_every_head_and_the_temperatures(tmp_path):
    path = tmp_path / "calibration.json"
    written = write_calibration_report(
        path, FITS, [0, 3], data="dev.tsv", temperature_range=[0.05, 20]
    )
    report = json.loads(path.read_text())
    assert report == written
    assert report["temperatures"] == [1.5, 0.75]
    assert report["num_instances"] == 40
    assert report["data"] == "dev.tsv"
    assert report["temperature_range"] == [0.05, 20.0]
    assert [head["exit_layer"] for head in report["heads"]] == [0, 3]
    first = report["heads"][0]
    assert first == {
        "head": 0,
        "exit_layer": 0,
        "temperature": 1.5,
        "nll_before": 0.9,
        "nll_after": 0.7,
        "ece_before": 0.2,
        "ece_after": 0.05,
        "num_instances": 40,
        "warning": "only 40 instance(s), the temperature is unreliable",
    }
    assert report["heads"][1]["warning"] is None


def test_report_needs_one_layer_per_head():
    with pytest.raises(ValueError, match="exit layers"):
        calibration_report(FITS, [0])


def test_table_has_one_row_per_head_and_the_warnings():
    lines = format_calibration_table(FITS, [0, 3]).splitlines()
    assert lines[0].split()[:3] == ["head", "layer", "temperature"]
    assert lines[1].split() == ["0", "0", "1.5000", "0.9000", "0.7000", "0.2000", "0.0500", "40"]
    assert lines[2].split()[:3] == ["1", "3", "0.7500"]
    assert lines[3] == (
        "warning, head 0 (layer 0): only 40 instance(s), the temperature is unreliable"
    )
    assert len(lines) == 4
