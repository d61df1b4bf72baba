"""
Where the exported-graph runners keep their graphs: beside the archive the model was loaded from
(a second load, a second `allennlp predict`, exports nothing), rebuilt when a weight changes, in
the user's cache when the archive's folder cannot be written, in the one folder given by
`cache_dir` when there is one, and shared between the runners that read the same graph.
"""

import json
import os
import shutil

import pytest
import torch
from allennlp.predictors import Predictor

from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.modules.layer_runners.graph_cache import BESIDE_ARCHIVE, beside_archive
from early_exit.modules.layer_runners.openvino_runner import COMPILED_FOLDER
from tests import run_allennlp
from tests.sweep.trained_models import TEXT_JSONL, trained_archive

LOGGER = "early_exit.modules.layer_runners"
SENTENCES = [{"sentence": "a fine film"}, {"sentence": "dull and far too long to sit through"}]


@pytest.fixture
def archive(tmp_path_factory, tmp_path, monkeypatch):
    """A private copy of the tiny trained archive, and a user cache of this test's own."""
    monkeypatch.setenv("EARLY_EXIT_CACHE", str(tmp_path / "user_cache"))
    copied = tmp_path / "run" / "model.tar.gz"
    copied.parent.mkdir()
    shutil.copy(trained_archive(tmp_path_factory, "text"), copied)
    return copied


def _predict(archive_file, runner, caplog, change=None):
    """
    Loads `archive_file` (`change`s its model), predicts two sentences with `runner`; returns the
    runners' log lines.
    """
    archive = load_early_exit_archive(archive_file)
    if change is not None:
        change(archive.model)
    archive.model.layer_runner = runner
    caplog.clear()
    with caplog.at_level("DEBUG", logger=LOGGER):
        Predictor.from_archive(archive, "early_exit_classifier").predict_batch_json(SENTENCES)
    return [record.getMessage() for record in caplog.records if record.name.startswith(LOGGER)]


def _graphs(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".onnx"))


def test_a_second_load_of_the_archive_exports_nothing(archive, caplog):
    runner = {"type": "onnxruntime", "precision": "int8"}
    first = _predict(archive, runner, caplog)
    beside = archive.parent / BESIDE_ARCHIVE
    graphs = _graphs(beside)
    assert len(graphs) == 4  # one per layer of the tiny BERT
    assert len(first) == 1 and "exported 4 layer graph(s)" in first[0] and str(beside) in first[0]
    assert not os.path.exists(os.environ["EARLY_EXIT_CACHE"])  # nothing in the user cache
    mtimes = {name: os.stat(beside / name).st_mtime_ns for name in graphs}

    again = _predict(archive, runner, caplog)
    assert len(again) == 1 and "4 layer graph(s) reused from" in again[0], again
    assert "(no export)" in again[0] and "exported" not in again[0]
    assert {name: os.stat(beside / name).st_mtime_ns for name in graphs} == mtimes


def test_a_changed_weight_rebuilds_that_layers_graph(archive, caplog):
    runner = {"type": "onnxruntime", "precision": "fp32"}
    _predict(archive, runner, caplog)
    beside = archive.parent / BESIDE_ARCHIVE
    before = set(_graphs(beside))

    def change(model):
        with torch.no_grad():
            model.encoder.layers[2].output.dense.weight.mul_(1.5)

    lines = _predict(archive, runner, caplog, change)
    after = set(_graphs(beside))
    assert len(after - before) == 1 and before <= after
    assert len(lines) == 1 and "exported 1 layer graph(s)" in lines[0] and "(3 reused)" in lines[0]


def test_an_archive_folder_that_cannot_be_written_falls_back_to_the_user_cache(archive, caplog):
    (archive.parent / BESIDE_ARCHIVE).write_text("a file where the folder would go")
    lines = _predict(archive, {"type": "onnxruntime", "precision": "fp32"}, caplog)
    user = os.path.join(os.environ["EARLY_EXIT_CACHE"], "layer_runners")
    assert len(_graphs(user)) == 4
    assert any("cannot write its graphs to" in line and "trying " + user in line for line in lines)
    assert "WARNING" not in caplog.text  # still exported once: no warning
    assert "reused" in _predict(archive, {"type": "onnxruntime", "precision": "fp32"}, caplog)[0]


def test_an_explicit_cache_dir_wins(archive, caplog, tmp_path):
    chosen = tmp_path / "chosen"
    _predict(archive, {"type": "onnxruntime", "cache_dir": str(chosen)}, caplog)
    assert len(_graphs(chosen)) == 4
    assert not (archive.parent / BESIDE_ARCHIVE).exists()


def test_openvino_reads_the_graphs_onnxruntime_exported_and_caches_its_compilation(archive, caplog):
    _predict(archive, {"type": "onnxruntime", "precision": "fp32"}, caplog)
    beside = archive.parent / BESIDE_ARCHIVE
    graphs = _graphs(beside)
    lines = _predict(archive, {"type": "openvino"}, caplog)
    assert len(lines) == 1 and "4 layer graph(s) reused" in lines[0], lines
    assert _graphs(beside) == graphs
    assert os.listdir(beside / COMPILED_FOLDER)  # OpenVINO's compiled graphs, for the next load


def test_a_second_allennlp_predict_exports_nothing(archive, tmp_path):
    runner = json.dumps({"layer_runner": {"type": "onnxruntime", "precision": "int8"}})
    stderr = []
    for run in range(2):
        output = tmp_path / f"out{run}.jsonl"
        result = run_allennlp(
            "predict",
            archive,
            TEXT_JSONL,
            "--predictor-args",
            runner,
            "--output-file",
            output,
            "--silent",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        stderr.append(result.stderr)
    lines = [
        [line for line in text.splitlines() if "layer_runner onnxruntime int8:" in line]
        for text in stderr
    ]
    assert len(lines[0]) == 1 and "exported 4 layer graph(s)" in lines[0][0], lines
    assert len(lines[1]) == 1 and "4 layer graph(s) reused" in lines[1][0], lines
    assert (tmp_path / "out0.jsonl").read_text() == (tmp_path / "out1.jsonl").read_text()


def test_beside_an_archive_file_or_inside_an_extracted_archive(tmp_path):
    (tmp_path / "run" / "extracted").mkdir(parents=True)
    archive_file = tmp_path / "run" / "model.tar.gz"
    assert beside_archive(str(archive_file)) == str(tmp_path / "run" / BESIDE_ARCHIVE)
    extracted = tmp_path / "run" / "extracted"
    assert beside_archive(str(extracted)) == str(extracted / BESIDE_ARCHIVE)
