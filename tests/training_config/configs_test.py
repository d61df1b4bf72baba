"""Every config in training_config/ builds (reader, data loader, model) and runs a batch on tiny data
with the tiny BERT swapped in, and the paper configs carry the paper's settings."""

import copy
import json
from pathlib import Path

import pytest
import torch
from allennlp.common import Params
from allennlp.data import DataLoader, DatasetReader, Vocabulary
from allennlp.models import Model

import early_exit  # noqa: F401  (registers the readers and the model)
from tests import FIXTURES_ROOT, PROJECT_ROOT, TINY_BERT

CONFIG_DIR = PROJECT_ROOT / "training_config"
CONFIGS = sorted(CONFIG_DIR.glob("*.jsonnet"))
DATASETS = ("ag_news", "imdb", "sst2", "snli", "mnli")
FIXTURE_DATA = {
    "early_exit_text_classification": FIXTURES_ROOT / "data" / "text_classification.tsv",
    "early_exit_nli": FIXTURES_ROOT / "data" / "nli.tsv",
}


# Configs of other papers' training recipes on the MiniLM setup: their per-head loss weights.
RECIPES = {
    "_pabee": [(layer + 1) / 21 for layer in range(6)],  # PABEE: weighted by depth
    "_deebert_stage1": [0.0] * 5 + [1.0],  # DeeBERT: the encoder and the last head first,
    "_deebert_stage2": [1.0] * 5 + [0.0],  # then the other heads on the frozen encoder
}


def _load(config: Path) -> dict:
    return Params.from_file(str(config)).as_dict(quiet=True)


def test_every_dataset_has_every_setup():
    names = {config.stem for config in CONFIGS}
    for dataset in DATASETS:
        for setup in (
            "bert_large",
            "bert_base",
            "bert_large_baseline",
            "bert_base_baseline",
            "minilm",
        ):
            assert f"{dataset}_{setup}" in names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_config_carries_the_intended_setup(config):
    params = _load(config)
    model = params["model"]
    assert model["type"] == "early_exit_classifier"
    assert params["dataset_reader"]["transformer_model"] == model["transformer_model"]
    expected = {
        "bert_large": ("bert-large-uncased", [0, 4, 12, 23]),
        "bert_large_baseline": ("bert-large-uncased", [23]),
        "bert_base": ("bert-base-uncased", [0, 3, 5, 11]),
        "bert_base_baseline": ("bert-base-uncased", [11]),
        "minilm": ("models/all-MiniLM-L6-v2", [0, 1, 2, 3, 4, 5]),
    }
    dataset = next(name for name in DATASETS if config.stem.startswith(name + "_"))
    setup = config.stem[len(dataset) + 1 :]
    recipe = next((recipe for recipe in RECIPES if setup.endswith(recipe)), None)
    if recipe is not None:  # another paper's recipe on a setup above
        setup = setup[: -len(recipe)]
        assert model["loss_weights"] == RECIPES[recipe]
    name, layers = expected[setup]
    assert model["transformer_model"] == name
    assert model["exit_layers"] == layers
    assert model["dropout"] == 0.1
    trainer = params["trainer"]
    assert trainer["optimizer"]["type"] == "huggingface_adamw"
    assert trainer["validation_metric"] == "+accuracy"
    assert {"type": "early_exit_temperature_calibration"} in trainer["callbacks"]
    if setup != "minilm" and recipe is None:
        assert trainer["optimizer"]["lr"] in (2e-5, 3e-5, 5e-5)
        assert trainer["num_epochs"] == 2


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_config_builds_and_runs_on_tiny_data(config, tmp_path):
    params = _load(config)
    reader_params = params["dataset_reader"]
    reader_params["transformer_model"] = TINY_BERT
    reader_params["max_length"] = 64
    data = str(FIXTURE_DATA[reader_params["type"]])
    model_params = params["model"]
    model_params["transformer_model"] = TINY_BERT
    model_params["exit_layers"] = [3] if len(model_params["exit_layers"]) == 1 else [0, 1, 3]
    if "loss_weights" in model_params:  # one per head of the tiny model
        model_params["loss_weights"] = model_params["loss_weights"][
            -len(model_params["exit_layers"]) :
        ]
    model_params.pop("initializer", None)  # a first stage's weights: tested in deebert_test.py

    reader = DatasetReader.from_params(Params(copy.deepcopy(reader_params)))
    loader = DataLoader.from_params(
        Params(copy.deepcopy(params["data_loader"])), reader=reader, data_path=data
    )
    vocab = Vocabulary.from_instances(loader.iter_instances())
    loader.index_with(vocab)
    model = Model.from_params(vocab=vocab, params=Params(copy.deepcopy(model_params)))
    batch = next(iter(loader))
    model.train()
    output = model(**batch)
    assert torch.isfinite(output["loss"])
    output["loss"].backward()
    # The data paths are overridable and point at the converter's layout by default.
    assert params["train_data_path"].endswith("/train.tsv")
    assert params["validation_data_path"].endswith("/dev.tsv")
    json.dumps(params)  # the whole config is plain JSON (no string-encoded lists)
