import logging
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from overrides import overrides

from early_exit.modules.exit_policies.compute_window import ComputeWindow
from early_exit.modules.exit_policies.entropy import EntropyPolicy, normalised_entropy
from early_exit.modules.exit_policies.exit_policy import (
    ExitDecision,
    ExitPolicy,
    exit_mask,
    check_fraction,
)
from early_exit.modules.exit_policies.max_probability import MaxProbabilityPolicy
from early_exit.modules.exit_policies.reached_scores import ReachedScores

# The controller's coordinate `u` of a threshold: larger `u` computes more. `-log(1 - t)` for a
# maximum probability and `-log(s)` for an entropy spread the thresholds where confident models
# decide (0.99, 0.999, ...; 0.01, 0.001, ...) evenly, so that one gain fits every part of the range.
# `u` runs from 0 (every row exits at the first head) to U_MAX (threshold 0.999999, entropy 1e-6).
U_MAX = math.log(1e6)
_COORDINATES: Dict[str, Tuple[Callable[[float], float], Callable[[float], float]]] = {
    "max_probability": (lambda t: -math.log(max(1.0 - t, 1e-300)), lambda u: 1.0 - math.exp(-u)),
    "entropy": (lambda s: -math.log(max(s, 1e-300)), lambda u: math.exp(-u)),
}
# Each row's score in `u` at one head, `(num_rows, num_labels)` -> `(num_rows,)` in float64: a row
# exits where its score reaches the threshold's `u`.
_SCORES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_probability": lambda probs: -torch.log1p(-probs.max(dim=-1).values.double()),
    "entropy": lambda probs: -torch.log(normalised_entropy(probs).double()),
}
logger = logging.getLogger(__name__)
_WRAPPED = {"max_probability": MaxProbabilityPolicy, "entropy": EntropyPolicy}

# Measured by `python -m scripts.results.budget` on a constructed step in difficulty and on the
# SST-2 and AG News models' drifting streams (docs/results.md, "Holding a compute budget"): the
# window and settings with the smallest worst-window overshoot at a mean within 0.01 of the budget;
# then payback gain 3 for 2: more of that section's targets met (windows), none lost.
DEFAULT_WINDOW = 200
INTEGRAL_GAIN = 20.0
PROPORTIONAL_GAIN = 10.0
PAYBACK_GAIN = 3.0
# The proportional term's error is averaged over the last `window / EMA_WINDOWS` instances or so:
# short enough to answer a step in difficulty before the window's mean shows all of it.
EMA_WINDOWS = 4.0
# The compute curve the threshold is read from is that of the last `window * SPAN` instances or
# so: recent enough to answer a step in difficulty within a batch or two.
SPAN = 0.25
# The controller aims this far under the budget: the budget is a ceiling.
MARGIN = 0.005
# No deadband and no step limit by default: both lose more mean and window targets than they gain
# in accuracy (docs/results.md, "The controller's candidates").
DEADBAND = 0.0


@ExitPolicy.register("compute_budget")
class ComputeBudgetPolicy(ExitPolicy):
    """
    Holds a compute budget on a live stream: wraps a threshold policy (`max_probability` or
    `entropy`) and, after each batch, moves its threshold so that the mean relative compute over
    the last `window` instances stays at the `budget` while the mix of inputs changes (a fixed
    threshold chosen on dev spends more where the stream gets harder or longer, and nothing
    notices).

    The controller is proportional-integral on the threshold's coordinate `u` (`-log(1 - t)` for
    a maximum probability, `-log(s)` for an entropy; larger `u` computes more), capped by what the
    recent rows' confidences say, with no clock: after a batch of `n` instances,

        I <- clip(I - integral_gain * n / window * (m - target))
        u <- min(I - proportional_gain * e, cap(target - payback_gain * (m - target)))

    with `m` the mean compute of the last `window` instances and `e` the error (compute -
    target) averaged over about the last window / 4 instances, each `u` clipped to [0, U_MAX],
    and the target `MARGIN` (0.005) under the budget (a ceiling). The integral term moves until
    the window's mean is at the target (an error that has left the window is not paid back
    later: no overspending after a cheap start); the proportional term answers a drift. `cap(c)`
    is the `u` at which about the last window / 4 instances would have spent `c` on average: the
    policy keeps each row's running maximum confidence at every head it ran through, and for any
    threshold lower than the one a row was decided with, the row's exit is known exactly
    (`ReachedScores`). So a step in difficulty is answered in the next batch, and the coming rows
    pay back what the window overspent before it was seen; going up (where a row's exit is only
    bounded) stays with the gradual PI rule. Both advance per instance, so batch sizes 1 and 32
    behave alike. The rule, gains and default window were chosen among measured candidates
    (docs/results.md, "Holding a compute budget on a drifting stream").

    Every row of a batch is decided with the threshold in force when the batch comes (the model's
    outputs carry it as `exit_threshold`); the batch's exits then move it. Decisions therefore
    depend on the order of the input and the batch size (not on the clock: the same order and
    batch size give the same outputs), and a `BatchStream` runs each batch whole instead of
    carrying rows into later batches. The rule of each decision is the wrapped policy's own.

    Registered as an `ExitPolicy` with name "compute_budget".

    # Parameters

    budget : `float`
        The mean relative compute to hold, in (0, 1]; at least the first head's compute.
    policy : `str`, optional (default = `"max_probability"`)
        The policy whose threshold is adapted: `"max_probability"` or `"entropy"`. `patience`'s
        integer cannot be moved by small steps and is refused.
    window : `int`, optional (default = `DEFAULT_WINDOW`, 200)
        How many recent instances the mean compute is held over, at least 1.
    start : `float`, optional
        The threshold to start from. Without it the policy starts where the archive's dev compute
        curve of the wrapped policy (stored by `allennlp calibrate` and the calibration callback)
        reaches the budget; with no curve (an archive calibrated before they were stored, or a
        policy used on arrays) at the cheapest setting (every row exits at the first head),
        rising from there, so the warm-up never overspends (a log line says so).
    integral_gain : `float`, optional (default = `INTEGRAL_GAIN`)
    proportional_gain : `float`, optional (default = `PROPORTIONAL_GAIN`)
    payback_gain : `float`, optional (default = `PAYBACK_GAIN`)
        The controller's gains (see above), at least 0; the defaults are the measured ones
        (`payback_gain` 0: no cap, the PI rule alone).
    deadband : `float`, optional (default = `DEADBAND`, 0)
        How many standard errors of the window's mean (the recent computes' standard deviation
        over the square root of the window) count as sampling noise, at least 0: the error of
        the integral term and of the cap is moved that much towards 0 (none within it), the
        proportional term's twice that (it averages a quarter of the window). Swings the
        threshold less on a stream without drift, but holds the mean and the windows less
        tightly (measured: not the default).
    max_step : `float`, optional (default = `None`)
        At most how far (in `u`) the threshold moves per `window` instances by the PI rule (in
        proportion per batch), at least 0; the cap may still lower it at once. `None`: no limit
        (measured: a limit leaves the mean under the budget after each cap, so none by default).
    """

    def __init__(
        self,
        budget: float,
        policy: str = "max_probability",
        window: int = DEFAULT_WINDOW,
        start: Optional[float] = None,
        integral_gain: float = INTEGRAL_GAIN,
        proportional_gain: float = PROPORTIONAL_GAIN,
        payback_gain: float = PAYBACK_GAIN,
        deadband: float = DEADBAND,
        max_step: Optional[float] = None,
    ) -> None:
        self.budget, self.window = _check_budget(budget), _check_window(window)
        self.policy = _check_wrapped(policy)
        self.start = None if start is None else check_fraction("start", start)
        self.integral_gain = _check_gain("integral_gain", integral_gain)
        self.proportional_gain = _check_gain("proportional_gain", proportional_gain)
        self.payback_gain = _check_gain("payback_gain", payback_gain)
        self.deadband = _check_gain("deadband", deadband)
        self.max_step = None if max_step is None else _check_gain("max_step", max_step)
        self._to_u, self._from_u = _COORDINATES[self.policy]
        u = 0.0 if self.start is None else min(max(self._to_u(self.start), 0.0), U_MAX)
        self._integral = u
        self._recent_error = 0.0  # the error's moving average over about window / EMA_WINDOWS
        self._recent = ComputeWindow(self.window)  # the controller's window
        self._scores = ReachedScores(max(int(self.window * SPAN), 1))
        self._head_compute: Sequence[float] = ()
        self._set(u)
        self._reset_statistics()
        self._checked_heads: Optional[Tuple[float, ...]] = None
        self._curves_seen = self.start is not None  # a given start is kept

    @classmethod
    @overrides
    def check_params(cls, params: Params) -> None:
        """The settings checked before allennlp converts them (`true` to 1) or refuses a string."""
        for name, check in (("budget", _check_budget), ("window", _check_window)):
            if params.get(name) is not None:
                check(params.get(name))
        if params.get("start") is not None:
            check_fraction("start", params.get("start"))
        if params.get("policy") is not None:
            _check_wrapped(params.get("policy"))
        for name in ("integral_gain", "proportional_gain", "payback_gain", "deadband", "max_step"):
            if params.get(name) is not None:
                _check_gain(name, params.get(name))

    @property
    def threshold(self) -> float:
        """The wrapped policy's threshold in force now (the next batch is decided with it)."""
        return self._current.threshold

    @overrides
    def adapted_threshold(self) -> Optional[float]:
        return self._current.threshold

    @overrides
    def check_heads(self, head_compute: Sequence[float]) -> None:
        key = tuple(head_compute)
        if key == self._checked_heads:
            return
        self._head_compute = key
        if self.budget < head_compute[0] - 1e-9:
            raise ConfigurationError(
                f"compute_budget: budget {self.budget:g} is below the relative compute of the "
                f"model's first head ({head_compute[0]:.4g}): no exit spends that little"
            )
        self._checked_heads = key

    @overrides
    def use_compute_curves(self, curves: Optional[Dict[str, List[List[float]]]]) -> None:
        """
        Before the first batch, without a `start`: starts at the threshold whose compute on the
        dev curve of the wrapped policy is the largest within the controller's target (`MARGIN`
        under the budget).
        """
        if self._curves_seen:
            return
        self._curves_seen = True
        if self._statistics.seen:  # already running
            return
        curve = (curves or {}).get(self.policy)
        if not curve:
            logger.warning(
                "compute_budget: the model holds no dev compute curve for %s (an archive "
                "calibrated before they were stored); starting at the cheapest setting. Give "
                "start, or recalibrate with allennlp calibrate, to start at the budget.",
                self.policy,
            )
            return
        target = self.budget - MARGIN  # where the controller aims
        fits = [(compute, threshold) for threshold, compute in curve if compute <= target]
        if fits:
            u = min(max(self._to_u(max(fits)[1]), 0.0), U_MAX)
            self._integral = u
            self._set(u)

    @overrides
    def initial_state(self, num_rows: int, device: torch.device) -> Optional[torch.Tensor]:
        """
        `(num_rows, 3)`: each row's running maximum score so far, the next head's index, and
        whether it has exited (`exit_heads` shows exited rows the later heads too). A batch starts.
        """
        self._scores.start_batch()
        state = torch.zeros((num_rows, 3), dtype=torch.double, device=device)
        state[:, 0] = -math.inf
        return state

    @overrides
    def decide(self, probs: torch.Tensor, state: Optional[torch.Tensor]) -> ExitDecision:
        """The wrapped policy's decision; the running maximum scores are kept for `observe`."""
        decision = self._current.decide(probs, None)
        if state is None or not probs.shape[0]:
            return decision
        running = state[:, 2] == 0  # (num_rows,): the rows that reached this head
        reached = torch.maximum(state[:, 0], _SCORES[self.policy](probs))  # (num_rows,)
        self._scores.add(int(state[0, 1]), reached[running].tolist())
        exits = exit_mask(decision, probs.shape[0], probs.device)  # (num_rows,)
        state = torch.stack(
            [torch.where(running, reached, state[:, 0]), state[:, 1] + 1, state[:, 2] + exits], 1
        )  # (num_rows, 3)
        return ExitDecision(decision.count, decision.exits, state)

    @overrides
    def never_exits_early(self, num_heads: int) -> bool:
        return self._current.never_exits_early(num_heads)

    @overrides
    def adapts(self) -> bool:
        return True

    @overrides
    def observe(self, computes: Sequence[float]) -> None:
        """The controller's step after a batch, from its instances' relative computes."""
        if not computes:
            return
        threshold = self._current.threshold
        self._low, self._high = min(self._low, threshold), max(self._high, threshold)
        self._statistics.add(computes)
        self._recent.add(computes)
        known = self._scores.finish_batch(len(computes))
        rate, target = min(EMA_WINDOWS / self.window, 1.0), max(self.budget - MARGIN, 0.0)
        for compute in computes:  # per instance, so that batch sizes 1 and 32 agree
            self._recent_error += rate * (compute - target - self._recent_error)
        # Errors within `deadband` standard errors of the window's mean are sampling noise (the
        # standard error sums over the whole window: only computed where a deadband is set).
        band = self.deadband * self._recent.standard_error if self.deadband else 0.0
        error = _shrink(self._recent.mean - target, band)
        step = self.integral_gain * len(computes) / self.window * error
        self._integral = min(max(self._integral - step, 0.0), U_MAX)
        u = self._integral - self.proportional_gain * _shrink(self._recent_error, 2 * band)
        if self.max_step is not None:  # at most `max_step` per window of instances
            reach = self.max_step * len(computes) / self.window
            u = min(max(u, self._u - reach), self._u + reach)
        if known and self._head_compute and self.payback_gain > 0:  # heads known: check_heads
            # What the coming rows may spend so that the window comes back to the target.
            wanted = target - self.payback_gain * error
            cap = self._scores.threshold_for(wanted, self._head_compute)
            u = u if cap is None else min(u, cap)
        self._set(min(max(u, 0.0), U_MAX))

    def _set(self, u: float) -> None:
        self._u = u
        self._current = _WRAPPED[self.policy](min(max(self._from_u(u), 0.0), 1.0))

    def _reset_statistics(self) -> None:
        self._statistics = ComputeWindow(self.window)
        self._low, self._high = math.inf, -math.inf

    @overrides
    def metrics(self, reset: bool = False) -> Dict[str, float]:
        """
        `budget` and `window`; `max_window_compute`: the largest mean compute over `window`
        instances (the windows after the first; until one is full, the mean so far);
        `threshold_min` / `threshold_max`: the range of the thresholds instances were decided
        with; `threshold`: the one in force now. Since the last reset (the controller itself is
        not reset).
        """
        statistics = self._statistics
        worst = statistics.worst if statistics.worst is not None else statistics.overall
        seen = statistics.seen > 0
        metrics = {
            "budget": self.budget,
            "window": float(self.window),
            "max_window_compute": worst,
            "threshold_min": self._low if seen else self.threshold,
            "threshold_max": self._high if seen else self.threshold,
            "threshold": self.threshold,
        }
        if reset:
            self._reset_statistics()
        return metrics

    @overrides
    def parameters(self) -> Dict[str, Any]:
        parameters: Dict[str, Any] = {"budget": self.budget, "policy": self.policy}
        parameters["window"] = self.window
        if self.start is not None:
            parameters["start"] = self.start
        if self.payback_gain != PAYBACK_GAIN:
            parameters["payback_gain"] = self.payback_gain
        if self.integral_gain != INTEGRAL_GAIN:
            parameters["integral_gain"] = self.integral_gain
        if self.proportional_gain != PROPORTIONAL_GAIN:
            parameters["proportional_gain"] = self.proportional_gain
        if self.deadband != DEADBAND:
            parameters["deadband"] = self.deadband
        if self.max_step is not None:
            parameters["max_step"] = self.max_step
        return parameters

    @overrides
    def conservativeness(self) -> tuple:
        return (self.budget,)

    @overrides
    def sweep_grid(self, num_heads: int) -> List[ExitPolicy]:
        raise ConfigurationError(
            "compute_budget is not swept: sweep its wrapped policy (--policy max_probability) "
            "and give the threshold recommended at --compute-budget as its start"
        )


def _shrink(error: float, band: float) -> float:
    """`error` moved towards 0 by `band` (0 within it): a soft deadband."""
    return math.copysign(max(abs(error) - band, 0.0), error)


def _check_budget(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"compute_budget: budget must be a number in (0, 1], got {value!r}"
        )
    if not 0.0 < value <= 1.0:  # also false for NaN
        raise ConfigurationError(f"compute_budget: budget must be in (0, 1], got {value}")
    return float(value)


def _check_window(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"compute_budget: window must be an integer >= 1, got {value!r}")
    return value


def _check_gain(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(f"compute_budget: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _check_wrapped(value: Any) -> str:
    if value in _WRAPPED:
        return value
    if value in ("patience", "confident_patience"):
        raise ConfigurationError(
            f"compute_budget cannot adapt {value}: its patience is an integer (a step of one head "
            "is too coarse to hold a budget); use policy max_probability or entropy"
        )
    raise ConfigurationError(
        f"compute_budget: policy must be max_probability or entropy, got {value!r}"
    )
