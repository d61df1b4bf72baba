"""
What every policy shares: configs, checks, and `exit_heads` equal to the engine's head-by-head walk.
"""

import pytest
import torch
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    ExitPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)

POLICIES = [
    MaxProbabilityPolicy(0.8),
    EntropyPolicy(0.4),
    PatiencePolicy(2),
    ConfidentPatiencePolicy(0.7, 2),
]


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_a_config_gives_the_policy_and_to_json_gives_the_config(policy):
    config = policy.to_json()
    assert ExitPolicy.from_params(Params(dict(config))) == policy
    assert config["type"] == policy.registered_name()


def test_the_default_type_is_max_probability_and_its_threshold_is_required():
    policy = ExitPolicy.from_params(Params({"threshold": 1.0}))
    assert policy == MaxProbabilityPolicy(1.0) and policy.never_exits_early(2)
    with pytest.raises(ConfigurationError, match='"threshold" is required'):
        ExitPolicy.from_params(Params({}))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"type": "max_probability", "threshold": 1.5}, "threshold must be in"),
        ({"type": "entropy", "threshold": -0.1}, "threshold must be in"),
        ({"type": "max_probability", "threshold": True}, "threshold must be a number"),
        ({"type": "entropy", "threshold": "abc"}, "threshold must be a number"),
        ({"type": "patience", "patience": 0}, "patience must be an integer >= 1"),
        ({"type": "patience", "patience": 1.5}, "patience must be an integer >= 1"),
        ({"type": "patience", "patience": True}, "patience must be an integer >= 1"),
        ({"type": "confident_patience", "threshold": 0.9, "patience": False}, "patience"),
        ({"type": "loss_of_patience"}, "not in acceptable choices"),
        # Without its threshold, each would silently never exit early.
        ({"type": "max_probability"}, '"threshold" is required'),
        ({"type": "entropy"}, '"threshold" is required'),
    ],
)
def test_bad_parameters_are_configuration_errors(config, message):
    with pytest.raises(ConfigurationError, match=message):
        ExitPolicy.from_params(Params(config))


def _engine_walk(policy, head_probs):
    """The engine's way: head by head, the rows that exit leave with their state."""
    num_rows, num_heads = head_probs.shape[:2]
    exit_head = [num_heads - 1] * num_rows
    running = torch.arange(num_rows)
    state = policy.initial_state(num_rows, torch.device("cpu"))
    for head in range(num_heads - 1):
        if policy.never_exits_early(num_heads):
            break
        for row in running.tolist():  # one row at a time too: the batch-size-1 shortcut
            one_state = None if state is None else state[running.tolist().index(row)][None]
            one = policy.decide(head_probs[row : row + 1, head], one_state)
            many = policy.decide(head_probs[running, head], state)
            position = running.tolist().index(row)
            many_exits = many.count == len(running) if many.exits is None else many.exits[position]
            assert bool(one.count) == bool(many_exits)
        decision = policy.decide(head_probs[running, head], state)
        if decision.count == 0:
            state = decision.state
            continue
        exits = decision.exits
        if exits is None:
            exits = torch.ones(len(running), dtype=torch.bool)
        for row in running[exits].tolist():
            exit_head[row] = head
        keep = ~exits
        running = running[keep]
        state = None if decision.state is None else decision.state[keep]
        if len(running) == 0:
            break
    return exit_head


@pytest.mark.parametrize("num_labels", [2, 40])
@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_exit_heads_equals_the_head_by_head_walk_with_rows_leaving(policy, num_labels):
    torch.manual_seed(num_labels)
    head_probs = torch.softmax(torch.randn(40, 5, num_labels) * 4, dim=-1)
    exits = policy.exit_heads(head_probs).tolist()
    assert exits == _engine_walk(policy, head_probs)
    assert max(exits) <= 4
