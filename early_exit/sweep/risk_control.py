"""
Exit-policy parameters with a guarantee on new data (Learn then Test, Angelopoulos et al., 2021;
used for early exit by CALM, Schuster et al., 2022).

A sweep that picks the cheapest threshold within epsilon of the full model *on the data it is
given* over-fits that data. Here each candidate policy instead gets a valid p-value for the null
hypothesis "its risk exceeds epsilon", and the candidates are tested in a fixed order, from the
most conservative to the most aggressive, as long as each test rejects at level `delta`
(fixed-sequence testing needs no correction for the number of candidates). The last rejected
candidate keeps its risk at most epsilon on new inputs from the same distribution with probability
at least `1 - delta`, provided the candidates and their order were fixed before looking at the data
(the sweep grids are) and the data was not used to train the model or fit its temperatures.

Two risks, both means of 0/1 losses per instance (see `instance_losses`):

- `consistency`: the early exit predicts another label than the full model. Needs no labels.
- `accuracy`: the full model is right and the early exit is wrong. Needs labels.

Everything here is a pure function of arrays (losses, counts, p-values): the walk over candidate
exit policies that uses them is `certification`.
"""

import math
from typing import Iterable, Optional, Tuple

import torch
from allennlp.common.checks import ConfigurationError
from scipy import optimize, special, stats

CONSISTENCY = "consistency"
ACCURACY = "accuracy"
RISKS = (CONSISTENCY, ACCURACY)

BINOMIAL = "binomial"
HOEFFDING_BENTKUS = "hoeffding_bentkus"
P_VALUE_METHODS = (BINOMIAL, HOEFFDING_BENTKUS)

DEFAULT_DELTA = 0.05


def check_risk_settings(
    epsilon: Optional[float],
    delta: float,
    epsilon_name: str = "epsilon",
    delta_name: str = "delta",
) -> None:
    """
    A `ConfigurationError` unless `epsilon` (the allowed risk; not checked when `None`) and
    `delta` (the allowed probability of breaking the promise) are numbers in (0, 1), named as
    the caller names them (a command-line option, say).
    """
    for name, value, example in ((epsilon_name, epsilon, "0.01"), (delta_name, delta, "0.05")):
        if value is None and name == epsilon_name:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(f"{name} must be a number in (0, 1), got {value!r}")
        if not 0.0 < value < 1.0:  # also false for NaN
            raise ConfigurationError(f"{name} must be in (0, 1) (e.g. {example}), got {value}")


def check_risk(risk: str, has_labels: bool) -> None:
    """A `ConfigurationError` for an unknown risk, or the `accuracy` risk without labels."""
    if risk not in RISKS:
        raise ConfigurationError(f"unknown risk {risk!r}; choose from {', '.join(RISKS)}")
    if risk == ACCURACY and not has_labels:
        raise ConfigurationError(
            "the accuracy risk needs gold labels and the data has none; the consistency risk "
            "needs no labels"
        )


def check_method(method: str) -> None:
    if method not in P_VALUE_METHODS:
        raise ConfigurationError(
            f"unknown p-value method {method!r}; choose from {', '.join(P_VALUE_METHODS)}"
        )


def binomial_p_value(num_losses: int, num_instances: int, epsilon: float) -> float:
    """
    The exact p-value of "risk > epsilon" from `num_losses` losses among `num_instances` i.i.d. 0/1
    losses: `P(Binomial(n, epsilon) <= num_losses)`. Valid because the number of losses of a risk
    above epsilon is stochastically larger than `Binomial(n, epsilon)`.
    """
    return float(stats.binom.cdf(num_losses, num_instances, epsilon))


def hoeffding_bentkus_p_value(mean_loss: float, num_instances: int, epsilon: float) -> float:
    """
    The Hoeffding-Bentkus p-value of "risk > epsilon" (Bates et al., 2021, RCPS; Learn then Test,
    eq. 4) from the mean of `num_instances` i.i.d. losses in [0, 1]:
    `min(exp(-n h(min(mean, epsilon), epsilon)), e P(Binomial(n, epsilon) <= ceil(n mean)))`,
    with `h(a, b)` the Bernoulli relative entropy. Valid for any loss in [0, 1]; for 0/1 losses
    `binomial_p_value` is smaller, and as valid.
    """
    low = min(mean_loss, epsilon)
    relative_entropy = special.rel_entr(low, epsilon) + special.rel_entr(1 - low, 1 - epsilon)
    hoeffding = math.exp(-num_instances * relative_entropy)
    count = math.ceil(num_instances * mean_loss - 1e-9)  # n * mean is a count up to rounding
    bentkus = math.e * stats.binom.cdf(count, num_instances, epsilon)
    return float(min(hoeffding, bentkus, 1.0))


def p_value(losses: torch.Tensor, epsilon: float, method: str = BINOMIAL) -> float:
    """
    A valid p-value of "the risk (the expected loss) exceeds `epsilon`" from i.i.d. `losses`
    `(num_instances,)`: 0/1 (booleans too) for `binomial` (exact), in [0, 1] for
    `hoeffding_bentkus`.
    """
    check_method(method)
    num_instances = losses.numel()
    if num_instances == 0:
        return 1.0
    if method == BINOMIAL:
        return binomial_p_value(int(losses.sum()), num_instances, epsilon)
    return hoeffding_bentkus_p_value(float(losses.double().mean()), num_instances, epsilon)


def upper_bound(losses: torch.Tensor, delta: float, method: str = BINOMIAL) -> float:
    """
    The `1 - delta` upper confidence bound on the risk the p-value gives: the smallest epsilon whose
    test rejects at level `delta` (for `binomial`, the Clopper-Pearson bound). It holds for one
    policy fixed in advance, not for one chosen by looking at the same data.
    """
    num_instances = losses.numel()
    if num_instances == 0:
        return 1.0
    num_losses = int(losses.sum())
    if method == BINOMIAL:
        if num_losses >= num_instances:
            return 1.0
        return float(stats.beta.ppf(1 - delta, num_losses + 1, num_instances - num_losses))
    mean_loss = float(losses.double().mean())
    if mean_loss >= 1.0 or p_value(losses, 1.0 - 1e-12, method) > delta:
        return 1.0
    # The p-value decreases in epsilon: the bound is where it crosses delta.
    return float(
        optimize.brentq(
            lambda epsilon: p_value(losses, epsilon, method) - delta,
            max(mean_loss, 1e-12),
            1.0 - 1e-12,
            xtol=1e-10,
        )
    )


def minimum_instances(epsilon: float, delta: float) -> int:
    """
    The fewest inputs that can certify a risk of at most `epsilon` at level `delta`: even with no
    loss at all, both p-values are `(1 - epsilon) ** n`, at most `delta` only from this `n` on.
    """
    return math.ceil(math.log(delta) / math.log1p(-epsilon) - 1e-9)


def fixed_sequence(p_values: Iterable[float], delta: float) -> Optional[int]:
    """
    Fixed-sequence testing: the hypotheses are tested in the order given, and testing stops at the
    first p-value above `delta` (a generator is not consumed further). Returns the index of the
    last rejected hypothesis (`None` when the first is not rejected). All the rejections together
    are wrong with probability at most `delta`, whatever the number of hypotheses, because the
    order was fixed before seeing the data.
    """
    last = None
    for index, value in enumerate(p_values):
        if value > delta:
            break
        last = index
    return last


def risk_losses(
    early: torch.Tensor,
    full: torch.Tensor,
    labels: Optional[torch.Tensor],
    risk: str,
) -> torch.BoolTensor:
    """
    The 0/1 loss of every instance, from the labels the early exits predict and the full model's.

    - `consistency`: the early exit's predicted label differs from the full model's. Its mean
      bounds the accuracy drop, whatever the labels are.
    - `accuracy`: the full model is right and the early exit wrong. The accuracy drop is
      `P(full right, early wrong) - P(full wrong, early right)`: per instance it is -1, 0 or 1,
      and a bound on that signed mean would be loose (Hoeffding-type bounds for a mean near 1/2).
      Its first term is a 0/1 loss whose mean is at least the drop, so a guarantee on it holds for
      the drop; it counts fewer instances than `consistency` (not the disagreements where the full
      model is wrong), so it certifies more aggressive policies.

    `early` and `full` are `(num_instances,)` label indices, `labels` gold ones (for `accuracy`).
    """
    check_risk(risk, labels is not None)
    if risk == CONSISTENCY:
        return early != full
    labels = labels.to(full.device).long().view(-1)
    return (full == labels) & (early != labels)


def split_in_two(num_instances: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    A seeded random split of `range(num_instances)` into two halves (the first one larger by one
    for an odd count), e.g. one to fit temperatures on and one to certify a threshold on: a
    threshold certified on the instances that fitted the temperatures would not carry the
    guarantee, since the candidates would then depend on the data they are tested on.
    """
    order = torch.randperm(num_instances, generator=torch.Generator().manual_seed(seed))
    first = (num_instances + 1) // 2
    return order[:first].sort().values, order[first:].sort().values


def risk_phrase(risk: str) -> str:
    """What the risk measures, in words."""
    if risk == CONSISTENCY:
        return "the fraction of predictions that differ from the full model's"
    return "the fraction of inputs the full model gets right and the early exit wrong"
