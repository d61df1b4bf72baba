"""
Grids for sweeps: the default threshold grid, user-given thresholds and their validation, the grid
of exit policies of each type a sweep evaluates, and how reports name a policy of a grid.
"""

from typing import Dict, Iterable, List, Optional, Sequence

from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies.exit_policy import fraction_grid
from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    ExitPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)
from early_exit.modules.exit_policies.entropy import NEAR_ZERO_THRESHOLDS
from early_exit.modules.exit_policies.max_probability import NEAR_ONE_THRESHOLDS

# One policy of each type a sweep knows, by name, in the order `--policy all` sweeps them; its
# `sweep_grid` gives the type's grid.
SWEPT_POLICIES: Dict[str, ExitPolicy] = {
    "max_probability": MaxProbabilityPolicy(1.0),
    "entropy": EntropyPolicy(0.0),
    "patience": PatiencePolicy(1),
    "confident_patience": ConfidentPatiencePolicy(1.0, 1),
}
ALL_POLICIES = "all"
# The reference of every timing and of a sweep's accuracy drop, and the fallback of every choice:
# no early exit.
FULL_MODEL = MaxProbabilityPolicy(1.0)

# The extra points of the threshold grids of a `--grid-step`, where each policy decides most.
_NEAR_POINTS = {"max_probability": NEAR_ONE_THRESHOLDS, "entropy": NEAR_ZERO_THRESHOLDS}

# Thresholds are rounded to this many decimals, so that 0.1 * 3 is 0.3 and grids have no duplicates.
_DECIMALS = 10


def check_thresholds(thresholds: Iterable[float], name: str = "thresholds") -> List[float]:
    """Thresholds sorted and de-duplicated; a `ConfigurationError` for none or one out of [0, 1]."""
    checked = set()
    for threshold in thresholds:
        if isinstance(threshold, bool):
            raise ConfigurationError(f"{name} must be numbers in [0, 1], got {threshold!r}")
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{name} must be numbers in [0, 1], got {threshold!r}"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must be in [0, 1], got {threshold}")
        checked.add(round(value, _DECIMALS))
    if not checked:
        raise ConfigurationError(f"no {name} given")
    return sorted(checked)


def parse_thresholds(text: str, name: str = "thresholds") -> List[float]:
    """`"0.5,0.9,0.99"` as thresholds (see `check_thresholds`)."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    values = []
    for entry in entries:
        try:
            values.append(float(entry))
        except ValueError:
            raise ConfigurationError(
                f"{name} must be comma-separated numbers in [0, 1], e.g. 0.5,0.9,0.99; "
                f"got {entry!r} in {text!r}"
            ) from None
    return check_thresholds(values, name)


def default_threshold_grid(
    grid_step: float = 0.01, near_one: Sequence[float] = NEAR_ONE_THRESHOLDS
) -> List[float]:
    """
    `0, grid_step, 2 * grid_step, ..., 1.0` and the `near_one` points, sorted; a
    `ConfigurationError` for a `grid_step` out of (0, 1].
    """
    try:
        grid_step = float(grid_step)
    except (TypeError, ValueError):
        raise ConfigurationError(f"grid step must be a number in (0, 1], got {grid_step!r}")
    if not 0.0 < grid_step <= 1.0:
        raise ConfigurationError(f"grid step must be in (0, 1], got {grid_step}")
    return check_thresholds(fraction_grid(grid_step, near_one))


def policy_names(policy: str) -> List[str]:
    """The policy types `policy` names: one of `SWEPT_POLICIES`, or all of them for `"all"`."""
    if policy == ALL_POLICIES:
        return list(SWEPT_POLICIES)
    if policy not in SWEPT_POLICIES:
        raise ConfigurationError(
            f"unknown exit policy {policy!r}; choose one of "
            f"{', '.join(list(SWEPT_POLICIES) + [ALL_POLICIES])}"
        )
    return [policy]


def policy_grid(
    name: str,
    num_heads: int,
    thresholds: Optional[Sequence[float]] = None,
    grid_step: Optional[float] = None,
) -> List[ExitPolicy]:
    """
    The policies of type `name` a sweep evaluates, from the most aggressive (the cheapest) to the
    most conservative, as the sweep table lists them.

    By default the type's own `sweep_grid`. `thresholds` (checked, see `check_thresholds`) replace
    the thresholds of a policy that has one (for `confident_patience`, combined with every
    patience of its grid); `grid_step` makes the grid `0, grid_step, ..., 1.0` plus the points
    where the policy decides most (see `default_threshold_grid`) for `max_probability` and
    `entropy`. These grids always have the threshold that never exits early (1.0 for
    `max_probability`, 0 for `entropy`), so that the curve ends at the full model. A type that
    takes neither ignores them.
    """
    default = SWEPT_POLICIES[name].sweep_grid(num_heads)[::-1]  # the most aggressive first
    if grid_step is not None and thresholds is None and name in _NEAR_POINTS:
        thresholds = default_threshold_grid(grid_step, _NEAR_POINTS[name])
    if thresholds is None or "threshold" not in default[0].parameters():
        return default
    values = check_thresholds(thresholds)
    if name == "confident_patience":
        patiences = {policy.patience for policy in default}
        grid = [ConfidentPatiencePolicy(value, p) for p in patiences for value in values]
    else:
        policy_type = type(SWEPT_POLICIES[name])
        ends = [end for end in (0.0, 1.0) if policy_type(end).never_exits_early(num_heads)]
        grid = [policy_type(value) for value in check_thresholds(values + ends)]
    return sorted(grid, key=lambda policy: policy.conservativeness())  # the most aggressive first


def sweep_grid(
    policy: str,
    num_heads: int,
    thresholds: Optional[Sequence[float]] = None,
    grid_step: Optional[float] = None,
) -> List[ExitPolicy]:
    """
    Every policy a sweep of `policy` (see `policy_names`) evaluates: type after type, each as
    `policy_grid` gives it; a `ConfigurationError` as `check_grid_settings` says.
    """
    check_grid_settings(policy, thresholds, grid_step)
    return [
        each
        for name in policy_names(policy)
        for each in policy_grid(name, num_heads, thresholds, grid_step)
    ]


def check_grid_settings(
    policy: str, thresholds: Optional[Sequence[float]], grid_step: Optional[float]
) -> None:
    """
    A `ConfigurationError` for an unknown policy, thresholds out of [0, 1] or a grid step out of
    (0, 1], and for thresholds or a grid step given to a sweep none of whose policies takes them.
    """
    names = policy_names(policy)
    if thresholds is not None and not any(
        "threshold" in SWEPT_POLICIES[name].parameters() for name in names
    ):
        raise ConfigurationError(f"thresholds do not apply to {policy}, which has none")
    if grid_step is not None and not any(name in _NEAR_POINTS for name in names):
        raise ConfigurationError(
            f"a grid step applies to max_probability and entropy, not to {policy}"
        )
    if grid_step is not None and thresholds is None:
        default_threshold_grid(grid_step)
    if thresholds is not None:
        check_thresholds(thresholds)


def thresholds_only(policies: Iterable[ExitPolicy]) -> bool:
    """
    True when every policy is of the `max_probability` type: a table of confidence thresholds,
    whose reports name each row by its threshold alone.
    """
    return all(isinstance(policy, MaxProbabilityPolicy) for policy in policies)


def policy_label(policy: ExitPolicy, thresholds: Optional[bool] = None, form: str = "text") -> str:
    """
    How reports and messages name a policy. In a table of confidence thresholds only (`thresholds`,
    see `thresholds_only`; by default, for a `max_probability` policy) by its threshold: `threshold
    0.9` in text, `0.9` in a table `cell` under a threshold column; otherwise as
    `ExitPolicy.describe()`, e.g. `entropy(threshold=0.31)`. In `parameters` form, its parameters
    alone (`threshold=0.9, patience=2`), for a table of one policy type.
    """
    if form == "parameters":
        return ", ".join(f"{key}={value}" for key, value in policy.parameters().items())
    if thresholds is None:
        thresholds = isinstance(policy, MaxProbabilityPolicy)
    if not thresholds:
        return policy.describe()
    return f"{policy.threshold:g}" if form == "cell" else f"threshold {policy.threshold:g}"
