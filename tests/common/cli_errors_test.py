"""
Every user error ends `allennlp train` and `allennlp evaluate` with exit status 1 and one
`error: ...` line, also after allennlp's logging has installed its own exception hook;
`EARLY_EXIT_TRACEBACK=1` keeps the traceback.
"""

import json
import logging
import sys
import traceback

import pytest
from allennlp.common import logging as allennlp_logging
from allennlp.common.checks import ConfigurationError
from allennlp.data.data_loaders.multiprocess_data_loader import WorkerError
from torch.multiprocessing import ProcessRaisedException

from early_exit import allennlp_patches
from early_exit.common import cli_errors
from early_exit.dataset_readers import DataFormatError, NoInstancesError
from tests import run_allennlp
from tests.sweep.trained_models import TEXT_CONFIG, TEXT_DATA, trained_archive

TINY_BERT_PATH = "test_fixtures/tiny_bert"  # as the config names it


def _error_line(result) -> str:
    """The one `error: ` line of a failed command (and that it failed as a user error should)."""
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Uncaught exception" not in result.stderr
    return errors[0]


@pytest.fixture()
def allennlp_cli(monkeypatch):
    """This process as the `allennlp` command, with the hooks it may install restored afterwards."""
    monkeypatch.setattr(sys, "argv", ["/usr/bin/allennlp", "train"])
    monkeypatch.delenv("EARLY_EXIT_TRACEBACK", raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(
        allennlp_logging, "prepare_global_logging", allennlp_logging.prepare_global_logging
    )


def test_hook_survives_allennlp_logging_and_passes_other_errors_on(allennlp_cli, capsys):
    seen = []

    def allennlp_hook(exc_type, exc, traceback):
        seen.append(exc_type)

    def prepare_global_logging(serialization_dir, rank=0, world_size=1):
        sys.excepthook = allennlp_hook  # what allennlp's does

    allennlp_logging.prepare_global_logging = prepare_global_logging
    allennlp_patches.install_cli_error_hook()
    allennlp_patches.install_cli_error_hook()  # idempotent
    allennlp_logging.prepare_global_logging("unused")
    assert getattr(sys.excepthook, "_early_exit", False)

    sys.excepthook(ConfigurationError, ConfigurationError("exit_layers\nbad"), None)
    sys.excepthook(RuntimeError, RuntimeError("a bug"), None)
    assert seen == [RuntimeError]
    assert capsys.readouterr().err.splitlines()[0] == "error: exit_layers bad"


def _traceback_of(error: BaseException) -> str:
    try:
        raise error
    except BaseException:
        return traceback.format_exc()


@pytest.mark.parametrize(
    "error, message",
    [
        (DataFormatError("data.tsv", 1, "a header line"), "data.tsv, line 1: a header line"),
        (ConfigurationError("exit_layers [0, 9] out of range"), "exit_layers [0, 9] out of range"),
        (KeyError("a bug"), None),
        (ConfigurationError("two\nlines"), None),  # the last line alone is not the message
    ],
)
def test_user_errors_of_worker_processes_are_recognised(error, message):
    """Distributed training's workers and data loader workers send their tracebacks as text."""
    text = _traceback_of(error)
    distributed = ProcessRaisedException(f"\n\n-- Process 1 terminated with:\n{text}", 1, 4242)
    loader = WorkerError(repr(error), [text])
    for wrapped in (distributed, loader):
        assert cli_errors.user_error_in_another_process(wrapped) == message
    assert cli_errors.user_error_in_another_process(error) is None


def test_traceback_variable_keeps_allennlp_behaviour(allennlp_cli, monkeypatch):
    monkeypatch.setenv("EARLY_EXIT_TRACEBACK", "1")
    before = sys.excepthook, allennlp_logging.prepare_global_logging
    allennlp_patches.install_cli_error_hook()
    assert (sys.excepthook, allennlp_logging.prepare_global_logging) == before


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad_data")
    rows = TEXT_DATA.read_text()
    files = {"header": "label\ttext\n" + rows, "unknown": rows + "neutral\tnot sure\n"}
    for name, content in files.items():
        (directory / f"{name}.tsv").write_text(content)
    return directory


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"model.exit_layers": [0, 9]}, "exit_layers [0, 9] are out of range: {bert} has 4"),
        ({"train_data_path": "{data}/header.tsv"}, "{data}/header.tsv, line 1: a header line"),
        ({"model.loss_weights": [0, 0, 0]}, "loss_weights are all 0 ([0.0, 0.0, 0.0])"),
    ],
    ids=["configuration", "header", "zero_loss_weights"],
)
def test_train_ends_with_one_error_line(bad_data, tmp_path, overrides, expected):
    serialization_dir = tmp_path / "model"
    overrides = json.dumps(overrides).replace("{data}", str(bad_data))
    result = run_allennlp("train", TEXT_CONFIG, "-s", serialization_dir, "-o", overrides)
    error = _error_line(result)
    assert error.startswith("error: " + expected.format(data=bad_data, bert=TINY_BERT_PATH))
    # the serialization directory keeps the traceback
    assert "Traceback" in (serialization_dir / "out.log").read_text()
    assert not (serialization_dir / "model.tar.gz").exists()


def test_train_names_an_override_that_sets_nothing(tmp_path):
    overrides = json.dumps({"trainer.optimiser.lr": 0.1})
    result = run_allennlp("train", TEXT_CONFIG, "-s", tmp_path / "model", "-o", overrides)
    assert _error_line(result) == (
        f'error: {TEXT_CONFIG}: the override "trainer.optimiser.lr" sets nothing: the '
        'configuration has no "trainer.optimiser"'
    )
    assert not (tmp_path / "model").exists()  # refused before any work


def test_train_traceback_variable_shows_the_traceback(bad_data, tmp_path, monkeypatch):
    monkeypatch.setenv("EARLY_EXIT_TRACEBACK", "1")  # the subprocess inherits it
    overrides = json.dumps({"train_data_path": str(bad_data / "header.tsv")})
    result = run_allennlp("train", TEXT_CONFIG, "-s", tmp_path / "model", "-o", overrides)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "DataFormatError" in result.stderr and "line 1: a header line" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "text")


def test_evaluate_unknown_label_is_one_error_line(archive, bad_data):
    data = bad_data / "unknown.tsv"
    error = _error_line(run_allennlp("evaluate", archive, data))
    assert error == (
        f"error: {data} has label(s) the model does not know: neutral (first on line 17); "
        "it knows positive, negative"
    )


def test_evaluate_unknown_label_with_a_lazy_loader_is_one_error_line(archive, bad_data):
    """
    A loader with `max_instances_in_memory` indexes as it reads: the label is named all the same.
    """
    data = bad_data / "unknown.tsv"
    overrides = json.dumps({"data_loader.max_instances_in_memory": 4, "data_loader.batch_size": 4})
    error = _error_line(run_allennlp("evaluate", archive, data, "-o", overrides))
    assert error.startswith(
        f"error: {data} has label(s) the model does not know: neutral (first on"
    )


def test_predict_with_the_dataset_reader_names_an_unknown_label(archive, bad_data, tmp_path):
    data, output = bad_data / "unknown.tsv", tmp_path / "out.jsonl"
    for batch_size in ("1", "4"):
        result = run_allennlp(
            "predict",
            archive,
            data,
            "--use-dataset-reader",
            "--output-file",
            output,
            "--batch-size",
            batch_size,
            "--silent",
        )
        assert _error_line(result) == (
            f"error: {data} has label(s) the model does not know: neutral (first on line 17); "
            "it knows positive, negative"
        )


def test_evaluate_truncated_archive_is_one_error_line(archive, tmp_path):
    truncated = tmp_path / "model.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:20000])
    error = _error_line(run_allennlp("evaluate", truncated, TEXT_DATA))
    assert error.startswith(f"error: {truncated}: not a readable model archive, truncated or")


def test_evaluate_override_of_the_wrong_type_is_one_error_line(archive):
    overrides = json.dumps({"model.confidence_threshold": "abc"})
    error = _error_line(run_allennlp("evaluate", archive, TEXT_DATA, "-o", overrides))
    assert error.startswith(f"error: {archive} with the overrides {overrides}: ")
    assert "confidence_threshold" in error and "numeric" in error


def test_evaluate_output_file_that_is_the_data_is_refused(archive, tmp_path):
    data = tmp_path / "data.tsv"
    data.write_bytes(TEXT_DATA.read_bytes())
    error = _error_line(run_allennlp("evaluate", archive, data, "--output-file", data))
    assert (
        error
        == f"error: the metrics output file {data} is the data file {data}; refusing to overwrite an input"
    )
    assert data.read_bytes() == TEXT_DATA.read_bytes()


def test_train_refuses_a_file_without_instances(tmp_path, monkeypatch):
    """Not an untrained model archived after 0 batches."""
    from allennlp.commands.train import train_model_from_file

    # training replaces the root logger's handlers and level, and the exception hook
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    blank = tmp_path / "blank.tsv"
    blank.write_text("\n \n")
    overrides = json.dumps({"train_data_path": str(blank)})
    with pytest.raises(NoInstancesError, match=f"{blank} holds no instances"):
        train_model_from_file(TEXT_CONFIG, tmp_path / "model", overrides=overrides)
    assert not (tmp_path / "model" / "model.tar.gz").exists()
