"""
The settings of one sweep, validated once where they are built: `allennlp sweep-thresholds` takes
its option defaults from `SweepSettings`, and `run_sweep` and `sweep_model` build one from their
keyword arguments, so the command line and the Python API share every default and every check.
"""

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.risk_control import ACCURACY, CONSISTENCY, DEFAULT_DELTA, RISKS
from early_exit.sweep.risk_control import check_risk_settings
from early_exit.sweep.thresholds import (
    SWEPT_POLICIES,
    check_grid_settings,
    check_thresholds,
    policy_names,
    sweep_grid,
)

DEFAULT_MAX_ACCURACY_DROP = 0.01
AUTO = "auto"
NO_GUARANTEE = "none"
RISK_CHOICES = (AUTO,) + RISKS + (NO_GUARANTEE,)


@dataclass(frozen=True)
class SweepSettings:
    """
    What a sweep does. Building one checks every field (`ConfigurationError` naming the problem),
    so a mistake costs no model loading and no run of the heads.

    # Parameters

    policy : `str`, optional (default = `"max_probability"`)
        The exit policy to sweep (one of `SWEPT_POLICIES`), or `"all"` for every one in one table.
    thresholds : `Sequence[float]`, optional
        Replace the thresholds of the policies that have one (see `policy_grid`).
    grid_step : `float`, optional
        The step of the threshold grids of `max_probability` and `entropy`.
    batch_size : `int`, optional (default = `32`)
        For running every head once.
    max_accuracy_drop, compute_budget : `float`, optional
        Recommend the cheapest row within this absolute accuracy drop of the full model, the most
        accurate within this relative compute; without either goal, the accuracy drop
        `DEFAULT_MAX_ACCURACY_DROP` (see `accuracy_goal`).
    risk : `str`, optional (default = `"auto"`)
        With an accuracy goal, first recommend the setting certified on new data (see
        `risk_control`): `accuracy`, `consistency`, `auto` (`accuracy` on labelled data,
        `consistency` without labels) or `none` (the plain pick only; as `None`).
    delta : `float`, optional (default = `0.05`)
        The allowed probability that the certified setting breaks its promise.
    timing, timing_thresholds, timing_batch_sizes, repeats, timing_instances
        Whether to time real inference; the policies to time (floats: thresholds of the swept
        `max_probability` or `entropy`; by default a few spread over each curve, the recommended
        ones and the full model); at which batch sizes; the median of how many repeats; on the
        first how many instances (`None`: all).
    """

    policy: str = "max_probability"
    thresholds: Optional[Sequence[float]] = None
    grid_step: Optional[float] = None
    batch_size: int = 32
    max_accuracy_drop: Optional[float] = None
    compute_budget: Optional[float] = None
    risk: Optional[str] = AUTO
    delta: float = DEFAULT_DELTA
    timing: bool = True
    timing_thresholds: Optional[Sequence[Union[float, ExitPolicy]]] = None
    timing_batch_sizes: Sequence[int] = (1, 32)
    repeats: int = 3
    timing_instances: Optional[int] = 200

    def __post_init__(self) -> None:
        check_goals(self.max_accuracy_drop, self.compute_budget)
        policy_names(self.policy)
        if self.risk not in (None,) + RISK_CHOICES:
            raise ConfigurationError(
                f"unknown risk {self.risk!r}; choose from {', '.join(RISK_CHOICES)}"
            )
        if self.guaranteed:
            check_risk_settings(
                self.max_accuracy_drop, self.delta, "--max-accuracy-drop", "--delta"
            )
        for name, value, smallest in (
            ("batch size", self.batch_size, self.batch_size),
            (
                "timing instances",
                self.timing_instances,
                1 if self.timing_instances is None else self.timing_instances,
            ),
            ("repeats", self.repeats, self.repeats),
            ("timing batch sizes", self.timing_batch_sizes, min(self.timing_batch_sizes or [1])),
        ):
            if smallest < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {value}")
        check_grid_settings(self.policy, self.thresholds, self.grid_step)
        if self.timing_thresholds is not None:
            timed = _timing_policies(self.policy, self.timing_thresholds)
            object.__setattr__(self, "timing_thresholds", timed)

    def replace(self, **changes) -> "SweepSettings":
        """A copy with `changes` (checked again), or these settings where there are none."""
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def guaranteed(self) -> bool:
        """Whether a guarantee is asked for (any risk but `none`)."""
        return self.risk not in (None, NO_GUARANTEE)

    @property
    def accuracy_goal(self) -> Optional[float]:
        """The accuracy drop to recommend for: as given, or the default when no goal is."""
        if self.max_accuracy_drop is None and self.compute_budget is None:
            return DEFAULT_MAX_ACCURACY_DROP
        return self.max_accuracy_drop

    def grid(self, num_heads: int) -> List[ExitPolicy]:
        """Every policy the sweep evaluates (see `sweep_grid`)."""
        return sweep_grid(self.policy, num_heads, self.thresholds, self.grid_step)

    def risk_for(self, num_unlabelled: int, num_instances: int) -> Optional[str]:
        """
        The risk to control on data with `num_unlabelled` of `num_instances` without a gold
        label: `None` for no guarantee; `auto` is `accuracy` on labelled data and `consistency`
        on data without labels.

        # Raises

        `ConfigurationError` for data without (all) labels where the risk needs them.
        """
        risk = self.risk if self.guaranteed else None
        if risk == AUTO:
            risk = CONSISTENCY if num_unlabelled == num_instances else ACCURACY
        if num_unlabelled and risk != CONSISTENCY:
            raise ConfigurationError(
                f"{num_unlabelled} of {num_instances} instances have no gold label; "
                f"{'a sweep without a guarantee' if risk is None else f'the {risk} risk'} needs "
                "labelled data, the consistency risk (--risk consistency) does not"
            )
        return risk


def check_goals(
    max_accuracy_drop: Optional[float] = None, compute_budget: Optional[float] = None
) -> None:
    """A `ConfigurationError` for an accuracy drop out of [0, 1], a compute budget out of (0, 1]."""
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


def _timing_policies(policy: str, timing: Sequence[Union[float, ExitPolicy]]) -> List[ExitPolicy]:
    """Exit policies as given, a float as a threshold of the swept max_probability or entropy."""
    if all(isinstance(each, ExitPolicy) for each in timing):
        return list(timing)
    example = SWEPT_POLICIES.get(policy)
    if example is None or list(example.parameters()) != ["threshold"]:
        raise ConfigurationError(
            f"timing thresholds apply to a sweep of max_probability or entropy, not of {policy}"
        )
    values = check_thresholds(
        [each for each in timing if not isinstance(each, ExitPolicy)], "timing thresholds"
    )
    return [each for each in timing if isinstance(each, ExitPolicy)] + [
        type(example)(value) for value in values
    ]
