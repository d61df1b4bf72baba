import argparse
import hashlib
import json
import logging
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import List

import pytest
import torch
from allennlp.commands.train import train_model_from_file
from allennlp.models import load_archive

from early_exit.commands.calibrate import Calibrate, default_report_file
from tests import FIXTURES_ROOT, PROJECT_ROOT, run_allennlp

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
OTHER_MODEL_CONFIG = FIXTURES_ROOT / "calibration" / "basic_classifier.jsonnet"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(config: Path, serialization_dir: Path) -> Path:
    root = logging.getLogger()
    handlers, level, excepthook = root.handlers[:], root.level, sys.excepthook
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(PROJECT_ROOT)
            train_model_from_file(
                str(config), str(serialization_dir), overrides={"trainer.num_epochs": 1}
            )
    finally:  # `allennlp train` replaces the root logger's handlers and the excepthook
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = excepthook
    return serialization_dir / "model.tar.gz"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """An uncalibrated early-exit archive (every temperature 1)."""
    return _train(CONFIG, tmp_path_factory.mktemp("early_exit") / "run")


def _run_cli(arguments: List[str]) -> subprocess.CompletedProcess:
    return run_allennlp("calibrate", *arguments)


def _run_in_process(arguments: List[str]):
    parser = argparse.ArgumentParser()
    Calibrate().add_subparser(parser.add_subparsers())
    args = parser.parse_args(["calibrate", *arguments])
    return args.func(args)


def test_calibrate_writes_a_new_archive_with_the_reported_temperatures(archive, tmp_path):
    before = _sha256(archive)
    output = tmp_path / "calibrated" / "model-calibrated.tar.gz"
    result = _run_cli([str(archive), str(DATA), "--output-file", str(output), "--batch-size", "5"])
    assert result.returncode == 0, result.stderr[-5000:]
    assert _sha256(archive) == before  # the input archive is never modified

    report_file = tmp_path / "calibrated" / "model-calibrated.calibration.json"
    report = json.loads(report_file.read_text())
    temperatures = report["temperatures"]
    assert report["num_instances"] == 16
    assert [head["exit_layer"] for head in report["heads"]] == [0, 1, 3]
    assert all(temperature != 1.0 for temperature in temperatures)
    assert "temperature" in result.stdout and str(report_file) in result.stdout

    old, new = load_archive(str(archive)), load_archive(str(output))
    assert old.model.temperatures.tolist() == [1.0, 1.0, 1.0]
    assert new.model.temperatures.tolist() == temperatures
    assert new.config.as_dict()["model"]["temperatures"] == temperatures
    old_config = old.config.as_dict()
    new_config = new.config.as_dict()
    del new_config["model"]["temperatures"]
    # Where compute_budget starts: the compute of every threshold on the calibration data.
    curves = new_config["model"].pop("compute_curves")
    assert new.model.compute_curves == curves and old.model.compute_curves is None
    assert set(curves) == {"max_probability", "entropy"}
    for name, curve in curves.items():
        computes = [compute for _, compute in curve]
        assert all(0.25 <= compute <= 1.0 for compute in computes), name  # heads at 1/4..1
        assert computes == sorted(computes, reverse=True), name  # the grid: most compute first
    assert curves["max_probability"][0] == [1.0, 1.0]  # threshold 1.0: every layer
    assert new_config == old_config
    old_state, new_state = old.model.state_dict(), new.model.state_dict()
    assert old_state.keys() == new_state.keys()
    for name in old_state:
        if name != "temperatures":
            assert torch.equal(old_state[name], new_state[name]), name
    assert new.model.vocab.get_index_to_token_vocabulary("labels") == (
        old.model.vocab.get_index_to_token_vocabulary("labels")
    )
    with tarfile.open(archive) as old_tar, tarfile.open(output) as new_tar:
        assert sorted(old_tar.getnames()) == sorted(new_tar.getnames())

    # The new archive predicts with its temperatures.
    model = new.model
    instances = list(new.validation_dataset_reader.read(str(DATA)))[:3]
    model.run_all_heads = True
    for row in model.forward_on_instances(instances):
        head_logits = torch.as_tensor(row["head_logits"])  # (num_heads, num_labels)
        scaled = torch.softmax(head_logits / torch.tensor(temperatures).view(-1, 1), dim=-1)
        assert torch.allclose(torch.as_tensor(row["head_probs"]), scaled, atol=1e-6)


def test_another_model_type_is_a_one_line_error(tmp_path):
    other = _train(OTHER_MODEL_CONFIG, tmp_path / "basic")
    before = _sha256(other)
    output = tmp_path / "out.tar.gz"
    result = _run_cli([str(other), str(DATA), "--output-file", str(output)])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-5000:]
    assert "basic_classifier" in errors[0] and "early_exit_classifier" in errors[0]
    assert not output.exists()
    assert _sha256(other) == before


def test_missing_data_file_is_an_error(archive, tmp_path, capsys):
    output = tmp_path / "out.tar.gz"
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process([str(archive), str(tmp_path / "nothing.tsv"), "--output-file", str(output)])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: data file") and "does not exist" in error
    assert "\n" not in error
    assert not output.exists()


def test_missing_archive_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process(
            [str(tmp_path / "none.tar.gz"), str(DATA), "--output-file", str(tmp_path / "o.tar.gz")]
        )
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith("error: archive file")


@pytest.mark.parametrize(
    "archive_bytes, data, message",
    [
        (
            None,
            "positive\tgood\nneutral\tmeh\n",
            "{data} has label(s) the model does not know: "
            "neutral (first on line 2); it knows positive, negative",
        ),
        (None, "\n\n", "{data} holds no instances (it is empty or has only blank lines)"),
        (None, "directory", "{data}: a directory, not a data file"),
        (20000, None, "{archive}: not a readable model archive, truncated or corrupt"),
    ],
    ids=["unknown_label", "blank_data", "directory", "truncated_archive"],
)
def test_bad_data_and_archives_are_one_error_line(
    archive, tmp_path, capsys, archive_bytes, data, message
):
    data_file = tmp_path / "data.tsv"
    if data == "directory":
        data_file.mkdir()
    elif data is not None:
        data_file.write_text(data)
    else:
        data_file = DATA
    if archive_bytes:
        truncated = tmp_path / "truncated.tar.gz"
        truncated.write_bytes(archive.read_bytes()[:archive_bytes])
        archive = truncated
    output = tmp_path / "out.tar.gz"
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process([str(archive), str(data_file), "--output-file", str(output)])
    assert exit_info.value.code == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1].startswith("error: " + message.format(data=data_file, archive=archive))
    assert [line for line in errors if line.startswith("error: ")] == errors[-1:]
    assert not output.exists()


def test_refuses_to_overwrite_the_input_archive(archive, capsys):
    before = _sha256(archive)
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process([str(archive), str(DATA), "--output-file", str(archive)])
    assert exit_info.value.code == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert _sha256(archive) == before


def test_in_process_run_returns_the_report(archive, tmp_path, capsys):
    output = tmp_path / "new.tar.gz"
    report_file = tmp_path / "report.json"
    report = _run_in_process(
        [str(archive), str(DATA), "--output-file", str(output), "--report-file", str(report_file)]
    )
    assert json.loads(report_file.read_text()) == report
    assert load_archive(str(output)).model.temperatures.tolist() == report["temperatures"]
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["head", "layer", "temperature"]


@pytest.mark.parametrize(
    "output, report",
    [
        ("out/model.tar.gz", "out/model.calibration.json"),
        ("model.tgz", "model.calibration.json"),
        ("model", "model.calibration.json"),
    ],
)
def test_default_report_file(output, report):
    assert default_report_file(output) == report


def _hidden(directory: Path) -> List[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


def _refused(arguments: List[str], capsys) -> str:
    """Runs calibrate in this process, expects exit status 1 and returns its one error line."""
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process(arguments)
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    return errors[0]


@pytest.fixture
def no_loading(monkeypatch):
    """Makes loading the archive fail the test: the checks must come before any work."""

    def fail(*args, **kwargs):
        raise AssertionError("the archive was loaded before the paths were checked")

    monkeypatch.setattr("early_exit.commands.calibrate.load_early_exit_archive", fail)


class TestOutputPaths:
    def test_the_data_file_is_never_an_output(self, archive, tmp_path, capsys, no_loading):
        data = tmp_path / "data.tsv"
        data.write_bytes(DATA.read_bytes())
        for arguments in (
            ["--output-file", str(tmp_path / "." / "data.tsv")],
            ["--output-file", str(tmp_path / "new.tar.gz"), "--report-file", str(data)],
        ):
            error = _refused([str(archive), str(data), *arguments], capsys)
            assert "is the data file" in error and "refusing to overwrite" in error
        assert data.read_bytes() == DATA.read_bytes()
        assert not (tmp_path / "new.tar.gz").exists()

    def test_the_report_is_not_the_archive(self, archive, tmp_path, capsys, no_loading):
        output = str(tmp_path / "out.tar.gz")
        error = _refused(
            [str(archive), str(DATA), "--output-file", output, "--report-file", output], capsys
        )
        assert "report file" in error and "is also the output file" in error
        assert not (tmp_path / "out.tar.gz").exists()

    @pytest.mark.parametrize(
        "output, message",
        [(".", "is a directory"), ("data.tsv/out.tar.gz", "is a file, not a folder")],
    )
    def test_an_unwritable_output_is_refused_before_loading(
        self, archive, tmp_path, capsys, no_loading, output, message
    ):
        (tmp_path / "data.tsv").write_bytes(DATA.read_bytes())
        error = _refused(
            [str(archive), str(tmp_path / "data.tsv"), "--output-file", str(tmp_path / output)],
            capsys,
        )
        assert message in error

    @pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt])
    def test_a_failure_while_writing_leaves_no_partial_output(
        self, archive, tmp_path, monkeypatch, capsys, failure
    ):
        before = _sha256(archive)
        output = tmp_path / "calibrated.tar.gz"
        output.write_bytes(b"an earlier calibrated archive")
        added = []

        def add(self, name, *args, **kwargs):
            if added:  # fails after the first member: a half-written archive
                raise failure
            added.append(name)
            return original_add(self, name, *args, **kwargs)

        original_add = tarfile.TarFile.add
        monkeypatch.setattr(tarfile.TarFile, "add", add)
        arguments = [str(archive), str(DATA), "--output-file", str(output)]
        if isinstance(failure, OSError):
            assert "No space left" in _refused(arguments, capsys)
        else:
            with pytest.raises(KeyboardInterrupt):
                _run_in_process(arguments)
        assert added  # it failed while writing the archive
        assert output.read_bytes() == b"an earlier calibrated archive"
        assert not (tmp_path / "calibrated.calibration.json").exists()
        assert _hidden(tmp_path) == []  # no temporary left behind
        assert _sha256(archive) == before


def test_command_line_refuses_the_data_file_as_output(archive, tmp_path):
    data = tmp_path / "data.tsv"
    data.write_bytes(DATA.read_bytes())
    result = _run_cli([str(archive), str(data), "--output-file", str(data)])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "is the data file" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert data.read_bytes() == DATA.read_bytes()


def test_a_certified_exit_policy_is_stored_and_predict_runs_at_it(archive, tmp_path, capsys):
    output = tmp_path / "guaranteed.tar.gz"
    settings = ["--max-accuracy-drop", "0.3", "--risk", "consistency", "--delta", "0.2"]
    report = _run_in_process([str(archive), str(DATA), "--output-file", str(output), *settings])
    printed = capsys.readouterr().out
    record = report["exit_policy"]
    guarantee = record["guarantee"]
    # 16 instances: temperatures on one seeded half, the threshold certified on the other.
    assert report["num_instances"] == 8 and guarantee["num_instances"] == 8
    assert (guarantee["risk"], guarantee["epsilon"], guarantee["delta"]) == (
        "consistency",
        0.3,
        0.2,
    )
    assert record["policy"] == guarantee["policy"]
    threshold = record["policy"]["threshold"]
    assert threshold < 1.0  # 0.7 ** 8 <= 0.2: a threshold that exits early can be certified
    assert f"exit policy: threshold {threshold:g}: with probability 0.8" in printed
    with tarfile.open(output) as tar:
        assert json.load(tar.extractfile("exit_policy_guarantee.json")) == record
    assert load_archive(str(output)).model.exit_policy.to_json() == record["policy"]

    predictions = tmp_path / "predictions.jsonl"
    sentences = FIXTURES_ROOT / "predictors" / "sentences.jsonl"
    result = run_allennlp(
        "predict", output, sentences, "--silent", "--output-file", predictions, "--batch-size", 1
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    early = [line for line in lines if line["exit_layer"] < 3]
    assert all(line["confidence"] >= threshold for line in early)
    assert early  # the stored threshold, not the default 1.0, decided


@pytest.mark.parametrize(
    "settings, message",
    [
        (["--max-accuracy-drop", "0"], r"--max-accuracy-drop must be in \(0, 1\)"),
        (["--max-accuracy-drop", "1.5"], r"--max-accuracy-drop must be in \(0, 1\)"),
        (["--max-accuracy-drop", "0.01", "--delta", "1"], r"--delta must be in \(0, 1\)"),
        # Without --max-accuracy-drop they would do nothing.
        (["--risk", "consistency"], "--risk applies only with --max-accuracy-drop"),
        (["--delta", "0.1", "--risk", "accuracy"], "--risk and --delta apply only with --max-acc"),
    ],
)
def test_bad_guarantee_settings_are_one_error_line(archive, tmp_path, capsys, settings, message):
    output = tmp_path / "out.tar.gz"
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process([str(archive), str(DATA), "--output-file", str(output), *settings])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert re.search(message, error), error
    assert not output.exists()


def _runner_override(precision: str, cache: Path) -> str:
    runner = {"type": "onnxruntime", "precision": precision, "cache_dir": str(cache)}
    return json.dumps({"model.layer_runner": runner})


def test_an_int8_runner_gets_temperatures_of_its_own_in_the_archive(archive, tmp_path, capsys):
    plain, int8 = tmp_path / "plain.tar.gz", tmp_path / "int8.tar.gz"
    _run_in_process([str(archive), str(DATA), "--output-file", str(plain)])
    override = _run_in_process  # the int8 refit is made on the calibrated archive
    report = override(
        [
            str(plain),
            str(DATA),
            "--output-file",
            str(int8),
            "-o",
            _runner_override("int8", tmp_path),
        ]
    )
    assert "temperatures of layer runner onnxruntime int8" in capsys.readouterr().out
    fp32_values = load_archive(str(plain)).model.temperatures.tolist()
    stored = load_archive(str(int8)).config.as_dict()["model"]["runner_temperatures"]
    assert stored == {"onnxruntime_int8": report["temperatures"]}
    assert report["temperatures"] != fp32_values  # refit on the quantized layers' logits

    # The weights keep the float32 temperatures; loading with the runner serves its own.
    served = load_archive(str(int8), overrides=_runner_override("int8", tmp_path)).model
    assert served.temperatures.tolist() == fp32_values
    assert served.serving_temperatures.tolist() == report["temperatures"]
    assert load_archive(str(int8)).model.serving_temperatures.tolist() == fp32_values


def test_an_fp32_runner_refits_the_same_temperatures(archive, tmp_path):
    by_torch, by_onnx = tmp_path / "torch.tar.gz", tmp_path / "onnx.tar.gz"
    torch_report = _run_in_process([str(archive), str(DATA), "--output-file", str(by_torch)])
    onnx_report = _run_in_process(
        [
            str(archive),
            str(DATA),
            "--output-file",
            str(by_onnx),
            "-o",
            _runner_override("fp32", tmp_path),
        ]
    )
    assert onnx_report["temperatures"] == pytest.approx(torch_report["temperatures"], abs=1e-3)
    config = load_archive(str(by_onnx)).config.as_dict()["model"]
    assert "runner_temperatures" not in config
    assert config["temperatures"] == onnx_report["temperatures"]


def test_a_full_disk_names_the_file_it_could_not_write(archive, tmp_path, capsys):
    # /dev/full answers every write with ENOSPC, as a full disk does.
    report = tmp_path / "report.json"
    with pytest.raises(SystemExit) as exit_info:
        _run_in_process(
            [str(archive), str(DATA), "--output-file", "/dev/full", "--report-file", str(report)]
        )
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "error: cannot write /dev/full: No space left on device"
    assert not report.exists()  # both outputs or neither
