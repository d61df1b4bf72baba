"""
Choosing an exit policy (a confidence threshold, by default) from a sweep table for a user's goal,
and choosing on a dev split what is then reported on an evaluation split.
"""

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy
from early_exit.sweep.risk_control import RiskControlResult
from early_exit.sweep.sweep_table import SweepRow

# Accuracies are fractions of a finite data set; this absorbs float noise in comparisons.
_TOLERANCE = 1e-9

MAX_ACCURACY_DROP = "max_accuracy_drop"
COMPUTE_BUDGET = "compute_budget"


@dataclass
class Recommendation:
    """
    The exit policy (by default a threshold) a sweep recommends for one goal.

    # Attributes

    goal : `str`
        `"max_accuracy_drop"` or `"compute_budget"`.
    limit : `float`
        The allowed accuracy drop (absolute, e.g. 0.01 for one point) or the compute budget (a
        fraction of the full encoder's layers).
    reference_accuracy : `float`
        The full model's accuracy (no early exit).
    row : `SweepRow`, optional
        The recommended row; `None` when no row in the table meets the goal.
    message : `str`
        One sentence saying what was chosen and why (or why nothing was).
    guarantee : `RiskControlResult`, optional
        For a threshold certified on new data (see `risk_control`): the test and its promise.
    """

    goal: str
    limit: float
    reference_accuracy: float
    row: Optional[SweepRow]
    message: str
    guarantee: Optional[RiskControlResult] = None

    @property
    def threshold(self) -> Optional[float]:
        return None if self.row is None else self.row.threshold

    @property
    def policy(self) -> Optional[ExitPolicy]:
        return None if self.row is None else self.row.policy


def thresholds_only(policies: Iterable[ExitPolicy]) -> bool:
    """
    True when every policy is of the `max_probability` type: a table of confidence thresholds,
    whose reports name each row by its threshold alone.
    """
    return all(isinstance(policy, MaxProbabilityPolicy) for policy in policies)


def policy_label(policy: ExitPolicy, thresholds: bool) -> str:
    """
    How reports name a row's policy: `threshold 0.9` in a table of confidence thresholds only (see
    `thresholds_only`), otherwise `ExitPolicy.describe()`, e.g. `entropy(threshold=0.31)`.
    """
    return f"threshold {policy.threshold:g}" if thresholds else policy.describe()


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


def check_goals(
    max_accuracy_drop: Optional[float] = None, compute_budget: Optional[float] = None
) -> None:
    """
    Checks the limits of recommendation goals: an accuracy drop in [0, 1] and a compute budget in
    (0, 1]; either may be `None`.

    # Raises

    `ConfigurationError` for a limit out of range.
    """
    if max_accuracy_drop is not None and not 0.0 <= max_accuracy_drop <= 1.0:
        raise ConfigurationError(
            f"the maximum accuracy drop must be in [0, 1] (0.01 is one accuracy point), "
            f"got {max_accuracy_drop}"
        )
    if compute_budget is not None and not 0.0 < compute_budget <= 1.0:
        raise ConfigurationError(
            f"the compute budget must be in (0, 1] (a fraction of the encoder's layers), "
            f"got {compute_budget}"
        )


def recommend_threshold(
    rows: Sequence[SweepRow],
    reference_accuracy: float,
    max_accuracy_drop: Optional[float] = None,
    compute_budget: Optional[float] = None,
) -> Recommendation:
    """
    Recommends a row (an exit policy and its parameters) from a sweep table, of any policies, for
    exactly one of two goals:

    - `max_accuracy_drop`: the cheapest row (lowest `relative_compute`) whose accuracy is at least
      `reference_accuracy - max_accuracy_drop`; among equally cheap ones the most accurate;
    - `compute_budget`: the most accurate row whose `relative_compute` is at most `compute_budget`;
      among equally accurate ones the cheapest.

    Remaining ties go to the policy type listed first, then to its most conservative setting (the
    one listed last; for confidence thresholds sorted in ascending order, the highest: the most
    cautious on new data). The message names the row as `policy_label` does.

    # Parameters

    rows : `Sequence[SweepRow]`
        The sweep table, each policy type from the most aggressive to the most conservative.
    reference_accuracy : `float`
        The full model's accuracy (no early exit).
    max_accuracy_drop : `float`, optional
        Absolute accuracy drop allowed, >= 0 (0.01 is one accuracy point).
    compute_budget : `float`, optional
        Largest allowed `relative_compute`, in (0, 1].

    # Raises

    `ConfigurationError` if not exactly one goal is given, a limit is out of range, or the table is
    empty.
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
        floor = reference_accuracy - max_accuracy_drop
        candidates = [row for row in rows if row.accuracy >= floor - _TOLERANCE]
        if not candidates:
            return Recommendation(
                MAX_ACCURACY_DROP,
                max_accuracy_drop,
                reference_accuracy,
                None,
                f"no {what} in the table keeps accuracy within {max_accuracy_drop:g} of the "
                f"full model's {reference_accuracy:.4f}"
                + ("; add 1.0 to the thresholds" if thresholds else ""),
            )
        best = max(
            candidates, key=lambda row: (-row.relative_compute, row.accuracy, preference(row))
        )
        message = (
            f"{policy_label(best.policy, thresholds)}: the cheapest within {max_accuracy_drop:g} "
            f"accuracy of the full model ({best.accuracy:.4f} vs {reference_accuracy:.4f}) at "
            f"relative compute {best.relative_compute:.4f}"
        )
        return Recommendation(
            MAX_ACCURACY_DROP, max_accuracy_drop, reference_accuracy, best, message
        )

    candidates = [row for row in rows if row.relative_compute <= compute_budget + _TOLERANCE]
    if not candidates:
        cheapest = min(rows, key=lambda row: row.relative_compute)
        return Recommendation(
            COMPUTE_BUDGET,
            compute_budget,
            reference_accuracy,
            None,
            f"no {what} in the table fits a compute budget of {compute_budget:g}; the cheapest, "
            f"{policy_label(cheapest.policy, thresholds)}, needs {cheapest.relative_compute:.4f}",
        )
    best = max(candidates, key=lambda row: (row.accuracy, -row.relative_compute, preference(row)))
    message = (
        f"{policy_label(best.policy, thresholds)}: the most accurate within a compute budget of "
        f"{compute_budget:g} (accuracy {best.accuracy:.4f} at relative compute "
        f"{best.relative_compute:.4f}; full model {reference_accuracy:.4f})"
    )
    return Recommendation(COMPUTE_BUDGET, compute_budget, reference_accuracy, best, message)


@dataclass
class HeldOutChoice:
    """
    A policy chosen on one labelled split (dev) for an accuracy drop, and its row on another (the
    evaluation split): the accuracy drop reported is then not the one the policy was chosen for.

    # Attributes

    max_accuracy_drop : `float`
    on_dev : `Recommendation`
        The recommendation on dev; its `row` is `None` when no row there met the goal.
    on_eval : `SweepRow`
        The evaluation split's row of the recommended policy, or of the fallback (the full model)
        when nothing was recommended.
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
    fallback: ExitPolicy = MaxProbabilityPolicy(1.0),
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
