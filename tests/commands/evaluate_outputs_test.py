import json
import shutil

import pytest
from allennlp.common.checks import ConfigurationError

from early_exit.commands.evaluate_outputs import checked_evaluation, evaluation_data_paths
from tests import FIXTURES_ROOT, run_allennlp
from tests.sweep.trained_models import TEXT_DATA

ARCHIVE = FIXTURES_ROOT / "pinned_outputs" / "model.tar.gz"


def _evaluation(calls, fail: bool = False):
    """
    A stand-in for allennlp's `evaluate_from_archive` (same parameters) that writes its outputs.
    """

    def evaluate_from_archive(
        archive_file,
        input_file,
        metrics_output_file=None,
        predictions_output_file=None,
        batch_size=None,
        cmd_overrides="",
        cuda_device=-1,
        embedding_sources_mapping=None,
        extend_vocab=False,
        weights_file=None,
        file_friendly_logging=False,
        batch_weight_key=None,
        auto_names="NONE",
    ):
        calls.append(dict(metrics=metrics_output_file, predictions=predictions_output_file))
        for path in (metrics_output_file or "").split(",") if metrics_output_file else []:
            with open(path, "w") as out:
                out.write('{"accuracy": ')
                if fail:
                    raise KeyboardInterrupt
                out.write("1.0}")
        for path in predictions_output_file.split(",") if predictions_output_file else []:
            with open(path, "w") as out:
                out.write("{}\n")
        return {"accuracy": 1.0}

    return checked_evaluation(evaluate_from_archive)


def test_allennlp_evaluate_refuses_to_write_over_its_data_and_writes_its_metrics(tmp_path):
    """The command as a user runs it, on the committed tiny archive."""
    data = tmp_path / "data.tsv"
    shutil.copy(TEXT_DATA, data)
    refused = run_allennlp("evaluate", ARCHIVE, data, "--output-file", data)
    assert refused.returncode == 1
    error_lines = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and f"is the data file {data}; refusing" in error_lines[0]
    assert "Traceback" not in refused.stderr
    assert data.read_bytes() == TEXT_DATA.read_bytes()

    metrics = tmp_path / "metrics.json"
    evaluated = run_allennlp("evaluate", ARCHIVE, data, "--output-file", metrics)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert 0.0 <= json.loads(metrics.read_text())["accuracy"] <= 1.0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.tsv", "metrics.json"]


@pytest.mark.parametrize("option", ["metrics_output_file", "predictions_output_file"])
def test_an_output_that_is_the_data_is_refused_before_any_work(tmp_path, option):
    data = tmp_path / "data.tsv"
    data.write_text("positive\tgood\n")
    calls = []
    with pytest.raises(ConfigurationError, match=f"is the data file {data}; refusing"):
        _evaluation(calls)(tmp_path / "model.tar.gz", str(data), **{option: str(data)})
    assert calls == [] and data.read_text() == "positive\tgood\n"


def test_an_output_that_is_the_archive_or_the_other_output_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"archive")
    with pytest.raises(ConfigurationError, match="is the archive"):
        _evaluation([])(archive, "data.tsv", metrics_output_file=str(archive))
    out = str(tmp_path / "out.json")
    with pytest.raises(ConfigurationError, match="is also the metrics output file"):
        _evaluation([])(archive, "data.tsv", metrics_output_file=out, predictions_output_file=out)
    assert archive.read_bytes() == b"archive"


def test_one_output_per_data_file_or_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="names 1 file.* for 2 data file"):
        _evaluation([])("m.tar.gz", "a.tsv,b.tsv", metrics_output_file=str(tmp_path / "m.json"))


def test_outputs_are_written_whole_and_an_interrupted_run_leaves_the_old_file(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text("old")
    calls = []
    with pytest.raises(KeyboardInterrupt):
        _evaluation(calls, fail=True)("m.tar.gz", "data.tsv", metrics_output_file=str(metrics))
    assert metrics.read_text() == "old"
    assert calls[0]["metrics"] != str(metrics)  # written beside it, then moved
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]
    _evaluation([])("m.tar.gz", "data.tsv", metrics_output_file=str(metrics))
    assert json.loads(metrics.read_text()) == {"accuracy": 1.0}


def test_auto_names_are_checked_and_written_as_allennlp_names_them(tmp_path):
    data = tmp_path / "dev.tsv"
    calls = []
    _evaluation(calls)(
        "m.tar.gz",
        str(data),
        metrics_output_file="ignored",
        predictions_output_file="x",
        auto_names="ALL",
    )
    assert (tmp_path / "dev.outputs").exists() and (tmp_path / "dev.preds").exists()
    clash = tmp_path / "dev.preds"
    with pytest.raises(ConfigurationError, match="is the data file"):
        _evaluation([])("m.tar.gz", str(clash), predictions_output_file="x", auto_names="PREDS")


def test_data_paths_are_split_as_allennlp_splits_them():
    assert evaluation_data_paths("a.tsv,b.tsv") == ["a.tsv", "b.tsv"]
    assert evaluation_data_paths('"a.tsv", {"x": 1}') == ["a.tsv", {"x": 1}]


@pytest.mark.parametrize("batch_size", [0, -2])
def test_a_batch_size_below_one_is_refused(batch_size):
    """allennlp would take 0 as "the configuration's batch size" without a word."""
    calls = []
    with pytest.raises(
        ConfigurationError, match=f"--batch-size must be at least 1, got {batch_size}"
    ):
        _evaluation(calls)("m.tar.gz", "data.tsv", batch_size=batch_size)
    assert calls == []
