"""
Choosing an exit policy (a confidence threshold, by default) from a sweep table: the plain pick
for an accuracy goal, the guaranteed one (certified on new data, see `certification`), the most
accurate within a compute budget, all of a sweep's at once (`recommend`), and choosing on a dev
split what is then reported on an evaluation split.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.certification import RiskControlResult, certify, unguaranteed_note
from early_exit.sweep.risk_control import DEFAULT_DELTA
from early_exit.sweep.settings import SweepSettings, check_goals
from early_exit.sweep.sweep_table import SweepRow
from early_exit.sweep.thresholds import FULL_MODEL, policy_label, thresholds_only

# Accuracies are fractions of a finite data set; this absorbs float noise in comparisons.
_TOLERANCE = 1e-9

MAX_ACCURACY_DROP = "max_accuracy_drop"
COMPUTE_BUDGET = "compute_budget"


@dataclass
class Recommendation:
    """
    The exit policy (by default a threshold) a sweep recommends for one `goal`
    (`"max_accuracy_drop"` or `"compute_budget"`) at its `limit`: the `row` chosen (`None` where
    no row meets the goal), the full model's `reference_accuracy` (`None` without labels), a
    `message` saying what was chosen and why (or why nothing was), and for a policy certified on
    new data its `guarantee`.
    """

    goal: str
    limit: float
    reference_accuracy: Optional[float]
    row: Optional[SweepRow]
    message: str
    guarantee: Optional[RiskControlResult] = None

    @property
    def threshold(self) -> Optional[float]:
        return None if self.row is None else self.row.threshold

    @property
    def policy(self) -> Optional[ExitPolicy]:
        return None if self.row is None else self.row.policy


def _preference(rows: Sequence[SweepRow]) -> Callable[[SweepRow], Tuple[int, int]]:
    """
    The tie-break among rows equally good for a goal: the policy type listed first in the table
    (the default, `max_probability`, before the others), then the most conservative setting, the
    one listed last (a sweep lists each type from the most aggressive to the most conservative):
    larger is preferred.
    """
    types = list(dict.fromkeys(type(row.policy) for row in rows))
    position = {id(row): index for index, row in enumerate(rows)}
    return lambda row: (-types.index(type(row.policy)), position[id(row)])


def recommend_threshold(
    rows: Sequence[SweepRow],
    reference_accuracy: float,
    max_accuracy_drop: Optional[float] = None,
    compute_budget: Optional[float] = None,
) -> Recommendation:
    """
    Recommends a row of a sweep table (of any policies, each type from the most aggressive to the
    most conservative) for exactly one of two goals: the cheapest row whose accuracy is at most
    `max_accuracy_drop` (absolute, 0.01 is one point) below `reference_accuracy` (the full
    model's), the most accurate among equally cheap ones; or the most accurate row whose
    `relative_compute` is at most `compute_budget`, the cheapest among equally accurate ones.
    Remaining ties go to the policy type listed first, then to its most conservative setting (the
    one listed last: the most cautious on new data). A `ConfigurationError` unless exactly one
    goal is given, in range, and the table has rows.
    """
    if (max_accuracy_drop is None) == (compute_budget is None):
        raise ConfigurationError("give exactly one of max_accuracy_drop and compute_budget")
    if not rows:
        raise ConfigurationError("the sweep table is empty")
    check_goals(max_accuracy_drop, compute_budget)
    thresholds = thresholds_only(row.policy for row in rows)
    what = "threshold" if thresholds else "setting"
    preference = _preference(rows)
    if max_accuracy_drop is not None:
        goal, limit = MAX_ACCURACY_DROP, max_accuracy_drop
        floor = reference_accuracy - max_accuracy_drop
        candidates = [row for row in rows if row.accuracy >= floor - _TOLERANCE]
        key = lambda row: (-row.relative_compute, row.accuracy, preference(row))  # noqa: E731
    else:
        goal, limit = COMPUTE_BUDGET, compute_budget
        candidates = [row for row in rows if row.relative_compute <= compute_budget + _TOLERANCE]
        key = lambda row: (row.accuracy, -row.relative_compute, preference(row))  # noqa: E731
    best = max(candidates, key=key) if candidates else None
    if best is None and goal == MAX_ACCURACY_DROP:
        message = (
            f"no {what} in the table keeps accuracy within {max_accuracy_drop:g} of the "
            f"full model's {reference_accuracy:.4f}"
            + ("; add 1.0 to the thresholds" if thresholds else "")
        )
    elif best is None:
        cheapest = min(rows, key=lambda row: row.relative_compute)
        message = (
            f"no {what} in the table fits a compute budget of {compute_budget:g}; the cheapest, "
            f"{policy_label(cheapest.policy, thresholds)}, needs {cheapest.relative_compute:.4f}"
        )
    elif goal == MAX_ACCURACY_DROP:
        message = (
            f"{policy_label(best.policy, thresholds)}: the cheapest within {max_accuracy_drop:g} "
            f"accuracy of the full model ({best.accuracy:.4f} vs {reference_accuracy:.4f}) at "
            f"relative compute {best.relative_compute:.4f}"
        )
    else:
        message = (
            f"{policy_label(best.policy, thresholds)}: the most accurate within a compute budget "
            f"of {compute_budget:g} (accuracy {best.accuracy:.4f} at relative compute "
            f"{best.relative_compute:.4f}; full model {reference_accuracy:.4f})"
        )
    return Recommendation(goal, limit, reference_accuracy, best, message)


def guaranteed_recommendation(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    rows: Sequence[SweepRow],
    reference_accuracy: Optional[float],
    risk: str,
    epsilon: float,
    delta: float = DEFAULT_DELTA,
    full_model: Optional[SweepRow] = None,
) -> Recommendation:
    """
    The cheapest policy of `rows` that the fixed-sequence test certifies, as a `Recommendation`
    carrying its `guarantee`. Each policy type of the rows is walked on its own, from its most
    conservative row down (`ExitPolicy.conservativeness`, fixed before the data is seen), at
    `delta` divided by the number of types: by the union bound the promise of the one chosen
    still holds with probability `1 - delta`. Where nothing is certified, the full model
    (`full_model`, or the rows' most expensive row).
    """
    by_type: Dict[type, List[ExitPolicy]] = {}
    for row in rows:
        by_type.setdefault(type(row.policy), []).append(row.policy)
    share = delta / len(by_type)
    results = [
        certify(head_probs, labels, walking_order(policies), risk, epsilon, share)
        for policies in by_type.values()
    ]
    by_policy = {row.policy: row for row in rows}
    fallback = full_model or max(rows, key=lambda row: row.relative_compute)
    guarantee = min(
        results, key=lambda result: by_policy.get(result.policy, fallback).relative_compute
    )
    return Recommendation(
        MAX_ACCURACY_DROP,
        epsilon,
        reference_accuracy,
        by_policy.get(guarantee.policy, fallback),
        guarantee.message,
        guarantee=guarantee,
    )


def walking_order(policies: Iterable[ExitPolicy]) -> List[ExitPolicy]:
    """The order a guarantee walks policies of one type in: the most conservative first."""
    return sorted(policies, key=lambda policy: policy.conservativeness(), reverse=True)


def recommend(
    rows: Sequence[SweepRow],
    full_model: Optional[SweepRow],
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    settings: SweepSettings,
    risk: Optional[str],
) -> List[Recommendation]:
    """
    Every recommendation of a sweep, in the order reports list them: for the accuracy goal the
    guaranteed pick (when `risk` is not `None`) and the plain one, then the one within the compute
    budget. On data without labels (`labels` `None`), only the guaranteed pick (of `consistency`).
    """
    epsilon, delta = settings.accuracy_goal, settings.delta
    reference = None if labels is None else full_model.accuracy
    recommendations = []
    if epsilon is not None and risk is not None:
        recommendations.append(
            guaranteed_recommendation(
                head_probs, labels, rows, reference, risk, epsilon, delta, full_model
            )
        )
    if labels is None:
        return recommendations
    if epsilon is not None:
        plain = recommend_threshold(rows, reference, max_accuracy_drop=epsilon)
        if risk is not None and plain.row is not None:
            note = unguaranteed_note(head_probs, labels, plain.row.policy, risk, delta)
            plain.message = f"{plain.message}; {note}"
        recommendations.append(plain)
    if settings.compute_budget is not None:
        recommendations.append(
            recommend_threshold(rows, reference, compute_budget=settings.compute_budget)
        )
    return recommendations


@dataclass
class HeldOutChoice:
    """
    A policy chosen on one labelled split (dev) for `max_accuracy_drop` (`on_dev`, whose `row` is
    `None` where no row met the goal), and its row on another (`on_eval`, of the fallback where
    nothing was chosen): the accuracy drop reported is then not the one chosen for.
    """

    max_accuracy_drop: float
    on_dev: Recommendation
    on_eval: SweepRow

    @property
    def policy(self) -> ExitPolicy:
        return self.on_eval.policy


def choose_on_dev(
    dev_rows: Sequence[SweepRow],
    dev_reference_accuracy: float,
    eval_rows: Sequence[SweepRow],
    max_accuracy_drops: Iterable[float],
    fallback: ExitPolicy = FULL_MODEL,
) -> List[HeldOutChoice]:
    """
    For each of `max_accuracy_drops`, the cheapest row of the dev table within that drop of
    `dev_reference_accuracy` (the full model's accuracy on dev; see `recommend_threshold`), or
    `fallback` (by default the full model) when none is, with the same policy's row of the
    evaluation table.

    # Raises

    `ConfigurationError` as `recommend_threshold` does, or when the evaluation table has no row
    of a chosen policy (sweep both splits over the same grid).
    """
    by_policy = {row.policy: row for row in eval_rows}
    choices = []
    for drop in max_accuracy_drops:
        on_dev = recommend_threshold(dev_rows, dev_reference_accuracy, max_accuracy_drop=drop)
        policy = on_dev.policy if on_dev.policy is not None else fallback
        if policy not in by_policy:
            raise ConfigurationError(
                f"the evaluation table has no row of {policy.describe()}, chosen on dev: sweep "
                "both splits over the same grid"
            )
        choices.append(HeldOutChoice(drop, on_dev, by_policy[policy]))
    return choices
