"""
Wall-clock timing of real early-exit inference at a few thresholds, with the full model (threshold
1.0) as the reference measured in the same run.
"""

import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.tqdm import Tqdm
from allennlp.data import Batch, Instance
from allennlp.nn import util

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.sweep.sweep_table import SweepRow
from early_exit.sweep.thresholds import check_thresholds

FULL_MODEL_THRESHOLD = 1.0


@dataclass
class TimingResult:
    """
    Measured inference time at one threshold and batch size.

    # Attributes

    threshold : `float`
    batch_size : `int`
    num_instances : `int`
        How many instances were timed.
    seconds : `float`
        Median over the repeats of the time to run all timed instances.
    seconds_per_instance : `float`
        `seconds / num_instances`.
    speedup : `float`
        Median over the repeats of (full model's time / this threshold's time) within the same
        repeat; 1.0 for the full model.
    relative_compute : `float`
        Mean fraction of the encoder's layers the model computed on the timed instances.
    repeat_seconds : `List[float]`
        The time of each repeat.
    """

    threshold: float
    batch_size: int
    num_instances: int
    seconds: float
    seconds_per_instance: float
    speedup: float
    relative_compute: float
    repeat_seconds: List[float]


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
    device = util.get_device_of(next(model.parameters()))
    batches = []
    for start in range(0, len(instances), batch_size):
        batch = Batch(list(instances[start : start + batch_size]))
        batch.index_instances(model.vocab)
        tensors = batch.as_tensor_dict()
        batches.append(util.move_to_device({"tokens": tensors["tokens"]}, device))
    return batches


def _synchronize(model: EarlyExitClassifier) -> None:
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()


def _run_once(model: EarlyExitClassifier, batches: List[Dict[str, Any]], carry: bool) -> float:
    _synchronize(model)
    start = time.perf_counter()
    if carry:
        for _ in model.forward_stream(batches):
            pass
    else:
        for batch in batches:
            model(**batch)
    _synchronize(model)
    return time.perf_counter() - start


def measure_inference_time(
    model: EarlyExitClassifier,
    instances: Sequence[Instance],
    thresholds: Sequence[float],
    batch_size: int = 1,
    repeats: int = 3,
    warmup: bool = True,
    progress: bool = True,
    carry_rows: bool = True,
) -> List[TimingResult]:
    """
    Times the model's real early-exit forward pass (evaluation mode, `torch.inference_mode`, the
    model's threshold set to each value in turn) on `instances` pre-batched with `batch_size`.

    The full model (threshold 1.0) is always timed too, as the reference. Within every repeat each
    threshold runs once over all batches, in an order rotated from repeat to repeat, so that drifts
    in machine load hit all thresholds alike; `speedup` is the median over repeats of the
    full model's time divided by the threshold's time in the same repeat. One untimed warm-up pass
    per threshold comes first when `warmup` is set.

    At batch sizes above 1 with `carry_rows` the batches go through the model as one stream
    (`EarlyExitClassifier.forward_stream`), as `allennlp predict` runs them: the rows that go on
    past a head wait for later batches' rows at their next layer. Otherwise each batch is one
    forward pass.

    The model's threshold, mode, `run_all_heads` and metrics are left as found.

    # Returns

    One `TimingResult` per threshold (the given ones and 1.0), sorted by threshold.
    """
    if repeats < 1:
        raise ConfigurationError(f"repeats must be at least 1, got {repeats}")
    if not instances:
        raise ConfigurationError("no instances to time")
    thresholds = check_thresholds(list(thresholds) + [FULL_MODEL_THRESHOLD], "timing thresholds")
    batches = prepare_batches(model, instances, batch_size)
    carry = carry_rows and batch_size > 1

    was_training, was_all_heads = model.training, model.run_all_heads
    old_threshold = model.confidence_threshold
    times: Dict[float, List[float]] = {threshold: [] for threshold in thresholds}
    compute: Dict[float, float] = {}
    model.eval()
    model.run_all_heads = False
    model.get_metrics(reset=True)
    passes = len(thresholds) * (repeats + (1 if warmup else 0))
    bar = Tqdm.tqdm(total=passes, desc=f"timing (batch size {batch_size})", disable=not progress)
    try:
        with torch.inference_mode():
            if warmup:
                for threshold in thresholds:
                    model.confidence_threshold = threshold
                    _run_once(model, batches, carry)
                    bar.update(1)
            for repeat in range(repeats):
                shift = repeat % len(thresholds)
                for threshold in thresholds[shift:] + thresholds[:shift]:
                    model.confidence_threshold = threshold
                    model.get_metrics(reset=True)
                    times[threshold].append(_run_once(model, batches, carry))
                    compute[threshold] = model.get_metrics(reset=True)["relative_compute"]
                    bar.update(1)
    finally:
        bar.close()
        model.confidence_threshold = old_threshold
        model.run_all_heads = was_all_heads
        model.train(was_training)
        model.get_metrics(reset=True)

    reference = times[FULL_MODEL_THRESHOLD]
    results = []
    for threshold in thresholds:
        seconds = statistics.median(times[threshold])
        ratios = [full / max(own, 1e-12) for full, own in zip(reference, times[threshold])]
        results.append(
            TimingResult(
                threshold=threshold,
                batch_size=batch_size,
                num_instances=len(instances),
                seconds=seconds,
                seconds_per_instance=seconds / len(instances),
                speedup=statistics.median(ratios),
                relative_compute=compute[threshold],
                repeat_seconds=list(times[threshold]),
            )
        )
    return results


def pick_timing_thresholds(
    rows: Sequence[SweepRow], count: int = 5, include: Optional[Sequence[float]] = None
) -> List[float]:
    """
    About `count` thresholds from a sweep table whose relative compute spreads evenly from the
    table's cheapest to its most expensive early-exit point (below 1.0), plus `include` (e.g. a
    recommended threshold) and 1.0 (the full model). Sorted, without duplicates.
    """
    candidates = [row for row in rows if row.threshold < FULL_MODEL_THRESHOLD]
    chosen = set(check_thresholds(list(include or []) + [FULL_MODEL_THRESHOLD]))
    if candidates and count > 0:
        low = min(row.relative_compute for row in candidates)
        high = max(row.relative_compute for row in candidates)
        for index in range(count):
            target = low + (high - low) * index / max(count - 1, 1)
            best = min(
                candidates,
                key=lambda row: (abs(row.relative_compute - target), -row.threshold),
            )
            chosen.add(best.threshold)
    return sorted(chosen)
