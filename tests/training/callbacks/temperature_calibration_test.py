import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
from allennlp.commands.train import train_model_from_file
from allennlp.common.checks import ConfigurationError
from allennlp.data.data_loaders import SimpleDataLoader
from allennlp.models import load_archive
from allennlp.training.util import evaluate

from early_exit.models.head_outputs import collect_head_outputs
from early_exit.calibration.temperature_scaling import negative_log_likelihood
from early_exit.dataset_readers import NoInstancesError, UnknownLabelError
from early_exit.training.callbacks import TemperatureCalibrationCallback
from tests import FIXTURES_ROOT, PROJECT_ROOT, run_allennlp
from tests.training.callbacks.interrupting_callback import MARKER_NAME

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
CALIBRATION_DATA = FIXTURES_ROOT / "calibration" / "calibration_data.tsv"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"
CALLBACK = {"type": "early_exit_temperature_calibration"}


@contextmanager
def _restored_logging():
    """`allennlp train` replaces the root logger's handlers and the excepthook; put them back."""
    root = logging.getLogger()
    handlers, level, excepthook = root.handlers[:], root.level, sys.excepthook
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = excepthook


def _train(serialization_dir: Path, overrides: Dict[str, Any], recover: bool = False):
    with pytest.MonkeyPatch.context() as patch, _restored_logging():
        patch.chdir(PROJECT_ROOT)  # the fixture configuration has paths relative to the repository
        return train_model_from_file(
            str(CONFIG), str(serialization_dir), overrides=overrides, recover=recover
        )


def _report(serialization_dir: Path) -> Dict[str, Any]:
    return json.loads((serialization_dir / "calibration.json").read_text())


def _archived_temperatures(serialization_dir: Path):
    return load_archive(str(serialization_dir / "model.tar.gz")).model.temperatures.tolist()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """
    A training run with the callback that stops early: relative_compute is always 1 without early
    exit, so it never improves, training stops after the second epoch (patience 1) and the first
    epoch's weights are the best ones, loaded back from best.th before the callback runs.
    """
    serialization_dir = tmp_path_factory.mktemp("calibrated") / "run"
    overrides = {
        "trainer.callbacks": [CALLBACK],
        "trainer.num_epochs": 4,
        "trainer.patience": 1,
        "trainer.validation_metric": "+relative_compute",
    }
    model = _train(serialization_dir, overrides)
    return serialization_dir, model


def test_archive_carries_exactly_the_reported_temperatures(trained):
    serialization_dir, model = trained
    report = _report(serialization_dir)
    temperatures = _archived_temperatures(serialization_dir)
    assert temperatures == report["temperatures"]
    assert all(temperature != 1.0 for temperature in temperatures)
    assert model.temperatures.tolist() == temperatures
    assert torch.load(serialization_dir / "best.th")["temperatures"].tolist() == temperatures
    # Where compute_budget starts: the dev compute curves, in the archive with the temperatures.
    curves = load_archive(str(serialization_dir / "model.tar.gz")).model.compute_curves
    assert curves == model.compute_curves and set(curves) == {"max_probability", "entropy"}
    assert curves["max_probability"][0] == [1.0, 1.0]

    assert report["num_instances"] == 16
    assert "validation data" in report["data"]
    assert [head["exit_layer"] for head in report["heads"]] == [0, 1, 3]
    assert [head["temperature"] for head in report["heads"]] == report["temperatures"]
    for head in report["heads"]:
        assert head["num_instances"] == 16
        assert head["nll_after"] <= head["nll_before"]
        assert 0.0 <= head["ece_after"] <= 1.0

    # best.th may be a hard link to a checkpoint: rewriting it must not change the checkpoint.
    checkpoints = sorted(serialization_dir.glob("model_state_e*.th"))
    assert len(checkpoints) == 2
    for checkpoint in checkpoints:
        assert torch.load(checkpoint)["temperatures"].tolist() == [1.0, 1.0, 1.0]


def test_early_stopping_calibrates_the_best_not_the_last_weights(trained):
    serialization_dir, _ = trained
    metrics = json.loads((serialization_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == 0
    assert metrics["epoch"] == 1

    archive = load_archive(str(serialization_dir / "model.tar.gz"))
    model = archive.model
    archived = model.state_dict()
    first_epoch = torch.load(serialization_dir / "model_state_e1_b0.th")
    last_epoch = torch.load(serialization_dir / "model_state_e2_b0.th")
    assert any(not torch.equal(first_epoch[name], last_epoch[name]) for name in first_epoch)
    for name, value in first_epoch.items():
        if name != "temperatures":
            assert torch.equal(archived[name], value), name

    # The loaded archive takes its exit decisions on temperature-scaled probabilities.
    reader = archive.validation_dataset_reader
    instances = list(reader.read(str(FIXTURES_ROOT / "data" / "text_classification.tsv")))
    model.run_all_heads = True
    temperatures = model.temperatures.view(-1, 1)  # (num_heads, 1)
    for row in model.forward_on_instances(instances[:4]):
        expected = torch.softmax(torch.as_tensor(row["head_logits"]) / temperatures, dim=-1)
        assert torch.allclose(torch.as_tensor(row["head_probs"]), expected, atol=1e-6)

    # The report's NLL before calibration is that of the best weights at T = 1.
    report = _report(serialization_dir)
    outputs = collect_head_outputs(model, instances)
    for head, entry in enumerate(report["heads"]):
        nll = negative_log_likelihood(outputs.logits[:, head], outputs.labels)
        assert nll == pytest.approx(entry["nll_before"], abs=1e-5)


def test_calibration_data_path_is_read_with_the_validation_reader(tmp_path):
    serialization_dir = tmp_path / "run"
    callback = dict(CALLBACK, calibration_data_path=str(CALIBRATION_DATA), batch_size=4)
    _train(serialization_dir, {"trainer.callbacks": [callback], "trainer.num_epochs": 1})
    report = _report(serialization_dir)
    assert report["num_instances"] == 11
    assert report["data"] == str(CALIBRATION_DATA)
    assert _archived_temperatures(serialization_dir) == report["temperatures"]


def test_missing_calibration_data_fails_before_training(tmp_path):
    callback = dict(CALLBACK, calibration_data_path=str(tmp_path / "missing.tsv"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        _train(tmp_path / "run", {"trainer.callbacks": [callback]})
    assert not (tmp_path / "run" / "model_state_e1_b0.th").exists()


@pytest.mark.parametrize(
    "content, error, message",
    [
        ("positive\tgood\nneutral\tmeh\n", UnknownLabelError, "neutral \\(first on line 2\\)"),
        (" \n", NoInstancesError, "holds no instances"),
    ],
)
def test_calibration_data_the_model_cannot_use_fails_before_training(
    tmp_path, content, error, message
):
    data = tmp_path / "calibration.tsv"
    data.write_text(content)
    callback = dict(CALLBACK, calibration_data_path=str(data))
    with pytest.raises(error, match=f"{data}.*{message}"):
        _train(tmp_path / "run", {"trainer.callbacks": [callback]})
    assert not (tmp_path / "run" / "model_state_e1_b0.th").exists()


def test_no_validation_data_and_no_calibration_data_fails_before_training(tmp_path):
    overrides = {"trainer.callbacks": [CALLBACK], "validation_data_path": None}
    with pytest.raises(ConfigurationError, match="validation"):
        _train(tmp_path / "run", overrides)


def test_bad_temperature_range_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="temperature range"):
        TemperatureCalibrationCallback(str(tmp_path), min_temperature=2.0)


def test_nothing_happens_when_training_failed(tmp_path, caplog):
    callback = TemperatureCalibrationCallback(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        # A trainer the callback must not touch: any attribute access would fail.
        callback.on_end(trainer=object(), metrics=None, epoch=None, is_primary=True)
    assert "not calibrated" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_distributed_training_gives_every_worker_the_same_temperatures(tmp_path):
    # Two CPU workers; 11 calibration instances are sharded 6 / 5, and with batches of 5 the
    # workers run 2 and 1 batches unless the shorter shard is padded.
    serialization_dir = tmp_path / "run"
    callback = dict(CALLBACK, calibration_data_path=str(CALIBRATION_DATA), batch_size=5)
    overrides = {
        "distributed": {"cuda_devices": [-1, -1]},
        "trainer.num_epochs": 1,
        "trainer.callbacks": [callback],
    }
    result = run_allennlp("train", CONFIG, "-s", serialization_dir, "-o", json.dumps(overrides))
    assert result.returncode == 0, result.stderr[-5000:]
    report = _report(serialization_dir)
    assert report["num_instances"] == 11
    temperatures = _archived_temperatures(serialization_dir)
    assert temperatures == report["temperatures"]
    assert all(temperature != 1.0 for temperature in temperatures)
    for worker in (0, 1):
        log = (serialization_dir / f"out_worker{worker}.log").read_text()
        assert f"Exit head temperatures set to {temperatures}." in log
        # Calibrated once: only the primary fits for the record and writes the report.
        assert ("Calibrated the exit heads on 11 instances" in log) == (worker == 0)

    # The archive evaluates (as `allennlp evaluate` does, in this process).
    archive = load_archive(str(serialization_dir / "model.tar.gz"))
    reader = archive.validation_dataset_reader
    loader = SimpleDataLoader.from_dataset_reader(reader, str(DATA), batch_size=4)
    loader.index_with(archive.model.vocab)
    metrics = evaluate(archive.model, loader)
    assert 0.0 < metrics["accuracy"] <= 1.0
    assert metrics["relative_compute"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_recover_after_an_interruption_mid_epoch_ends_with_a_calibrated_archive(
    tmp_path, signal_name
):
    serialization_dir = tmp_path / "run"
    interrupt = {"type": "early_exit_test_interrupt_once", "signal_name": signal_name}
    overrides = {"trainer.callbacks": [CALLBACK, interrupt]}  # two epochs of 4 batches
    include = ["--include-package", "tests.training.callbacks.interrupting_callback"]
    result = run_allennlp(
        "train", CONFIG, "-s", serialization_dir, "-o", json.dumps(overrides), *include
    )
    assert result.returncode != 0
    assert (serialization_dir / MARKER_NAME).exists()  # it stopped in the second epoch
    assert (serialization_dir / "model_state_e1_b0.th").exists()
    assert not (serialization_dir / "model_state_e2_b0.th").exists()
    assert not (serialization_dir / "calibration.json").exists()
    if signal_name == "SIGINT":  # allennlp archives the best weights so far, uncalibrated
        assert _archived_temperatures(serialization_dir) == [1.0, 1.0, 1.0]

    _train(serialization_dir, overrides, recover=True)
    metrics = json.loads((serialization_dir / "metrics.json").read_text())
    assert metrics["epoch"] == 1
    report = _report(serialization_dir)
    assert report["num_instances"] == 16
    temperatures = _archived_temperatures(serialization_dir)
    assert temperatures == report["temperatures"]
    assert all(temperature != 1.0 for temperature in temperatures)


@pytest.mark.slow
def test_two_runs_with_the_same_seeds_give_the_same_metrics_weights_and_temperatures(tmp_path):
    seeds = {"random_seed": 5, "numpy_seed": 6, "pytorch_seed": 7}
    overrides = {"trainer.callbacks": [CALLBACK], "trainer.num_epochs": 1, **seeds}
    runs = [tmp_path / "first", tmp_path / "second"]
    for serialization_dir in runs:
        _train(serialization_dir, overrides)
    timing = ("time", "duration", "memory", "start_epoch")

    def outcome(serialization_dir: Path):
        metrics = json.loads((serialization_dir / "metrics.json").read_text())
        metrics = {k: v for k, v in metrics.items() if not any(word in k for word in timing)}
        return metrics, _report(serialization_dir), torch.load(serialization_dir / "best.th")

    (metrics, report, weights), (other_metrics, other_report, other_weights) = map(outcome, runs)
    assert "training_loss" in metrics and metrics == other_metrics
    assert report["temperatures"] == other_report["temperatures"]
    assert report == other_report
    assert weights.keys() == other_weights.keys()
    for name, value in weights.items():
        assert torch.equal(value, other_weights[name]), name
    # A third seed gives other weights: the seeds are what made the runs equal.
    _train(tmp_path / "third", dict(overrides, pytorch_seed=8))
    third = torch.load(tmp_path / "third" / "best.th")
    assert any(not torch.equal(value, third[name]) for name, value in weights.items())


def test_an_int8_runner_is_calibrated_twice_into_the_archive(tmp_path):
    serialization_dir = tmp_path / "run"
    runner = {"type": "onnxruntime", "precision": "int8"}
    overrides = {
        "trainer.callbacks": [CALLBACK],
        "trainer.num_epochs": 1,
        "model.layer_runner": runner,
    }
    _train(serialization_dir, overrides)
    fp32 = _report(serialization_dir)["temperatures"]
    assert _archived_temperatures(serialization_dir) == fp32  # the weights': float32 layers
    archive = load_archive(str(serialization_dir / "model.tar.gz"))
    int8 = archive.config.as_dict()["model"]["runner_temperatures"]["onnxruntime_int8"]
    assert len(int8) == 3 and int8 != fp32
    assert archive.model.serving_temperatures.tolist() == int8  # loaded with its runner
