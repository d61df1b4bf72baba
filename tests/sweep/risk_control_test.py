import math

import numpy
import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)
from early_exit.sweep.risk_control import (
    ACCURACY,
    BINOMIAL,
    CONSISTENCY,
    HOEFFDING_BENTKUS,
    certify,
    check_risk,
    check_risk_settings,
    fixed_sequence,
    instance_losses,
    minimum_instances,
    p_value,
    unguaranteed_note,
    upper_bound,
)

METHODS = (BINOMIAL, HOEFFDING_BENTKUS)


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


def losses_with(num_losses, num_instances):
    losses = torch.zeros(num_instances, dtype=torch.bool)
    losses[:num_losses] = True
    return losses


def binomial_cdf(count, n, p):  # independent of scipy
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(count + 1))


def test_binomial_p_value_is_the_binomial_tail_and_not_significant_at_a_risk_equal_to_epsilon():
    losses = losses_with(10, 1000)  # empirical risk exactly epsilon
    value = p_value(losses, 0.01, BINOMIAL)
    assert value == pytest.approx(binomial_cdf(10, 1000, 0.01), rel=1e-9)
    assert value > 0.5
    assert p_value(losses, 0.01, HOEFFDING_BENTKUS) > 0.5


def test_no_loss_gives_one_minus_epsilon_to_the_n_for_both_methods():
    losses = losses_with(0, 500)
    for method in METHODS:
        assert p_value(losses, 0.01, method) == pytest.approx(0.99**500, rel=1e-9)
    assert minimum_instances(0.01, 0.05) == 299
    assert 0.99**299 <= 0.05 < 0.99**298


@pytest.mark.parametrize("num_losses", [0, 3, 40, 500])
def test_hoeffding_bentkus_is_valid_but_never_below_the_exact_binomial(num_losses):
    losses = losses_with(num_losses, 500)
    for epsilon in (0.01, 0.05, 0.2):
        exact = p_value(losses, epsilon, BINOMIAL)
        assert p_value(losses, epsilon, HOEFFDING_BENTKUS) >= exact * (1 - 1e-9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("num_losses", [0, 7, 60])
def test_upper_bound_is_where_the_test_starts_to_reject(method, num_losses):
    losses = losses_with(num_losses, 400)
    bound = upper_bound(losses, 0.05, method)
    assert num_losses / 400 < bound < 1
    assert p_value(losses, min(bound + 1e-6, 1 - 1e-9), method) <= 0.05
    assert p_value(losses, bound - 1e-6, method) > 0.05


@pytest.mark.parametrize("method", METHODS)
def test_p_values_are_valid_at_the_boundary_of_the_null(method):
    # The hardest null: the true risk is exactly epsilon. A valid p-value is at most delta with
    # probability at most delta.
    rng = numpy.random.default_rng(0)
    n, epsilon, delta = 300, 0.05, 0.1
    counts = rng.binomial(n, epsilon, size=4000)
    rejected = [p_value(losses_with(int(count), n), epsilon, method) <= delta for count in counts]
    assert numpy.mean(rejected) <= delta + 0.015


def test_fixed_sequence_stops_at_the_first_failure():
    assert fixed_sequence([0.01, 0.02, 0.2, 0.01], 0.05) == 1
    assert fixed_sequence([0.2, 0.01], 0.05) is None
    assert fixed_sequence([0.0, 0.05], 0.05) == 1  # p <= delta rejects
    assert fixed_sequence([], 0.05) is None


def test_fixed_sequence_rarely_certifies_a_candidate_above_epsilon():
    # Ten nested candidates of growing true risk; each instance has one draw U and loses under
    # every candidate whose risk is above U. The certified candidate's true risk exceeds epsilon
    # with probability at most delta.
    rng = numpy.random.default_rng(1)
    risks = numpy.linspace(0.0, 0.1, 10)
    n, epsilon, delta = 400, 0.04, 0.1
    broken = 0
    trials = 1000
    for _ in range(trials):
        draws = torch.from_numpy(rng.random(n))
        p_values = [p_value(draws < risk, epsilon) for risk in risks]
        last = fixed_sequence(p_values, delta)
        broken += last is not None and risks[last] > epsilon
    assert broken / trials <= delta + 0.02


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


@pytest.mark.parametrize("value", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_epsilon_and_delta_outside_zero_one_are_refused(value):
    with pytest.raises(ConfigurationError, match="epsilon"):
        check_risk_settings(value, 0.05)
    with pytest.raises(ConfigurationError, match="delta"):
        check_risk_settings(0.01, value)


def test_unknown_risk_and_method_are_refused():
    with pytest.raises(ConfigurationError, match="unknown risk"):
        check_risk("speed", True)
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
