"""
Nested overrides of this package's blocks merge like their dot-syntax spelling; others are
untouched.
"""

import json

import pytest
from allennlp.common import Params
from allennlp.common import params as allennlp_params

from early_exit.allennlp_patches import install_nested_override_merge
from early_exit.common.overrides import merge_package_blocks


def with_overrides(original, overrides):
    """
    allennlp's function as `Params.from_file` calls it (wrapped once `early_exit` is imported).
    """
    return allennlp_params.with_overrides(original, overrides)


CONFIG = {
    "dataset_reader": {"type": "early_exit_text_classification", "max_length": 128},
    "model": {
        "type": "early_exit_classifier",
        "transformer_model": "bert-base-uncased",
        "exit_layers": [0, 3],
        "confidence_threshold": 1.0,
        "extra": {"a": 1, "b": 2},
    },
    "trainer": {"optimizer": {"type": "adam", "lr": 0.1}, "num_epochs": 2},
}


def test_nested_override_of_the_model_merges_into_the_block():
    merged = with_overrides(CONFIG, {"model": {"confidence_threshold": 0.8}})
    assert merged["model"] == dict(CONFIG["model"], confidence_threshold=0.8)
    assert merged["trainer"] == CONFIG["trainer"]


def test_nested_override_equals_dot_syntax_at_every_depth():
    nested = {"model": {"exit_layers": [1], "extra": {"b": 5}}, "dataset_reader": {"max_length": 9}}
    dotted = {"model.exit_layers": [1], "model.extra.b": 5, "dataset_reader.max_length": 9}
    assert with_overrides(CONFIG, nested) == with_overrides(CONFIG, dotted)
    assert with_overrides(CONFIG, nested)["model"]["extra"] == {"a": 1, "b": 5}


def test_a_block_with_its_own_type_still_replaces():
    replacement = {"type": "basic_classifier", "dropout": 0.5}
    assert with_overrides(CONFIG, {"model": replacement})["model"] == replacement


def test_other_packages_blocks_keep_allennlp_behaviour():
    # allennlp 2.10 replaces a block given as a nested dictionary; that is left as it is.
    merged = with_overrides(CONFIG, {"trainer": {"num_epochs": 5}})
    assert merged["trainer"] == {"num_epochs": 5}
    assert merge_package_blocks(CONFIG, {"trainer": {"num_epochs": 5}}) == {
        "trainer": {"num_epochs": 5}
    }


def test_a_new_key_is_added_as_dot_syntax_adds_it():
    # The model's constructor then rejects it, as it would the dot-syntax spelling.
    nested = with_overrides(CONFIG, {"model": {"no_such_key": 1}})
    assert nested == with_overrides(CONFIG, {"model.no_such_key": 1})
    assert nested["model"]["no_such_key"] == 1 and nested["model"]["exit_layers"] == [0, 3]


def test_params_from_file_and_install_is_idempotent(tmp_path):
    install_nested_override_merge()
    install_nested_override_merge()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    params = Params.from_file(str(config), '{"model": {"confidence_threshold": 0.25}}')
    assert params["model"]["confidence_threshold"] == 0.25
    assert params["model"]["type"] == "early_exit_classifier"
