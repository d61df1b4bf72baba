"""
The statistics of a guarantee (`risk_control`), pure functions of arrays: p-values, bounds, the
fixed-sequence test, the losses of a risk, the seeded split.
"""

import math

import numpy

import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.sweep.risk_control import (
    ACCURACY,
    BINOMIAL,
    CONSISTENCY,
    HOEFFDING_BENTKUS,
    check_risk,
    check_risk_settings,
    fixed_sequence,
    minimum_instances,
    p_value,
    risk_losses,
    split_in_two,
    upper_bound,
)

METHODS = (BINOMIAL, HOEFFDING_BENTKUS)


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


def test_risk_losses_from_predicted_labels():
    early = torch.tensor([0, 1, 0, 1])
    full = torch.tensor([1, 0, 0, 1])
    labels = torch.tensor([1, 1, 1, 1])
    # 0: full right, early wrong; 1: full wrong, early right; 2: both wrong; 3: both right
    assert risk_losses(early, full, labels, CONSISTENCY).tolist() == [True, True, False, False]
    assert risk_losses(early, full, None, CONSISTENCY).tolist() == [True, True, False, False]
    assert risk_losses(early, full, labels, ACCURACY).tolist() == [True, False, False, False]
    with pytest.raises(ConfigurationError, match="needs gold labels"):
        risk_losses(early, full, None, ACCURACY)


def test_split_in_two_is_seeded_disjoint_and_covers_every_index():
    first, second = split_in_two(7)
    assert len(first) == 4 and len(second) == 3
    assert sorted(first.tolist() + second.tolist()) == list(range(7))
    assert first.tolist() == sorted(first.tolist())
    assert [each.tolist() for each in split_in_two(7)] == [first.tolist(), second.tolist()]
    assert (
        split_in_two(7, seed=1)[0].tolist() != first.tolist()
        or split_in_two(7, seed=2)[0].tolist() != first.tolist()
    )


@pytest.mark.parametrize("value", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_epsilon_and_delta_outside_zero_one_are_refused(value):
    with pytest.raises(ConfigurationError, match="epsilon"):
        check_risk_settings(value, 0.05)
    with pytest.raises(ConfigurationError, match="delta"):
        check_risk_settings(0.01, value)


def test_unknown_risk_and_method_are_refused():
    with pytest.raises(ConfigurationError, match="unknown risk"):
        check_risk("speed", True)
    with pytest.raises(ConfigurationError, match="unknown p-value method"):
        p_value(torch.zeros(3), 0.1, method="normal")
