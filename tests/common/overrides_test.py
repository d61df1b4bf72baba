"""
Nested overrides of this package's blocks merge like their dot-syntax spelling; others are
untouched.
"""

import json
import tarfile

import pytest
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from allennlp.predictors import Predictor
from allennlp.common import params as allennlp_params

from early_exit.allennlp_patches import install_nested_override_merge
from early_exit.common.overrides import UnknownOverrideError, merge_package_blocks
from early_exit.modules.exit_policies.entropy import EntropyPolicy
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.modules.exit_policies.max_probability import MaxProbabilityPolicy
from tests.sweep.trained_models import trained_archive


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


POLICY = {"type": "entropy", "threshold": 0.3}
WITH_POLICY = dict(
    CONFIG, model={**CONFIG["model"], "confidence_threshold": None, "exit_policy": POLICY}
)


@pytest.mark.parametrize("spelling", ["nested", "dotted"])
def test_an_overridden_policy_replaces_the_configurations_other_spelling(spelling):
    def override(key, value):
        return {"model": {key: value}} if spelling == "nested" else {f"model.{key}": value}

    merged = with_overrides(WITH_POLICY, override("confidence_threshold", 0.55))["model"]
    assert merged["confidence_threshold"] == 0.55 and merged["exit_policy"] is None
    merged = with_overrides(CONFIG, override("exit_policy", POLICY))["model"]
    assert merged["exit_policy"] == POLICY and merged["confidence_threshold"] is None
    # The same spelling, or a parameter of the configuration's own policy: nothing cleared.
    tweak = (
        override("exit_policy", {"threshold": 0.1})
        if spelling == "nested"
        else {"model.exit_policy.threshold": 0.1}
    )
    merged = with_overrides(WITH_POLICY, tweak)["model"]
    assert merged["exit_policy"] == dict(POLICY, threshold=0.1)


def test_both_spellings_in_one_override_are_kept_for_the_models_error():
    both = {"model.confidence_threshold": 0.5, "model.exit_policy": POLICY}
    merged = with_overrides(WITH_POLICY, both)["model"]
    assert merged["confidence_threshold"] == 0.5 and merged["exit_policy"] == POLICY


@pytest.fixture(scope="module")
def archive_with_policy(tmp_path_factory):
    """The tiny model's archive as a folder whose config holds an `exit_policy` (as calibrate's
    `--max-accuracy-drop` writes it)."""
    folder = tmp_path_factory.mktemp("policy_archive")
    with tarfile.open(trained_archive(tmp_path_factory, "text")) as archive:
        archive.extractall(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["exit_policy"] = POLICY
    config["model"].pop("confidence_threshold", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_predictor_overrides_replace_the_archives_policy(archive_with_policy):
    predictor = Predictor.from_path(archive_with_policy, "early_exit_classifier")
    assert isinstance(predictor.exit_policy, EntropyPolicy)
    predictor = Predictor.from_path(
        archive_with_policy, "early_exit_classifier", overrides={"model.confidence_threshold": 0.55}
    )
    assert isinstance(predictor.exit_policy, MaxProbabilityPolicy)
    assert predictor.confidence_threshold == 0.55
    with pytest.raises(ConfigurationError, match="not both"):
        Predictor.from_path(
            archive_with_policy,
            "early_exit_classifier",
            overrides={"model": {"confidence_threshold": 0.5, "exit_policy": POLICY}},
        )


@pytest.mark.parametrize(
    "override, reason",
    [
        ("trainer.optimiser.lr", 'the configuration has no "trainer.optimiser"'),
        ("no_such_block.x", 'the configuration has no "no_such_block"'),
        (
            "model.confidence_threshold.x",
            '"model.confidence_threshold" is 1.0 in the configuration',
        ),
        ("model.exit_layers.5", '"model.exit_layers" is a list of 2 in the configuration, with no'),
    ],
)
def test_an_override_that_sets_nothing_is_named_not_a_value_error(override, reason):
    with pytest.raises(UnknownOverrideError) as raised:
        with_overrides(CONFIG, {"trainer.num_epochs": 3, override: 0.1})
    assert str(raised.value).startswith(f'the override "{override}" sets nothing: {reason}')


def test_an_archive_with_an_override_that_sets_nothing_is_named_with_the_archive(tmp_path_factory):
    # This package's loader names the archive from Python too; allennlp's own `Predictor.from_path`
    # (whose archive errors are named under the command line only) still names the override.
    archive = trained_archive(tmp_path_factory, "text")
    reason = 'the override "model.policy.x" sets nothing: the configuration has no "model.policy"'
    with pytest.raises(ConfigurationError) as raised:
        load_early_exit_archive(archive, overrides={"model.policy.x": 1})
    assert str(raised.value) == f"{archive}: {reason}"
    with pytest.raises(ConfigurationError) as raised:
        Predictor.from_path(archive, "early_exit_classifier", overrides={"model.policy.x": 1})
    assert str(raised.value).endswith(reason)
