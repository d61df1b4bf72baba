"""
Thresholds chosen on the dev file; accuracy, compute and the oracle on the evaluation file, from
every head's outputs (the library's sweep, reference points and held-out choice).
"""

from typing import Any, Callable, Dict, List

from bench.performance.data import num_tokens
from bench.performance.settings import ACCURACY_DROPS


def accuracy_part(model, dev_instances, eval_instances, batch_size: int = 64) -> Dict[str, Any]:
    from early_exit.sweep import oracle_point, single_head_points, sweep_table
    from early_exit.sweep.recommendation import choose_on_dev
    from early_exit.sweep.reference_points import oracle_compute_at_accuracy
    from early_exit.sweep.thresholds import default_threshold_grid

    grid = default_threshold_grid()
    temperatures = model.temperatures.tolist()
    layers, depth = list(model.exit_layers), model.full_depth
    dev = _every_head(model, dev_instances, batch_size, "dev: every head")
    dev_rows = sweep_table(dev.logits, dev.labels, grid, layers, depth, temperatures)
    dev_full = next(row for row in dev_rows if row.threshold == 1.0)
    evaluation = _every_head(model, eval_instances, batch_size, "evaluation: every head")
    eval_rows = sweep_table(evaluation.logits, evaluation.labels, grid, layers, depth, temperatures)
    eval_full = next(row for row in eval_rows if row.threshold == 1.0)
    choices = choose_on_dev(dev_rows, dev_full.accuracy, eval_rows, ACCURACY_DROPS)

    def oracle_at(accuracy: float) -> float:
        return oracle_compute_at_accuracy(
            evaluation.logits, evaluation.labels, layers, depth, accuracy
        )

    oracle = oracle_point(evaluation.logits, evaluation.labels, layers, depth)
    heads = single_head_points(evaluation.logits, evaluation.labels, layers, depth, temperatures)
    return {
        "exit_layers": layers,
        "full_depth": depth,
        "dev_instances": len(dev),
        "eval_instances": len(evaluation),
        "dev_full_accuracy": dev_full.accuracy,
        "eval_full_accuracy": eval_full.accuracy,
        "chosen": {
            str(choice.max_accuracy_drop): _chosen(choice, eval_full.accuracy, oracle_at)
            for choice in choices
        },
        "oracle": {
            "accuracy": oracle.accuracy,
            "relative_compute": oracle.relative_compute_unsolved_at_first,
            "unsolved_fraction": oracle.unsolved_fraction,
        },
        "single_heads": [
            {
                "layer": point.layer,
                "accuracy": point.accuracy,
                "relative_compute": point.relative_compute,
            }
            for point in heads
        ],
        "curve": [
            {
                "threshold": row.threshold,
                "accuracy": row.accuracy,
                "relative_compute": row.relative_compute,
                "oracle_relative_compute": oracle_at(row.accuracy),
            }
            for row in eval_rows
        ],
    }


def _every_head(model, instances, batch_size: int, description: str):
    from early_exit.models.head_outputs import collect_head_outputs

    # Sorted by length only to pad less; the labels travel with their instances.
    ordered: List = sorted(instances, key=num_tokens)
    return collect_head_outputs(model, ordered, batch_size, description=description)


def _chosen(choice, eval_full_accuracy: float, oracle_at: Callable[[float], float]) -> Dict:
    """A threshold chosen on dev: its dev row and message, its evaluation row and the oracle."""
    on_dev, on_eval = choice.on_dev, choice.on_eval
    return {
        "threshold": choice.policy.threshold,
        "dev_accuracy": on_dev.row.accuracy if on_dev.row else None,
        "dev_relative_compute": on_dev.row.relative_compute if on_dev.row else None,
        "message": on_dev.message,
        "eval_accuracy": on_eval.accuracy,
        "eval_accuracy_drop": eval_full_accuracy - on_eval.accuracy,
        "eval_relative_compute": on_eval.relative_compute,
        "oracle_relative_compute": oracle_at(on_eval.accuracy),
    }
