"""
Model time: the transformers reference and the model at each threshold, interleaved (the library's
`interleaved_times`), at each plan of `settings.PLANS`; speedups against threshold 1.0 and the
ideal the saved layers promise.
"""

import statistics
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple

from bench.performance.data import hf_inputs, indexed_tokens, num_tokens
from bench.performance.settings import CARRIED, PART_SIZE, PLANS, SETTINGS


def model_time_part(
    model, hf, instances, thresholds: List[float], repeats: int, with_type_ids: bool
) -> List[Dict[str, Any]]:
    """One row per plan (batch size and batching) and threshold; `thresholds[0]` is 1.0."""
    from early_exit.models.model_inputs import inference_switches
    from early_exit.sweep.timing import prepare_batches

    results = []
    for batch_size, batching in PLANS:
        # Whole batches in file order, for the transformers reference and the model (which packs
        # them itself, unless the plan is padded).
        batches = prepare_batches(model, instances, batch_size)
        parts = timed_parts(batch_size, batching, len(batches))
        with inference_switches(model, run_all_heads=False, packed=SETTINGS[batching]):
            progress = f"model time, batch size {batch_size}, {batching}"
            hf_batches = hf_inputs(batches, with_type_ids)
            hf_times, *times = time_plan(
                model, hf, hf_batches, batches, thresholds, batching, parts, repeats, progress
            )
            computes = [exit_compute(model, batches, threshold) for threshold in thresholds]
        plan = {
            "batch_size": batch_size,
            "batching": batching,
            "forward_passes": len(batches),
            "padded_tokens_per_token": padded_tokens(batches) / sum(map(num_tokens, instances)),
        }
        for threshold, own, compute in zip(thresholds, times, computes):
            results.append(
                plan_row(plan, threshold, own, times[0], hf_times, compute, len(instances), parts)
            )
    return results


def timed_parts(batch_size: int, batching: str, num_batches: int) -> List[slice]:
    """
    How a plan's batches are split into turns: batch size 1 in parts of `PART_SIZE` instances (the
    reference and the model run the same instances one by one); larger batches in one part, as
    a carried stream must not be cut.
    """
    if batch_size == 1 and batching != CARRIED:
        return [slice(start, start + PART_SIZE) for start in range(0, num_batches, PART_SIZE)]
    return [slice(None)]


def time_plan(
    model, hf, hf_batches, batches, thresholds, batching, parts, repeats, progress
) -> List[List[float]]:
    """The repeats' times of the transformers reference, then of each threshold, interleaved."""
    import torch

    from early_exit.sweep.timing import interleaved_times, stopwatch, time_batches

    def run_hf(part: slice) -> float:
        def work() -> None:
            for kwargs in hf_batches[part]:
                hf(**kwargs)

        return stopwatch(work)

    def run_model(threshold: float) -> Callable[[slice], float]:
        def run(part: slice) -> float:
            model.confidence_threshold = threshold
            return time_batches(model, batches[part], carry=batching == CARRIED)

        return run

    def report(done: int) -> None:
        if done:
            print(f"  {progress}: repeat {done}/{repeats}", file=sys.stderr, flush=True)

    runs = [run_hf] + [run_model(threshold) for threshold in thresholds]
    with torch.inference_mode():
        return interleaved_times(runs, repeats, parts, after_round=report)


def exit_compute(model, batches, threshold: float) -> Tuple[float, float]:
    """
    The relative compute of the model's exits on `batches` (`(exit_layer + 1) / full_depth`,
    averaged over instances) and the token-weighted one, the fraction of the full model's work
    left when a layer's cost is proportional to the tokens it runs: `sum(length * (exit_layer +
    1)) / sum(length * full_depth)`. Without padding (batch size 1, or packed) the second
    is what the speedup can reach; it exceeds the first when longer instances exit later.
    """
    import torch

    model.confidence_threshold = threshold
    layers = done = total = 0.0
    count = 0
    with torch.inference_mode():
        for batch in batches:
            output = model(**batch)
            lengths = indexed_tokens(batch)["mask"].sum(dim=1).float()  # (batch_size,)
            exit_depth = (output["exit_layer"] + 1).float()  # (batch_size,)
            layers += float(exit_depth.sum())
            count += int(exit_depth.shape[0])
            done += float((exit_depth * lengths).sum())
            total += float(lengths.sum()) * model.full_depth
    model.get_metrics(reset=True)
    return layers / (count * model.full_depth), done / total


def padded_tokens(batches) -> int:
    return sum(int(indexed_tokens(batch)["mask"].numel()) for batch in batches)


def plan_row(
    plan: Dict[str, Any],
    threshold: float,
    times: Sequence[float],
    full_times: Sequence[float],
    hf_times: Sequence[float],
    compute: Tuple[float, float],
    count: int,
    parts: List[slice],
) -> Dict[str, Any]:
    """One threshold of a plan: time per instance, speedup against the full model and the ideal."""
    from early_exit.sweep.timing import median_ratio

    relative_compute, token_compute = compute
    speedup = median_ratio(full_times, times)
    ideal = 1.0 / relative_compute
    return {
        **plan,
        "threshold": threshold,
        "ms_per_instance": statistics.median(times) / count * 1e3,
        "relative_compute": relative_compute,
        "ideal_speedup": ideal,
        "speedup": speedup,
        "efficiency": speedup / ideal,
        "token_weighted_ideal_speedup": 1.0 / token_compute,
        "timed_parts": len(parts),
        "overhead_vs_transformers": median_ratio(times, hf_times),
        "transformers_ms_per_instance": statistics.median(hf_times) / count * 1e3,
        "repeat_seconds": list(times),
    }
