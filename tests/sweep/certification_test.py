"""
The walk over candidate exit policies (`certification`): what it certifies, where it stops, its
messages, and the losses of a policy's exits.
"""

import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)
from early_exit.sweep.certification import certify, instance_losses, unguaranteed_note
from early_exit.sweep.risk_control import ACCURACY, CONSISTENCY, upper_bound
from tests.sweep.risk_control_test import losses_with


def two_heads(confidence, first_label, last_label):
    """
    `(n, 2 heads, 2 labels)` probabilities: head 0 gives `first_label` probability `confidence`
    (> 0.5), the last head gives `last_label` probability 0.9.
    """
    confidence = torch.as_tensor(confidence, dtype=torch.float)
    first_label = torch.as_tensor(first_label)
    last_label = torch.as_tensor(last_label)
    first = torch.stack([1 - confidence, confidence], dim=-1)  # label 1 confident
    first = torch.where(first_label.view(-1, 1) == 1, first, first.flip(-1))
    last = torch.tensor([0.1, 0.9]).repeat(len(last_label), 1)
    last = torch.where(last_label.view(-1, 1) == 1, last, last.flip(-1))
    return torch.stack([first, last], dim=1)


def thresholds(*values):
    return [MaxProbabilityPolicy(value) for value in values]


def test_all_agree_certifies_the_most_aggressive_threshold():
    n = 1000
    probs = two_heads([0.95] * n, [1] * n, [1] * n)
    result = certify(probs, None, thresholds(1.0, 0.99, 0.9, 0.0), CONSISTENCY, 0.01)
    assert result.policy == MaxProbabilityPolicy(0.0)
    assert [test.empirical_risk for test in result.tests] == [0.0] * 4
    assert result.message == (
        "threshold 0: with probability 0.95, at most 1.0% of predictions differ from the full "
        "model's (bound from 1,000 inputs, labels not used)"
    )


def test_all_disagree_keeps_the_full_model_and_says_why():
    n = 1000
    probs = two_heads([0.995] * n, [0] * n, [1] * n)
    result = certify(probs, None, thresholds(1.0, 0.99, 0.9, 0.0), CONSISTENCY, 0.01)
    assert result.policy == MaxProbabilityPolicy(1.0)
    assert result.certified == 0  # the full model, with risk 0 by construction
    assert len(result.tests) == 2  # the walk stopped at the first early exit
    assert result.tests[1].empirical_risk == 1.0 and result.tests[1].p_value == 1.0
    assert result.message.startswith(
        "threshold 1 (the full model, no early exit): the most conservative early exit, threshold "
        "0.99, could not be certified"
    )
    assert "100.00%" in result.message


def test_tiny_samples_cannot_certify_any_early_exit():
    probs = two_heads([0.95] * 20, [1] * 20, [1] * 20)  # all agree, but only 20 inputs
    result = certify(probs, None, thresholds(0.99, 0.5), CONSISTENCY, 0.01)
    assert result.certified is None
    assert result.policy == MaxProbabilityPolicy(1.0)
    assert "20 inputs cannot certify any early exit" in result.message
    assert "at least 299 are needed" in result.message
    assert result.to_json()["policy"] == {"type": "max_probability", "threshold": 1.0}


def test_risk_exactly_at_epsilon_is_not_certified_but_half_of_it_is():
    n = 2000
    confidence = [0.95] * n
    at_epsilon = two_heads(confidence, [0] * 20 + [1] * (n - 20), [1] * n)  # 1% disagree
    assert certify(at_epsilon, None, thresholds(0.9), CONSISTENCY, 0.01).certified is None
    below = two_heads(confidence, [0] * 4 + [1] * (n - 4), [1] * n)  # 0.2% disagree
    assert certify(below, None, thresholds(0.9), CONSISTENCY, 0.01).certified == 0


def test_the_walk_does_not_go_past_a_failure_to_a_later_safe_candidate():
    n = 1000
    # Confidence 0.97 for 2% that disagree, 0.8 for the rest that agree: threshold 0.95 fails, while
    # 0.5 would disagree on just as many instances (the walk must not look further).
    confidence = [0.97] * 20 + [0.8] * (n - 20)
    probs = two_heads(confidence, [0] * 20 + [1] * (n - 20), [1] * n)
    result = certify(probs, None, thresholds(1.0, 0.99, 0.95, 0.5), CONSISTENCY, 0.01)
    assert result.policy == MaxProbabilityPolicy(0.99)
    assert [test.policy for test in result.tests] == thresholds(1.0, 0.99, 0.95)


def test_accuracy_loss_counts_only_predictions_the_full_model_had_right():
    probs = two_heads([0.9] * 4, [0, 1, 0, 1], [1, 0, 0, 1])
    labels = torch.tensor([1, 1, 1, 1])
    policy = MaxProbabilityPolicy(0.5)
    consistency = instance_losses(probs, labels, policy, CONSISTENCY)
    accuracy = instance_losses(probs, labels, policy, ACCURACY)
    # 0: full right, early wrong; 1: full wrong, early right; 2: both wrong; 3: both right
    assert consistency.tolist() == [True, True, False, False]
    assert accuracy.tolist() == [True, False, False, False]


def test_accuracy_loss_bounds_the_accuracy_drop_and_consistency_bounds_it():
    generator = torch.Generator().manual_seed(3)
    probs = torch.softmax(3 * torch.randn(500, 4, 3, generator=generator), dim=-1)
    labels = torch.randint(0, 3, (500,), generator=generator)
    for policy in MaxProbabilityPolicy(1.0).sweep_grid(4)[::10]:
        exit_head = policy.exit_heads(probs)
        early = probs[torch.arange(500), exit_head].argmax(-1)
        drop = (probs[:, -1].argmax(-1) == labels).float().mean() - (early == labels).float().mean()
        accuracy = instance_losses(probs, labels, policy, ACCURACY).float().mean()
        consistency = instance_losses(probs, labels, policy, CONSISTENCY).float().mean()
        assert drop <= accuracy + 1e-7 <= consistency + 2e-7


def test_a_choice_made_on_the_data_is_told_it_has_no_guarantee():
    n = 1000
    probs = two_heads([0.95] * n, [0] * 10 + [1] * (n - 10), [1] * n)  # 1% disagree at 0.9
    note = unguaranteed_note(probs, None, MaxProbabilityPolicy(0.9), CONSISTENCY)
    assert note.startswith("not guaranteed on new data")
    bound = upper_bound(losses_with(10, n), 0.05)
    assert f"at most {bound:.2%} with probability 0.95" in note


def test_accuracy_risk_message_and_label_check():
    n = 1000
    probs = two_heads([0.95] * n, [1] * n, [1] * n)
    result = certify(probs, torch.ones(n), thresholds(1.0, 0.5), ACCURACY, 0.02, delta=0.1)
    assert result.message == (
        "threshold 0.5: with probability 0.9, accuracy at most 2.0 points below the full model's "
        "(bound from 1,000 labelled inputs)"
    )
    with pytest.raises(ConfigurationError, match="needs gold labels"):
        certify(probs, None, thresholds(0.5), ACCURACY, 0.02)


def test_an_unknown_p_value_method_is_refused():
    probs = two_heads([0.9], [1], [1])
    with pytest.raises(ConfigurationError, match="unknown p-value method"):
        certify(probs, None, thresholds(0.5), CONSISTENCY, 0.1, method="normal")


def exit_heads_along(grid, probs):
    return torch.stack([policy.exit_heads(probs) for policy in grid])  # (len(grid), n)


@pytest.mark.parametrize(
    "policy",
    [MaxProbabilityPolicy(1.0), EntropyPolicy(0.0), PatiencePolicy(1)],
    ids=lambda p: str(p),
)
def test_every_sweep_grid_walks_from_the_full_model_to_ever_earlier_exits(policy):
    generator = torch.Generator().manual_seed(5)
    probs = torch.softmax(4 * torch.randn(300, 5, 3, generator=generator), dim=-1)
    grid = policy.sweep_grid(5)
    assert grid[0].never_exits_early(5)
    heads = exit_heads_along(grid, probs)
    assert bool((heads[1:] <= heads[:-1]).all())  # no instance ever exits later along the walk
    assert bool((heads[-1] == 0).all()) or isinstance(policy, EntropyPolicy)


def test_confident_patience_grid_walks_each_patience_from_conservative_to_aggressive():
    # A grid of two parameters has no total order: the walk goes through each patience from the
    # highest threshold to the lowest, and ends at the most aggressive policy of all.
    generator = torch.Generator().manual_seed(6)
    probs = torch.softmax(4 * torch.randn(300, 5, 3, generator=generator), dim=-1)
    grid = ConfidentPatiencePolicy(0.9, 1).sweep_grid(5)
    heads = exit_heads_along(grid, probs)
    for index in range(1, len(grid)):
        if grid[index].patience == grid[index - 1].patience:
            assert bool((heads[index] <= heads[index - 1]).all())
    assert bool((heads[-1] <= heads).all())
    assert [policy.patience for policy in grid] == sorted(
        (policy.patience for policy in grid), reverse=True
    )
