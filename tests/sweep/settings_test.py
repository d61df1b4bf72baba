"""
`SweepSettings`: every setting checked once where it is built, and the command line's defaults
the Python API's.
"""

import argparse

import pytest
from allennlp.common.checks import ConfigurationError

from early_exit.commands.sweep_thresholds import SweepThresholds, _settings
from early_exit.modules.exit_policies import EntropyPolicy, MaxProbabilityPolicy
from early_exit.sweep.settings import DEFAULT_MAX_ACCURACY_DROP, SweepSettings


def _parsed(*argv):
    parser = argparse.ArgumentParser()
    SweepThresholds().add_subparser(parser.add_subparsers())
    return parser.parse_args(
        ["sweep-thresholds", "model.tar.gz", "data.tsv", "--output-dir", "out", *argv]
    )


def test_the_command_line_defaults_are_the_python_defaults():
    assert _settings(_parsed()) == SweepSettings()
    assert SweepSettings().risk == "auto" and SweepSettings().accuracy_goal == 0.01


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_accuracy_drop": 1.5}, r"maximum accuracy drop must be in \[0, 1\]"),
        ({"compute_budget": 0.0}, r"compute budget must be in \(0, 1\]"),
        ({"policy": "fastest"}, "unknown exit policy 'fastest'"),
        ({"risk": "speed"}, "unknown risk 'speed'"),
        ({"max_accuracy_drop": 0.0}, r"--max-accuracy-drop must be in \(0, 1\)"),
        ({"delta": 1.0}, r"--delta must be in \(0, 1\)"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"timing_instances": 0}, "timing instances must be at least 1"),
        ({"repeats": 0}, "repeats must be at least 1"),
        ({"timing_batch_sizes": (1, 0)}, "timing batch sizes must be at least 1"),
        ({"thresholds": [0.5, 2.0]}, r"thresholds must be in \[0, 1\]"),
        ({"grid_step": 0.0}, r"grid step must be in \(0, 1\]"),
        ({"policy": "patience", "thresholds": [0.5]}, "thresholds do not apply to patience"),
        ({"policy": "patience", "timing_thresholds": [0.5]}, "timing thresholds apply to"),
    ],
)
def test_a_bad_setting_is_refused_where_the_settings_are_built(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        SweepSettings(**changes)
    with pytest.raises(ConfigurationError, match=message):
        SweepSettings().replace(**changes)


def test_no_guarantee_does_not_check_the_guarantee_settings():
    assert SweepSettings(risk="none", max_accuracy_drop=0.0).max_accuracy_drop == 0.0
    assert not SweepSettings(risk=None).guaranteed and SweepSettings().guaranteed


def test_the_accuracy_goal_defaults_only_without_any_goal():
    assert SweepSettings().accuracy_goal == DEFAULT_MAX_ACCURACY_DROP
    assert SweepSettings(compute_budget=0.5).accuracy_goal is None
    assert SweepSettings(max_accuracy_drop=0.02, compute_budget=0.5).accuracy_goal == 0.02


def test_timing_thresholds_become_policies_of_the_swept_type():
    settings = SweepSettings(policy="entropy", timing_thresholds=[0.3, 0.1])
    assert settings.timing_thresholds == [EntropyPolicy(0.1), EntropyPolicy(0.3)]
    assert SweepSettings(timing_thresholds=[0.9]).timing_thresholds == [MaxProbabilityPolicy(0.9)]


def test_the_risk_follows_the_labels():
    auto = SweepSettings()
    assert auto.risk_for(0, 10) == "accuracy" and auto.risk_for(10, 10) == "consistency"
    assert SweepSettings(risk="none").risk_for(0, 10) is None
    assert SweepSettings(risk="consistency").risk_for(3, 10) == "consistency"
    with pytest.raises(ConfigurationError, match="3 of 10 instances have no gold label"):
        auto.risk_for(3, 10)
    with pytest.raises(ConfigurationError, match="the accuracy risk needs labelled data"):
        SweepSettings(risk="accuracy").risk_for(10, 10)
