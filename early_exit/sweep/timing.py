"""
Wall-clock timing of real early-exit inference under a few exit policies (by default confidence
thresholds), with the full model (no early exit) as the reference measured in the same run.
"""

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.tqdm import Tqdm
from allennlp.data import Instance

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.inference_settings import InferenceSettings
from early_exit.models.model_inputs import batch_on_device, inference_switches
from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy
from early_exit.sweep.sweep_table import SweepRow
from early_exit.sweep.thresholds import FULL_MODEL, check_thresholds


@dataclass
class TimingResult:
    """
    Measured inference time under one exit `policy` (`max_probability` at `threshold` when not
    given) at one batch size, on `num_instances` instances: the median over the repeats of the
    time of all of them (`seconds`, and per instance) and of the full model's time over this
    policy's in the same repeat (`speedup`; 1.0 for the full model), the mean fraction of the
    encoder's layers computed, and each repeat's time.
    """

    threshold: Optional[float]
    batch_size: int
    num_instances: int
    seconds: float
    seconds_per_instance: float
    speedup: float
    relative_compute: float
    repeat_seconds: List[float]
    policy: Optional[ExitPolicy] = field(default=None)

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = MaxProbabilityPolicy(self.threshold)

    def to_json(self) -> Dict[str, Any]:
        """The fields, with `policy` as `ExitPolicy.to_json()` gives it."""
        return {**self.__dict__, "policy": self.policy.to_json()}


def prepare_batches(
    model: EarlyExitClassifier, instances: Sequence[Instance], batch_size: int
) -> List[Dict[str, Any]]:
    """
    Indexes and pads `instances` into batches of `batch_size` once, as a data loader would (in data
    order), and moves them to the model's device, so that timing measures the model alone. Only the
    model's inputs are kept (no labels, so no loss is computed).
    """
    if batch_size < 1:
        raise ConfigurationError(f"batch size must be at least 1, got {batch_size}")
    return [
        {"tokens": batch_on_device(model, instances[start : start + batch_size])["tokens"]}
        for start in range(0, len(instances), batch_size)
    ]


def stopwatch(work: Callable[[], Any], cuda: bool = False) -> float:
    """
    The seconds `work()` takes; with `cuda`, the device's queued work is waited for before and
    after, so that the time is that of the work and not of queueing it.
    """
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    work()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_batches(
    model: EarlyExitClassifier,
    batches: Sequence[Dict[str, Any]],
    carry: bool,
    settings: Optional[InferenceSettings] = None,
) -> float:
    """
    The seconds one pass of `model` over `batches` takes: one stream of them
    (`EarlyExitClassifier.forward_stream`) with `carry`, otherwise a forward pass per batch; with
    `settings`, or the model's own.
    """

    def run() -> None:
        if carry:
            for _ in model.forward_stream(batches, settings=settings):
                pass
        else:
            for batch in batches:
                model(**batch, settings=settings)

    return stopwatch(run, cuda=next(model.parameters()).is_cuda)


def interleaved_times(
    runs: Sequence[Callable[[slice], float]],
    repeats: int,
    parts: Sequence[slice] = (slice(None),),
    warmup: bool = True,
    after_round: Optional[Callable[[int], None]] = None,
) -> List[List[float]]:
    """
    Times configurations side by side, so that a slow spell of the machine falls on all of them
    alike. `runs[i](part)` runs configuration `i` once over `part` (a slice) of its work and
    returns the seconds that took, measured by the run itself (e.g. with `stopwatch`, so that
    setting up a turn is not timed).

    With `warmup`, every run first goes once over every part, untimed. Then come `repeats` rounds:
    in each, part after part, every run takes its turn, in an order rotated from round to round
    (round `r`, from 0, starts with run `r mod len(runs)`); a run's time in a round is the sum of
    its parts' times. `after_round(r)` is called after the warm-up (`r` = 0) and after each round
    (`r` = 1 to `repeats`), e.g. to show progress.

    # Returns

    For each run, its time in each round, in order.
    """
    if repeats < 1:
        raise ConfigurationError(f"repeats must be at least 1, got {repeats}")
    if warmup:
        for run in runs:
            for part in parts:
                run(part)
        if after_round is not None:
            after_round(0)
    times: List[List[float]] = [[] for _ in runs]
    indices = list(range(len(runs)))
    for repeat in range(repeats):
        shift = repeat % len(runs)
        order = indices[shift:] + indices[:shift]
        total = [0.0] * len(runs)
        for part in parts:
            for index in order:
                total[index] += runs[index](part)
        for index, seconds in enumerate(total):
            times[index].append(seconds)
        if after_round is not None:
            after_round(repeat + 1)
    return times


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """
    The median of the per-round ratios `numerators[r] / denominators[r]`: a speedup is the
    reference's times over a configuration's times in the same rounds of `interleaved_times`.
    """
    return statistics.median(a / max(b, 1e-12) for a, b in zip(numerators, denominators))


def timed_policies(policies: Sequence[Union[float, ExitPolicy]]) -> List[ExitPolicy]:
    """
    The policies a timing runs: `policies` (a float is the `max_probability` threshold) and the full
    model, without duplicates. Thresholds alone are sorted (the full model last); policies keep
    their order, the full model after them.
    """
    if all(not isinstance(policy, ExitPolicy) for policy in policies):
        thresholds = check_thresholds(list(policies) + [FULL_MODEL.threshold], "timing thresholds")
        return [MaxProbabilityPolicy(threshold) for threshold in thresholds]
    policies = [
        policy if isinstance(policy, ExitPolicy) else MaxProbabilityPolicy(policy)
        for policy in policies
    ]
    return list(dict.fromkeys(policies + [FULL_MODEL]))


def measure_inference_time(
    model: EarlyExitClassifier,
    instances: Sequence[Instance],
    thresholds: Sequence[Union[float, ExitPolicy]],
    batch_size: int = 1,
    repeats: int = 3,
    warmup: bool = True,
    progress: bool = True,
    carry_rows: bool = True,
) -> List[TimingResult]:
    """
    Times the model's real early-exit forward pass (evaluation mode, `torch.inference_mode`) on
    `instances` batched by `batch_size`, under each of `thresholds` (exit policies, or confidence
    thresholds of `max_probability`) and the full model, the reference, side by side (see
    `interleaved_times`: a warm-up pass first with `warmup`). With `carry_rows`, batches of more
    than one go through the model as one stream (`EarlyExitClassifier.forward_stream`), as
    `allennlp predict` runs them. The model's exit policy, mode and metrics are left as found.
    One `TimingResult` per policy, in the order of `timed_policies`.
    """
    if not instances:
        raise ConfigurationError("no instances to time")
    policies = timed_policies(thresholds)
    batches = prepare_batches(model, instances, batch_size)
    carry = carry_rows and batch_size > 1
    compute: Dict[ExitPolicy, float] = {}

    base = model.inference_settings().replace(run_all_heads=False)

    def runner(policy: ExitPolicy) -> Callable[[slice], float]:
        settings = base.replace(exit_policy=policy)

        def run(part: slice) -> float:
            model.get_metrics(reset=True)
            seconds = time_batches(model, batches[part], carry, settings)
            compute[policy] = model.get_metrics(reset=True)["relative_compute"]
            return seconds

        return run

    rounds = repeats + (1 if warmup else 0)
    bar = Tqdm.tqdm(total=rounds, desc=f"timing (batch size {batch_size})", disable=not progress)
    try:
        with inference_switches(model), torch.inference_mode():
            times = interleaved_times(
                [runner(policy) for policy in policies],
                repeats,
                warmup=warmup,
                after_round=lambda _: bar.update(1),
            )
    finally:
        bar.close()

    reference = times[policies.index(FULL_MODEL)]
    results = []
    for policy, policy_times in zip(policies, times):
        seconds = statistics.median(policy_times)
        threshold = policy.parameters().get("threshold")
        results.append(
            TimingResult(
                threshold=threshold,
                batch_size=batch_size,
                num_instances=len(instances),
                seconds=seconds,
                seconds_per_instance=seconds / len(instances),
                speedup=median_ratio(reference, policy_times),
                relative_compute=compute[policy],
                repeat_seconds=list(policy_times),
                policy=policy,
            )
        )
    return results


def pick_timing_policies(
    rows: Sequence[SweepRow], count: int = 5, include: Sequence[ExitPolicy] = ()
) -> List[ExitPolicy]:
    """
    About `count` policies of each type in a sweep table whose relative compute spreads evenly
    from the type's cheapest to its most expensive early-exit row (one that can exit early), plus
    `include` (e.g. the recommended ones) and the full model. In the table's order (`include`
    where not in it before the full model, which comes last); among rows equally near a target,
    the one listed last (the most conservative).
    """
    chosen = set(include) | {FULL_MODEL}
    for policy_type in dict.fromkeys(type(row.policy) for row in rows):
        candidates = [
            row
            for row in rows
            if type(row.policy) is policy_type
            and not row.policy.never_exits_early(len(row.exit_fractions))
        ]
        if not candidates or count < 1:
            continue
        low = min(row.relative_compute for row in candidates)
        high = max(row.relative_compute for row in candidates)
        position = {id(row): index for index, row in enumerate(candidates)}
        for index in range(count):
            target = low + (high - low) * index / max(count - 1, 1)
            best = min(
                candidates,
                key=lambda row: (abs(row.relative_compute - target), -position[id(row)]),
            )
            chosen.add(best.policy)
    in_table = [row.policy for row in rows if row.policy in chosen and row.policy != FULL_MODEL]
    rest = [policy for policy in include if policy not in in_table and policy != FULL_MODEL]
    return list(dict.fromkeys(in_table + rest + [FULL_MODEL]))
