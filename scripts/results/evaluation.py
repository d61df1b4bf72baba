"""
The sweeps behind the report, all by the library (`early_exit.sweep`): every model's thresholds
chosen on dev and reported on the evaluation split; for the early-exit model also every exit
policy, measured speed, the plain and guaranteed thresholds and the repeated splits, from one run
of every head per split.
"""

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Dict, Iterator, List

import torch
from allennlp.data import Instance

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.head_outputs import collect_head_outputs
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep import Recommendation, SweepResult, TimingResult, measure_inference_time
from early_exit.sweep import plot_sweep, sweep_model
from early_exit.sweep.recommendation import HeldOutChoice, choose_on_dev
from scripts.results import guarantees, policies
from scripts.results.settings import (
    DELTA,
    DROPS,
    EPSILONS,
    MAIN,
    NUM_SPLITS,
    ROOT,
    SEED,
    drop_key,
)

PLOT_DIR = ROOT / "docs" / "results"


def evaluate_dataset(
    dataset: str, paths: Dict[str, Path], work: Path, repeats: int, timing_instances: int
) -> Dict:
    """Every trained model of `dataset`: chosen on dev, reported on the evaluation split."""
    from allennlp.models.archival import load_archive

    torch.set_num_threads(2)
    result: Dict = {"dataset": dataset, "models": {}}
    for variant_dir in sorted((work / "models").glob(f"{dataset}_*")):
        if not variant_dir.is_dir() or not (variant_dir / "model.tar.gz").exists():
            continue
        name = variant_dir.name[len(dataset) + 1 :]
        archive = load_archive(str(variant_dir / "model.tar.gz"))
        model, reader = archive.model, archive.validation_dataset_reader
        dev = list(reader.read(str(paths["dev"])))
        evaluation = list(reader.read(str(paths["eval"])))
        entry: Dict = {
            "exit_layers": model.exit_layers,
            "num_labels": model.vocab.get_vocab_size("labels"),
            "temperatures": model.temperatures.tolist(),
            "encoder_lr": archive.config["trainer"]["optimizer"]["lr"],
            "distillation_temperature": model.distillation_temperature,
        }
        if len(model.exit_layers) == 1:
            on_eval = sweep_model(model, evaluation, thresholds=[1.0], timing=False, risk="none")
            entry["eval_full"] = on_eval.to_json()["full_model"]
        elif name == MAIN:
            entry.update(evaluate_main(dataset, model, dev, evaluation, repeats, timing_instances))
        else:
            entry.update(evaluate_variant(model, dev, evaluation))
        result["models"][name] = entry
    return result


def _threshold_choices(on_dev: SweepResult, on_eval: SweepResult) -> Dict[str, Any]:
    """
    The cheapest confidence thresholds within each of `DROPS` of the full model on dev (the
    library's `choose_on_dev`), their rows on the evaluation split and its reference points.
    """
    full_dev = on_dev.full_model.accuracy
    rows = policies.of_type(on_dev.rows, guarantees.POLICY)
    choices = choose_on_dev(rows, full_dev, on_eval.rows, DROPS)
    eval_json = on_eval.to_json()
    return {
        "dev_full_accuracy": full_dev,
        "chosen_thresholds": {drop_key(c.max_accuracy_drop): c.policy.threshold for c in choices},
        "dev_at_chosen": {drop_key(c.max_accuracy_drop): _dev_row(c, on_dev) for c in choices},
        "eval_at_chosen": {drop_key(c.max_accuracy_drop): c.on_eval.to_json() for c in choices},
        "eval_full": eval_json["full_model"],
        "single_heads": eval_json["single_heads"],
        "oracle": eval_json["oracle"],
    }


def _dev_row(choice: HeldOutChoice, on_dev: SweepResult) -> Dict[str, Any]:
    """The dev row of the policy `choice` made (the full model's where nothing met the goal)."""
    row = choice.on_dev.row if choice.on_dev.row is not None else on_dev.full_model
    return row.to_json()


def evaluate_variant(
    model: EarlyExitClassifier, dev: List[Instance], evaluation: List[Instance]
) -> Dict[str, Any]:
    """A variant: its confidence thresholds chosen on dev, reported on the evaluation split."""
    return _threshold_choices(
        sweep_model(model, dev, timing=False),
        sweep_model(model, evaluation, timing=False, risk="none"),
    )


def timed(
    model: EarlyExitClassifier,
    evaluation: List[Instance],
    chosen: List[ExitPolicy],
    repeats: int,
    timing_instances: int,
) -> List[TimingResult]:
    """The library's timing of `chosen` and the full model, at batch size 1 and 32."""
    subset = evaluation[:timing_instances]
    return [
        timing
        for batch_size in (1, 32)
        for timing in measure_inference_time(model, subset, chosen, batch_size, repeats=repeats)
    ]


def evaluate_main(
    dataset: str,
    model: EarlyExitClassifier,
    dev: List[Instance],
    evaluation: List[Instance],
    repeats: int,
    timing_instances: int,
) -> Dict[str, Any]:
    """
    The early-exit model: every policy swept on dev and on the evaluation split (every head run
    once per split), each policy's choices timed side by side with the full model, the plots, the
    plain and guaranteed thresholds and the repeated splits.
    """
    dev_outputs = collect_head_outputs(model, dev, description="dev: running every head")
    eval_outputs = collect_head_outputs(model, evaluation, description="evaluation: every head")
    on_dev = sweep_model(
        model, dev, policy="all", timing=False, head_outputs=dev_outputs, risk="none"
    )
    on_eval = sweep_model(
        model, evaluation, policy="all", timing=False, head_outputs=eval_outputs, risk="none"
    )
    choices = policies.choose_per_policy(
        on_dev.rows, on_dev.full_model.accuracy, on_eval.rows, DROPS
    )
    chosen = policies.chosen_policies(choices)
    on_eval.timings = timed(model, evaluation, chosen, repeats, timing_instances)
    entry = _threshold_choices(on_dev, on_eval)
    entry["policy_choices"] = policies.choice_records(
        choices, eval_outputs, model.exit_layers, model.full_depth
    )
    entry["timings"] = [timing.to_json() for timing in on_eval.timings]
    entry["timing"] = {"instances": len(evaluation[:timing_instances]), "repeats": repeats}
    write_plots(dataset, on_eval, choices)

    dev_heads = guarantees.Heads.of(model, dev_outputs)
    eval_heads = guarantees.Heads.of(model, eval_outputs)
    with one_thread():
        records = guarantees.guarantee_records(dev_heads, eval_heads, EPSILONS, DELTA)
        split_records = guarantees.repeated_splits(eval_heads, EPSILONS, DELTA, NUM_SPLITS, SEED)
        bootstrap_records = guarantees.repeated_splits(
            eval_heads, EPSILONS, DELTA, NUM_SPLITS, SEED, guarantees.bootstrap
        )
    entry["guarantees"] = {"delta": DELTA, "dev_size": len(dev_heads), "records": records}
    first, second = (len(eval_heads) + 1) // 2, len(eval_heads) // 2
    entry["splits"] = {
        "pool": "evaluation split",
        "num_splits": NUM_SPLITS,
        "sizes": [first, second],
        "delta": DELTA,
        "summary": guarantees.summarize_splits(split_records),
        "bootstrap": guarantees.summarize_splits(bootstrap_records),
    }
    return entry


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """
    Torch on one thread: the tables' many small tensor operations run far faster on one thread
    than on two on a machine shared with training (each parallel region waits for a busy core).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write_plots(dataset: str, on_eval: SweepResult, choices: List[Dict[str, Any]]) -> None:
    """
    `docs/results/<dataset>.png` (the confidence threshold) and `<dataset>_policies.png` (every
    policy), the library's sweep plots of the evaluation split; the first circles the thresholds
    chosen on dev (four policies' circles would hide the curves).
    """
    PLOT_DIR.mkdir(parents=True, exist_ok=True)

    def circled(record: Dict[str, Any]) -> Recommendation:
        choice = record["choice"]
        goal = f"within {100 * choice.max_accuracy_drop:g} pt on dev"  # the legend shows it
        return Recommendation(goal, choice.max_accuracy_drop, 0.0, choice.on_eval, f"chosen {goal}")

    threshold_only = dataclasses.replace(
        on_eval,
        rows=[row for row in on_eval.rows if row.policy.registered_name() == guarantees.POLICY],
        timings=[t for t in on_eval.timings if t.policy.registered_name() == guarantees.POLICY],
        recommendations=[circled(r) for r in choices if r["policy_type"] == guarantees.POLICY],
        policy=guarantees.POLICY,
    )
    plot_sweep(threshold_only, PLOT_DIR / f"{dataset}.png")
    every_policy = dataclasses.replace(on_eval, recommendations=[])  # the tables name the picks
    plot_sweep(every_policy, PLOT_DIR / f"{dataset}_policies.png")
