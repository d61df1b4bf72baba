"""
DeeBERT's two training stages with the repository's configs, on the MiniLM encoder and a few
sentences: the second stage starts the encoder and the last head from the first stage's weights
and leaves them untouched, and trains the other heads.
"""

import json
import os
import subprocess
import sys

import torch

from tests import FIXTURES_ROOT, PROJECT_ROOT

MINILM = PROJECT_ROOT / "models" / "all-MiniLM-L6-v2"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


def _train(stage: int, cwd, serialization_dir: str) -> None:
    overrides = {
        "train_data_path": str(DATA),
        "validation_data_path": str(DATA),
        "model.transformer_model": str(MINILM),
        "dataset_reader.transformer_model": str(MINILM),
        "data_loader.batch_sampler.batch_size": 8,
    }
    config = PROJECT_ROOT / "training_config" / f"sst2_minilm_deebert_stage{stage}.jsonnet"
    result = subprocess.run(
        [sys.executable, "-m", "allennlp", "train", str(config), "-s", serialization_dir]
        + ["-o", json.dumps(overrides), "--include-package", "early_exit"],
        cwd=cwd,  # the second stage reads runs/sst2_minilm_deebert_stage1/best.th from here
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_second_stage_trains_only_the_early_heads_on_the_first_stages_encoder(tmp_path):
    _train(1, tmp_path, "runs/sst2_minilm_deebert_stage1")
    _train(2, tmp_path, "runs/stage2")
    first = torch.load(tmp_path / "runs/sst2_minilm_deebert_stage1/best.th")
    second = torch.load(tmp_path / "runs/stage2/best.th")
    assert first.keys() == second.keys()
    frozen = [key for key in first if key.startswith(("encoder.", "heads.5."))]
    trained = [key for key in first if key.startswith(("heads.0.", "heads.1.", "heads.4."))]
    assert frozen and trained
    assert all(torch.equal(first[key], second[key]) for key in frozen)
    assert all(not torch.equal(first[key], second[key]) for key in trained if "weight" in key)
    assert (tmp_path / "runs/stage2/model.tar.gz").exists()
