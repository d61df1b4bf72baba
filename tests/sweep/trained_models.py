"""
Tiny trained archives shared by the predictor, sweep and evaluation tests. Each kind is trained once
per test run, also under pytest-xdist: the workers share one directory and a file lock.
"""

import json
import os
from pathlib import Path

import torch
from allennlp.data import Vocabulary
from allennlp.models.archival import archive_model
from allennlp.models.basic_classifier import BasicClassifier
from allennlp.modules.seq2vec_encoders import BagOfEmbeddingsEncoder
from allennlp.modules.text_field_embedders import BasicTextFieldEmbedder
from allennlp.modules.token_embedders import Embedding
from filelock import FileLock

from tests import FIXTURES_ROOT, PROJECT_ROOT

TEXT_CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
NLI_CONFIG = FIXTURES_ROOT / "predictors" / "nli_experiment.jsonnet"
TEXT_DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"
TEXT_JSONL = FIXTURES_ROOT / "data" / "text_classification.jsonl"
NLI_DATA = FIXTURES_ROOT / "data" / "nli.tsv"
NLI_JSONL = FIXTURES_ROOT / "data" / "nli.jsonl"

_CONFIGS = {"text": (TEXT_CONFIG, '{"trainer.num_epochs": 2}'), "nli": (NLI_CONFIG, "")}


def shared_dir(tmp_path_factory) -> Path:
    """One directory per test run, shared by every xdist worker (guard what it holds with a lock)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every xdist worker's base temp dir sits in one directory per test run.
        return tmp_path_factory.getbasetemp().parent
    return tmp_path_factory.getbasetemp()


def trained_archive(tmp_path_factory, kind: str) -> Path:
    """The `model.tar.gz` of the tiny `kind` model ("text" or "nli"), trained on first use."""
    from allennlp.commands.train import train_model_from_file

    config, overrides = _CONFIGS[kind]
    root = shared_dir(tmp_path_factory)
    serialization_dir = root / f"early_exit_{kind}_model"
    archive = serialization_dir / "model.tar.gz"
    with FileLock(str(root / f"early_exit_{kind}_model.lock")):
        if not archive.exists():
            cwd = os.getcwd()
            os.chdir(PROJECT_ROOT)  # the configs name their files relative to the project root
            try:
                train_model_from_file(config, serialization_dir, overrides=overrides, force=True)
            finally:
                os.chdir(cwd)
    return archive


def other_model_archive(directory: Path) -> Path:
    """An archive of allennlp's `basic_classifier`: a model that is not an early-exit model."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(["good", "bad"], "tokens")
    vocab.add_tokens_to_namespace(["positive", "negative"], "labels")
    embedder = BasicTextFieldEmbedder(
        {"tokens": Embedding(embedding_dim=2, num_embeddings=vocab.get_vocab_size("tokens"))}
    )
    model = BasicClassifier(vocab, embedder, BagOfEmbeddingsEncoder(embedding_dim=2))
    config = {
        "dataset_reader": {
            "type": "text_classification_json",
            "tokenizer": {"type": "whitespace"},
        },
        "train_data_path": str(TEXT_JSONL),
        "model": {
            "type": "basic_classifier",
            "text_field_embedder": {
                "token_embedders": {"tokens": {"type": "embedding", "embedding_dim": 2}}
            },
            "seq2vec_encoder": {"type": "boe", "embedding_dim": 2},
        },
        "data_loader": {"batch_size": 2},
        "trainer": {"num_epochs": 1, "optimizer": "adam"},
    }
    (directory / "config.json").write_text(json.dumps(config))
    vocab.save_to_files(str(directory / "vocabulary"))
    torch.save(model.state_dict(), directory / "best.th")
    archive_model(directory, weights="best.th")
    return directory / "model.tar.gz"


def mixed_thresholds(
    head_probs: torch.Tensor, count: int = 3, margin: float = 1e-4, policy_type=None
) -> list:
    """
    Up to `count` thresholds of `policy_type` (`MaxProbabilityPolicy` by default, or
    `EntropyPolicy`) at which instances exit at different heads, each at least `margin` away from
    every instance's score (maximum probability, or normalised entropy) at every head that can exit
    early, so float noise between batch layouts cannot move an exit (midpoints of the widest gaps
    between scores).
    """
    from early_exit.modules.exit_policies import EntropyPolicy, MaxProbabilityPolicy
    from early_exit.modules.exit_policies.entropy import normalised_entropy

    policy_type = policy_type or MaxProbabilityPolicy
    early = head_probs[:, :-1]  # (num_instances, num_heads - 1, num_labels)
    if policy_type is EntropyPolicy:
        scores = normalised_entropy(early.reshape(-1, early.shape[-1]))
    else:
        scores = early.max(dim=-1).values.flatten()
    scores = scores.double().unique().sort().values
    candidates = []
    for low, high in zip(scores.tolist(), scores[1:].tolist()):
        threshold = (low + high) / 2
        if high - low < 2 * margin or not 0.0 < threshold < 1.0:
            continue
        if len(set(policy_type(threshold).exit_heads(head_probs).tolist())) > 1:
            candidates.append((high - low, threshold))
    return sorted(threshold for _, threshold in sorted(candidates, reverse=True)[:count])
