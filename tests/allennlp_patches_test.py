"""
The patches of `early_exit/allennlp_patches.py` act on this package's models, readers, predictors
and archives only: allennlp's own `basic_classifier`, on allennlp's own reader, trains, evaluates
and predicts the same with and without `--include-package early_exit`.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict

import torch

from tests import FIXTURES_ROOT, PROJECT_ROOT

CONFIG = {
    "dataset_reader": {"type": "text_classification_json", "tokenizer": {"type": "whitespace"}},
    "train_data_path": "data.jsonl",
    "validation_data_path": "data.jsonl",
    "model": {
        "type": "basic_classifier",
        "text_field_embedder": {
            "token_embedders": {"tokens": {"type": "embedding", "embedding_dim": 8}}
        },
        "seq2vec_encoder": {"type": "boe", "embedding_dim": 8},
    },
    "data_loader": {"batch_size": 4, "shuffle": True},
    "trainer": {"optimizer": {"type": "adam", "lr": 0.01}, "num_epochs": 3, "cuda_device": -1},
}


def _python(directory: Path, *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` run in `directory` (outside the repository, so its plugin file is not read)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=directory, env=env, capture_output=True, text=True, timeout=600
    )


def _allennlp(directory: Path, *args: str, package: bool) -> subprocess.CompletedProcess:
    include = ["--include-package", "early_exit"] if package else []
    result = _python(directory, "-m", "allennlp", *args, *include)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _run_everything(directory: Path, package: bool) -> Dict[str, object]:
    directory.mkdir()
    lines = (FIXTURES_ROOT / "data" / "text_classification.tsv").read_text().splitlines()
    with open(directory / "data.jsonl", "w") as data, open(directory / "in.jsonl", "w") as inputs:
        for line in lines:
            label, text = line.split("\t")
            data.write(json.dumps({"text": text, "label": label}) + "\n")
            inputs.write(json.dumps({"sentence": text}) + "\n")  # the text_classifier predictor's
    (directory / "config.json").write_text(json.dumps(CONFIG))
    _allennlp(directory, "train", "config.json", "-s", "run", package=package)
    _allennlp(
        directory,
        "evaluate",
        "run/model.tar.gz",
        "data.jsonl",
        "--output-file",
        "metrics.json",
        package=package,
    )
    _allennlp(
        directory,
        *("predict", "run/model.tar.gz", "in.jsonl", "--output-file", "predictions.jsonl"),
        *("--batch-size", "3", "--silent"),
        package=package,
    )
    with tarfile.open(directory / "run" / "model.tar.gz") as archive:
        members = sorted(archive.getnames())
        config = json.load(archive.extractfile("config.json"))
    return {
        "members": members,
        "config": config,
        "weights": torch.load(directory / "run" / "best.th"),
        "metrics": json.loads((directory / "metrics.json").read_text()),
        "predictions": (directory / "predictions.jsonl").read_text().splitlines(),
    }


def test_basic_classifier_behaves_the_same_with_and_without_the_package(tmp_path):
    without = _run_everything(tmp_path / "without", package=False)
    with_package = _run_everything(tmp_path / "with", package=True)
    assert with_package["members"] == without["members"]  # no encoder files carried
    assert with_package["config"] == without["config"]
    assert with_package["weights"].keys() == without["weights"].keys()
    for name, value in without["weights"].items():
        assert torch.equal(with_package["weights"][name], value), name
    assert with_package["metrics"] == without["metrics"]
    assert with_package["predictions"] == without["predictions"]
    assert len(without["predictions"]) == 16


# What `import early_exit` rebinds in allennlp, from Python: only the names whose new behaviour is
# limited to this package's archives, readers and predictor (see `allennlp_patches.py`).
PACKAGE_SCOPED = [
    "allennlp.models.archival:archive_model",
    "allennlp.models:archive_model",
    "allennlp.commands.train:archive_model",
    "allennlp.data.data_loaders:MultiProcessDataLoader.index_with",
    "allennlp.data.data_loaders:MultiProcessDataLoader.iter_instances",
    "allennlp.common.params:with_overrides",
    "allennlp.commands.predict:_get_predictor",
    "allennlp.commands.predict:_PredictManager",
    "allennlp.commands.evaluate:evaluate_from_archive",
    # an early-exit model is told its archive's path (other models load unchanged)
    "allennlp.models.archival:load_archive",
    "allennlp.models:load_archive",
    "allennlp.commands.evaluate:load_archive",
    "allennlp.commands.predict:load_archive",
    "allennlp.predictors.predictor:load_archive",
]
# The names whose patches change only errors, of every archive and configuration: rebound under
# the `allennlp` command line only.
COMMAND_LINE_ONLY = [
    "allennlp.common.params:Params.from_file",
    "allennlp.commands.train:train_model_from_file",
    "allennlp.common.util:int_to_device",
    "allennlp.common.logging:prepare_global_logging",
]
_REBOUND = """
import importlib, json, sys
def look_up(name):
    module, path = name.split(":")
    value = importlib.import_module(module)
    for part in path.split("."):
        value = getattr(value, part)
    return getattr(value, "__func__", value)
names = json.loads(sys.argv[1])
before = {name: look_up(name) for name in names}
import early_exit
print(json.dumps([name for name in names if look_up(name) is not before[name]]))
"""


def test_an_import_from_python_rebinds_only_the_names_scoped_to_this_package(tmp_path):
    result = _python(tmp_path, "-c", _REBOUND, json.dumps(PACKAGE_SCOPED + COMMAND_LINE_ONLY))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == PACKAGE_SCOPED


def test_the_error_patches_act_under_the_command_line(tmp_path):
    command = ["train", "missing.jsonnet", "-s", "out", "--include-package", "early_exit"]
    result = _python(tmp_path, "-m", "allennlp", *command)
    assert result.returncode == 1
    assert "error: missing.jsonnet: configuration file not found" in result.stderr.splitlines()
