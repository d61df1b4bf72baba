"""
The fixed-sequence walk over candidate exit policies (see `risk_control` for the statistics): which
policy is certified to keep its risk within epsilon on new data, and the promise in words.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.head_outputs import HeadOutputs
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.risk_control import (
    BINOMIAL,
    CONSISTENCY,
    DEFAULT_DELTA,
    check_method,
    check_risk,
    check_risk_settings,
    fixed_sequence,
    minimum_instances,
    p_value,
    risk_losses,
    risk_phrase,
    upper_bound,
)
from early_exit.sweep.sweep_table import head_probabilities
from early_exit.sweep.thresholds import FULL_MODEL, policy_label


def instance_losses(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    policy: ExitPolicy,
    risk: str,
) -> torch.BoolTensor:
    """
    The 0/1 loss of every instance (see `risk_losses`: `labels` are needed for `accuracy`) when
    `policy` decides the exits on every head's temperature-scaled probabilities `head_probs`
    `(num_instances, num_heads, num_labels)`, exactly as the model does.
    """
    exit_head = policy.exit_heads(head_probs)  # (num_instances,)
    rows = torch.arange(head_probs.shape[0], device=head_probs.device)
    early = head_probs[rows, exit_head].argmax(dim=-1)  # (num_instances,)
    full = head_probs[:, -1].argmax(dim=-1)  # (num_instances,)
    return risk_losses(early, full, labels, risk)


@dataclass
class CandidateTest:
    """
    One candidate's test: its mean loss on the data, the p-value of "the risk exceeds epsilon"
    (0 for a policy that never `exits_early`, whose loss is 0 on every input) and the `1 - delta`
    upper confidence bound on its risk.
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
    What the fixed-sequence test certified, and the promise in words (`message`): the candidates
    walked (`tests`, in order, up to and including the first that failed) under the p-value
    `method`, and the index of the last certified one (`certified`, `None` where none was).
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
        return FULL_MODEL if test is None else test.policy

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
                f"{policy_label(test.policy)}: with probability {1 - self.delta:g}, {self.promise} "
                f"(bound from {self.data_description})"
            )
        return f"{policy_label(self.policy)} (the full model, no early exit): {self._why_nothing()}"

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
            f"the most conservative early exit, {policy_label(failed.policy)}, could not be "
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
    (`consistency`, or `accuracy` with `labels`) is certified at most `epsilon` with probability
    `1 - delta` (fixed-sequence testing, with the p-value `method`: `binomial` or
    `hoeffding_bentkus`). A candidate that never exits early has risk 0 and passes without a test.
    `head_probs` are every head's temperature-scaled probabilities on data not used to train the
    model or fit its temperatures. Any fixed order of the candidates is valid (it is not
    checked); a monotone one, such as a policy's `sweep_grid`, finds the most.
    """
    check_risk_settings(epsilon, delta)
    check_risk(risk, labels is not None)
    check_method(method)
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


def certify_exit_policy(
    model: EarlyExitClassifier, outputs: HeadOutputs, risk: str, epsilon: float, delta: float
) -> RiskControlResult:
    """
    Walks the `sweep_grid` of the model's exit policy type on cached head outputs, at the model's
    temperatures (fitted on other instances than `outputs`): what `allennlp calibrate
    --max-accuracy-drop` stores.
    """
    head_probs = head_probabilities(outputs.logits.float(), model.serving_temperatures.tolist())
    candidates = model.exit_policy.sweep_grid(len(model.exit_layers))
    return certify(head_probs, outputs.labels, candidates, risk, epsilon, delta)
