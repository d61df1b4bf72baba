"""
The recipe search (`scripts/recipe_search.py`, `scripts/results/recipes.py`): its changes are real
one-override changes of the committed configs, where each model is trained, the rule that picks a
recipe on dev, and the report written from synthetic results.
"""

import json
from pathlib import Path

import pytest
from allennlp.common import Params

from scripts.results import recipes, report_recipes
from scripts.results.recipe_rule import ADOPTED, pick
from scripts.results.recipes import model_dir, recipe_words
from scripts.results.settings import RECIPE_CHANGES, ROOT

CHANGES = [(dataset, name) for dataset, changes in RECIPE_CHANGES.items() for name in changes]


def _config(dataset: str, overrides: dict = None) -> dict:
    path = ROOT / "training_config" / f"{dataset}_minilm.jsonnet"
    return Params.from_file(str(path), json.dumps(overrides or {})).as_dict(quiet=True)


def _at(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


@pytest.mark.parametrize("dataset, name", CHANGES)
def test_each_change_overrides_a_setting_the_adopted_config_has_otherwise(dataset, name):
    words, overrides = RECIPE_CHANGES[dataset][name]
    adopted, changed = _config(dataset), _config(dataset, overrides)
    for key, value in overrides.items():
        assert _at(changed, key) == value and _at(adopted, key) != value, key
    assert recipe_words(changed) != recipe_words(adopted), words


def test_recipe_words_read_the_archived_config():
    words = recipe_words(_config("sst2"))
    assert words.startswith("encoder lr 1e-4, head lr 1e-3, distillation weight 1 at temperature 2")
    assert "1 epoch," in words and "summed loss" in words
    assert "head lr = encoder lr" in recipe_words(
        _config("sst2", RECIPE_CHANGES["sst2"]["no_head_lr"][1])
    )
    assert "no distillation" in recipe_words(_config("ag_news", {"model.distillation_weight": 0.0}))
    assert "4 epochs" in recipe_words(_config("ag_news"))


def test_a_change_that_is_a_results_variant_shares_its_archive(tmp_path):
    assert model_dir("sst2", ADOPTED, tmp_path) == tmp_path / "models" / "sst2_early_exit"
    shared = model_dir("sst2", "no_distillation", tmp_path)
    assert shared == tmp_path / "models" / "sst2_early_exit_no_distillation"
    # AG News has no such variant; results.md reports every model under models/, so apart.
    apart = model_dir("ag_news", "no_distillation", tmp_path)
    assert apart == tmp_path / "recipes" / "ag_news_no_distillation"
    jobs = recipes.training_jobs("ag_news", {"train": Path("t"), "dev": Path("d")}, tmp_path, [])
    assert [job["dir"] for job in jobs][:2] == [
        tmp_path / "models" / "ag_news_early_exit",
        tmp_path / "recipes" / "ag_news_encoder_lr_5e-5",
    ]
    assert jobs[0]["overrides"] == {"train_data_path": "t", "validation_data_path": "d"}
    assert jobs[1]["overrides"]["trainer.optimizer.lr"] == 5e-5


def _recipe(name, dev_full, dev_compute, eval_full=0.88, eval_at=0.875, eval_compute=0.3):
    return {
        "name": name,
        "change": name.replace("_", " "),
        "dev_full_accuracy": dev_full,
        "chosen_thresholds": {"0.01": 0.8},
        "dev_at_chosen": {"0.01": {"relative_compute": dev_compute}},
        "eval_full": {"accuracy": eval_full},
        "eval_at_chosen": {"0.01": {"accuracy": eval_at, "relative_compute": eval_compute}},
        "single_heads": [{"accuracy": a} for a in (0.8, 0.82, 0.85, 0.86, 0.87, 0.88)],
        "eval_size": 400,
    }


class TestRule:
    def test_the_cheapest_on_dev_among_those_near_the_best_full_depth(self):
        recipes_ = [
            _recipe(ADOPTED, 0.900, 0.35),
            _recipe("cheaper", 0.895, 0.30, eval_full=0.80),  # the evaluation split is not read
            _recipe("cheapest_but_worse", 0.885, 0.20),  # 1.5 points below the best on dev
            {"name": "untrained", "change": "untrained"},
        ]
        assert pick(recipes_) == "cheaper"
        assert pick(recipes_[:1] + recipes_[2:]) == ADOPTED

    def test_a_tie_in_compute_goes_to_the_higher_full_depth_and_nothing_trained_picks_none(self):
        assert pick([_recipe("a", 0.890, 0.3), _recipe(ADOPTED, 0.895, 0.3)]) == ADOPTED
        assert pick([{"name": ADOPTED, "change": "adopted recipe"}]) is None


class TestReport:
    def test_rows_verdict_and_untrained_changes(self):
        result = {
            "dataset": "sst2",
            "adopted_words": "encoder lr 1e-4",
            "recipes": [
                _recipe(ADOPTED, 0.900, 0.35),
                _recipe("encoder_lr_5e-5", 0.899, 0.30),
                {"name": "no_head_lr", "change": "head lr = encoder lr"},
            ],
        }
        text = "\n".join(report_recipes.dataset_section(result))
        assert (
            "| adopted | 90.0 | 0.80, 0.350 | 88.0 | 80.0 / 82.0 / 85.0 | -0.5 pt, 0.30 |" in text
        )
        assert "| head lr = encoder lr | not trained | | | | |" in text
        assert "picks **encoder lr 5e-5** over the adopted recipe" in text
        assert "Not trained yet, so not compared: head lr = encoder lr." in text
        assert "One evaluation instance is 0.25 points." in text
        result["recipes"][1]["dev_at_chosen"]["0.01"]["relative_compute"] = 0.4
        assert "the rule picks the adopted recipe" in "\n".join(report_recipes.verdict(result))
        del result["recipes"][1]["dev_full_accuracy"]
        train = f"`{report_recipes.COMMAND} --datasets sst2` trains what is missing"
        assert train in text
        (line,) = report_recipes.verdict(result)
        assert line.startswith("No change trained yet: nothing to compare the adopted recipe with.")
        assert train in line
        result["recipes"][1] = result["recipes"][0]
        result["recipes"][0] = {"name": ADOPTED, "change": "adopted recipe"}
        assert "adopted recipe is not trained" in report_recipes.verdict(result)[0]
        for recipe in result["recipes"]:
            recipe.pop("dev_full_accuracy", None)
        assert report_recipes.verdict(result)[0].startswith("Nothing trained yet. " + train)
        trained = _recipe(ADOPTED, 0.900, 0.35)
        result["recipes"] = [trained, _recipe("encoder_lr_5e-5", 0.899, 0.40)]
        assert "trains what is missing" not in report_recipes.verdict(result)[0]

    def test_the_document_names_its_command(self):
        text = report_recipes.recipe_report([], "a machine", 120.0)
        assert "do not edit by hand" in text and report_recipes.COMMAND in text
        assert "This page was written by" not in text

    def test_a_partial_run_prints_its_own_command_too(self):
        partial = report_recipes.COMMAND + " --datasets sst2 --report-only"
        text = report_recipes.recipe_report([], "a machine", 120.0, partial)
        assert "This page was written by" in text and partial in text


def test_an_unknown_change_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        recipes.parse_args(["--shared-data", str(tmp_path), "--changes", "more_epochs"])
    assert raised.value.code == 1
    assert capsys.readouterr().err.startswith("error: unknown change 'more_epochs'; choose from")
