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

Nothing here depends on the sweep table, its runner or its report.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from allennlp.common.checks import ConfigurationError
from scipy import optimize, special, stats

from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy

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
    # Raises

    `ConfigurationError` unless `epsilon` (the allowed risk; not checked when `None`) and `delta`
    (the allowed probability of breaking the promise) are numbers strictly between 0 and 1. The
    names say which setting the message names (a command-line option, say).
    """
    for name, value, example in ((epsilon_name, epsilon, "0.01"), (delta_name, delta, "0.05")):
        if value is None and name == epsilon_name:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(f"{name} must be a number in (0, 1), got {value!r}")
        if not 0.0 < value < 1.0:  # also false for NaN
            raise ConfigurationError(f"{name} must be in (0, 1) (e.g. {example}), got {value}")


def check_risk(risk: str, has_labels: bool) -> None:
    """
    # Raises

    `ConfigurationError` for an unknown risk, or the `accuracy` risk on data without labels.
    """
    if risk not in RISKS:
        raise ConfigurationError(f"unknown risk {risk!r}; choose from {', '.join(RISKS)}")
    if risk == ACCURACY and not has_labels:
        raise ConfigurationError(
            "the accuracy risk needs gold labels and the data has none; the consistency risk "
            "needs no labels"
        )


def _check_method(method: str) -> None:
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
    A valid p-value of "the risk (the expected loss) exceeds `epsilon`" from i.i.d. losses.

    # Parameters

    losses : `torch.Tensor`
        `(num_instances,)`, 0/1 (booleans too) for `binomial`, in [0, 1] for `hoeffding_bentkus`.
    epsilon : `float`
        In (0, 1).
    method : `str`, optional (default = `"binomial"`)
        `binomial` (exact, for 0/1 losses) or `hoeffding_bentkus`.
    """
    _check_method(method)
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


def instance_losses(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    policy: ExitPolicy,
    risk: str,
) -> torch.BoolTensor:
    """
    The 0/1 loss of every instance when `policy` decides the exits, exactly as the model does.

    - `consistency`: the early exit's predicted label differs from the full model's (the last
      head's). Its mean bounds the accuracy drop, whatever the labels are.
    - `accuracy`: the full model is right and the early exit wrong. The accuracy drop is
      `P(full right, early wrong) - P(full wrong, early right)`: per instance it is -1, 0 or 1,
      and a bound on that signed mean would be loose (Hoeffding-type bounds for a mean near 1/2).
      Its first term is a 0/1 loss whose mean is at least the drop, so a guarantee on it holds for
      the drop; it counts fewer instances than `consistency` (not the disagreements where the full
      model is wrong), so it certifies more aggressive policies.

    # Parameters

    head_probs : `torch.Tensor`
        `(num_instances, num_heads, num_labels)`: every head's temperature-scaled probabilities.
    labels : `torch.Tensor`, optional
        `(num_instances,)` gold label indices; needed for `accuracy`.
    policy : `ExitPolicy`
    risk : `str`
        `consistency` or `accuracy`.
    """
    exit_head = policy.exit_heads(head_probs)  # (num_instances,)
    rows = torch.arange(head_probs.shape[0], device=head_probs.device)
    early = head_probs[rows, exit_head].argmax(dim=-1)  # (num_instances,)
    full = head_probs[:, -1].argmax(dim=-1)  # (num_instances,)
    check_risk(risk, labels is not None)
    if risk == CONSISTENCY:
        return early != full
    labels = labels.to(full.device).long().view(-1)
    return (full == labels) & (early != labels)


@dataclass
class CandidateTest:
    """
    One candidate's test.

    # Attributes

    policy : `ExitPolicy`
    empirical_risk : `float`
        The mean loss on the data.
    p_value : `float`
        Of "the risk exceeds epsilon"; 0 for a policy that never exits early (its loss is 0 on
        every input, so the risk is 0, not merely small).
    upper_bound : `float`
        The `1 - delta` upper confidence bound on this policy's risk (see `upper_bound`).
    exits_early : `bool`
        False for a policy that never exits early (the full model).
    """

    policy: ExitPolicy
    empirical_risk: float
    p_value: float
    upper_bound: float
    exits_early: bool = True

    def to_json(self) -> Dict[str, Any]:
        return {
            "policy": self.policy.to_json(),
            "empirical_risk": self.empirical_risk,
            "p_value": self.p_value,
            "upper_bound": self.upper_bound,
        }


@dataclass
class RiskControlResult:
    """
    What the fixed-sequence test certified, and the promise in words (`message`).

    # Attributes

    risk : `str`
    epsilon : `float`
    delta : `float`
    num_instances : `int`
    method : `str`
        The p-value used.
    tests : `List[CandidateTest]`
        The candidates walked, in order, up to and including the first that failed.
    certified : `int`, optional
        Index in `tests` of the last certified candidate; `None` when none was.
    """

    risk: str
    epsilon: float
    delta: float
    num_instances: int
    method: str
    tests: List[CandidateTest] = field(default_factory=list)
    certified: Optional[int] = None

    @property
    def certified_test(self) -> Optional[CandidateTest]:
        return None if self.certified is None else self.tests[self.certified]

    @property
    def policy(self) -> ExitPolicy:
        """The guaranteed policy: the last certified candidate, or the full model."""
        test = self.certified_test
        return MaxProbabilityPolicy(1.0) if test is None else test.policy

    @property
    def promise(self) -> str:
        """What a risk of at most epsilon means, e.g. `at most 1.0% of predictions differ ...`."""
        if self.risk == CONSISTENCY:
            return f"at most {self.epsilon:.1%} of predictions differ from the full model's"
        return f"accuracy at most {100 * self.epsilon:.1f} points below the full model's"

    @property
    def data_description(self) -> str:
        kind = "inputs, labels not used" if self.risk == CONSISTENCY else "labelled inputs"
        return f"{self.num_instances:,} {kind}"

    @property
    def message(self) -> str:
        """The promise in words, or why only the full model could be certified."""
        test = self.certified_test
        if test is not None and test.exits_early:
            return (
                f"{policy_name(test.policy)}: with probability {1 - self.delta:g}, {self.promise} "
                f"(bound from {self.data_description})"
            )
        return f"{policy_name(self.policy)} (the full model, no early exit): {self._why_nothing()}"

    def _why_nothing(self) -> str:
        needed = minimum_instances(self.epsilon, self.delta)
        if self.num_instances < needed:
            return (
                f"{self.num_instances:,} inputs cannot certify any early exit: even with no "
                f"{'disagreement' if self.risk == CONSISTENCY else 'lost prediction'} at all, at "
                f"least {needed:,} are needed to show {self.promise} with probability "
                f"{1 - self.delta:g}"
            )
        failed = next((test for test in self.tests if test.p_value > self.delta), None)
        if failed is None:
            return "no candidate exits early"
        return (
            f"the most conservative early exit, {policy_name(failed.policy)}, could not be "
            f"certified: its risk on these {self.data_description} is {failed.empirical_risk:.2%}"
            f" (upper bound {failed.upper_bound:.2%} at probability {1 - self.delta:g}), "
            f"not clearly below {self.epsilon:.2%}"
        )

    def to_json(self) -> Dict[str, Any]:
        test = self.certified_test
        return {
            "risk": self.risk,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "num_instances": self.num_instances,
            "p_value_method": self.method,
            "policy": self.policy.to_json(),
            "certified": test.to_json() if test is not None else None,
            "message": self.message,
            "tests": [candidate.to_json() for candidate in self.tests],
        }


def risk_phrase(risk: str) -> str:
    """What the risk measures, in words."""
    if risk == CONSISTENCY:
        return "the fraction of predictions that differ from the full model's"
    return "the fraction of inputs the full model gets right and the early exit wrong"


def unguaranteed_note(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    policy: ExitPolicy,
    risk: str,
    delta: float = DEFAULT_DELTA,
    method: str = BINOMIAL,
) -> str:
    """
    What a policy chosen by looking at the same data carries: no guarantee, only the bound it would
    have had if it had been fixed in advance (a lower figure than the truth can be, after a choice).
    """
    losses = instance_losses(head_probs, labels, policy, risk)
    bound = upper_bound(losses, delta, method)
    return (
        f"not guaranteed on new data (chosen on this data); fixed in advance, {risk_phrase(risk)} "
        f"would be at most {bound:.2%} with probability {1 - delta:g}"
    )


def policy_name(policy: ExitPolicy) -> str:
    """`threshold 0.88` for the paper's rule, `entropy(threshold=0.2)` and the like otherwise."""
    if isinstance(policy, MaxProbabilityPolicy):
        return f"threshold {policy.threshold:g}"
    return policy.describe()


def certify(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    candidates: Sequence[ExitPolicy],
    risk: str,
    epsilon: float,
    delta: float = DEFAULT_DELTA,
    method: str = BINOMIAL,
) -> RiskControlResult:
    """
    Walks `candidates` from the first (the most conservative) and returns the last one whose risk
    is certified at most `epsilon` with probability `1 - delta` (fixed-sequence testing).
    A candidate that never exits early has risk 0 and passes without a test.

    # Parameters

    head_probs : `torch.Tensor`
        `(num_instances, num_heads, num_labels)`: every head's temperature-scaled probabilities on
        data not used to train the model or fit its temperatures.
    labels : `torch.Tensor`, optional
        `(num_instances,)`; needed for the `accuracy` risk.
    candidates : `Sequence[ExitPolicy]`
        In a fixed order from the most conservative to the most aggressive, e.g. a policy's
        `sweep_grid`. The order is not checked: any fixed order is valid, a monotone one finds
        the most.
    risk : `str`
        `consistency` or `accuracy`.
    epsilon : `float`
        The allowed risk, in (0, 1).
    delta : `float`, optional (default = `0.05`)
        The allowed probability of breaking the promise, in (0, 1).
    method : `str`, optional (default = `"binomial"`)
        The p-value: `binomial` (exact) or `hoeffding_bentkus`.
    """
    check_risk_settings(epsilon, delta)
    check_risk(risk, labels is not None)
    _check_method(method)
    result = RiskControlResult(risk, float(epsilon), float(delta), head_probs.shape[0], method)
    walked = _tested(head_probs, labels, candidates, result, delta)
    result.certified = fixed_sequence((test.p_value for test in walked), delta)
    return result


def _tested(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    candidates: Sequence[ExitPolicy],
    result: RiskControlResult,
    delta: float,
) -> Iterator[CandidateTest]:
    """Tests the candidates one by one as the walk asks for them, recording each in `result`."""
    num_heads = head_probs.shape[1]
    for policy in candidates:
        if policy.never_exits_early(num_heads):
            test = CandidateTest(policy, 0.0, 0.0, 0.0, exits_early=False)
        else:
            losses = instance_losses(head_probs, labels, policy, result.risk)
            test = CandidateTest(
                policy,
                float(losses.double().mean()) if losses.numel() else 0.0,
                p_value(losses, result.epsilon, result.method),
                upper_bound(losses, delta, result.method),
            )
        result.tests.append(test)
        yield test
