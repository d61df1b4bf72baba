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


def _allennlp(directory: Path, *args: str, package: bool) -> subprocess.CompletedProcess:
    """`allennlp ARGS` run in `directory` (outside the repository, so its plugin file is not read)."""
    include = ["--include-package", "early_exit"] if package else []
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "allennlp", *args, *include],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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
