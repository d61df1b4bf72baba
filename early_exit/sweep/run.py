"""
A whole sweep: run every head once, tabulate every policy of the grid, add the reference points,
recommend a policy and time real early-exit inference; on data without labels, only the
consistency guarantee. `allennlp sweep-thresholds` is a thin command line over `run_sweep`;
scripts call `sweep_model` on a model they already hold.
"""

import os
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Union

from allennlp.common.checks import ConfigurationError
from allennlp.data import Instance

from early_exit.common.cli_errors import UserError
from early_exit.dataset_readers.errors import NoInstancesError
from early_exit.dataset_readers.label_check import check_known_labels
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.head_outputs import HeadOutputs, collect_head_outputs
from early_exit.modules.exit_policies import MaxProbabilityPolicy
from early_exit.sweep.recommendation import recommend
from early_exit.sweep.reference_points import oracle_point, single_head_points
from early_exit.sweep.result import SweepResult
from early_exit.sweep.risk_control import CONSISTENCY
from early_exit.sweep.settings import SweepSettings
from early_exit.sweep.sweep_table import evaluate_policy, head_probabilities, sweep_policies
from early_exit.sweep.thresholds import FULL_MODEL, policy_names
from early_exit.sweep.timing import TimingResult, measure_inference_time, pick_timing_policies


class SweepInputError(UserError, ValueError):
    """Raised for data a sweep cannot use: instances without gold labels."""


def sweep_model(
    model: EarlyExitClassifier,
    instances: Sequence[Instance],
    settings: Optional[SweepSettings] = None,
    data_name: str = "the data",
    head_outputs: Optional[HeadOutputs] = None,
    **changes: Any,
) -> SweepResult:
    """
    Sweeps an exit policy's parameters (by default the confidence threshold) of a loaded model on
    `instances` (token indexers applied, as a reader's `read` gives them): labelled, or, with a
    guarantee asked for, all without labels (then the consistency guarantee only, no timing).
    `settings` default to `allennlp sweep-thresholds`' and keyword arguments replace their fields,
    e.g. `sweep_model(model, instances, policy="all", timing=False)`. `data_name` names the data
    in errors; `head_outputs`, from `collect_head_outputs` on this model and `instances`, saves
    running the heads again.
    """
    settings = (settings or SweepSettings()).replace(**changes)
    if not isinstance(model, EarlyExitClassifier):
        raise ConfigurationError(
            f"a sweep needs an early_exit_classifier, got {type(model).__name__}"
        )
    instances = list(instances)
    risk = _checked_risk(model, instances, settings, data_name)
    labelled = risk != CONSISTENCY or all("label" in each.fields for each in instances)
    grid = settings.grid(len(model.exit_layers))
    if not labelled and len({type(policy) for policy in grid}) != 1:
        raise ConfigurationError(
            "a sweep without labels walks one exit policy type: choose one with --policy"
        )
    outputs = head_outputs
    if outputs is None:
        outputs = collect_head_outputs(model, instances, settings.batch_size)
    if len(outputs) != len(instances):
        raise ConfigurationError(
            f"head outputs of {len(outputs)} instances given for {len(instances)} instances"
        )
    labels = outputs.labels if labelled else None
    if labelled and labels is None:
        raise SweepInputError(f"{data_name} has no gold labels; a sweep needs labelled data")
    layers, depth = list(model.exit_layers), model.full_depth
    temperatures = [float(value) for value in model.serving_temperatures.tolist()]
    head_logits = outputs.logits.float()  # (num_instances, num_heads, num_labels)
    head_probs = head_probabilities(head_logits, temperatures)
    progress = len(grid) * len(outputs) > 1_000_000
    rows = sweep_policies(head_logits, labels, grid, layers, depth, temperatures, progress)
    full_model = None
    if labelled:
        full_model = next((row for row in rows if row.policy == FULL_MODEL), None) or (
            evaluate_policy(head_logits, head_probs, labels, FULL_MODEL, layers, depth)
        )
    result = SweepResult(
        exit_layers=layers,
        full_depth=depth,
        temperatures=temperatures,
        num_instances=len(outputs),
        rows=rows,
        full_model=full_model,
        single_heads=(
            single_head_points(head_logits, labels, layers, depth, temperatures) if labelled else []
        ),
        oracle=oracle_point(head_logits, labels, layers, depth) if labelled else None,
        recommendations=recommend(rows, full_model, head_probs, labels, settings, risk),
        policy=settings.policy,
        labelled=labelled,
    )
    if labelled:
        result.timings = _timings(model, instances, settings, result)
        result.sources = _sources(model, settings, result)
    return result


def _checked_risk(
    model: EarlyExitClassifier, instances: List[Instance], settings: SweepSettings, data_name: str
) -> Optional[str]:
    """The risk to control (see `SweepSettings.risk_for`), once the data suits the settings."""
    if not instances:
        raise NoInstancesError(data_name)
    unlabelled = sum(1 for instance in instances if "label" not in instance.fields)
    if unlabelled and not settings.guaranteed:
        raise SweepInputError(
            f"{data_name}: {unlabelled} of {len(instances)} instances have no gold label; "
            "a sweep needs labelled data"
        )
    risk = settings.risk_for(unlabelled, len(instances))
    if unlabelled and settings.compute_budget is not None:
        raise ConfigurationError(
            "a compute budget picks the most accurate threshold: it needs labels"
        )
    if not unlabelled:
        check_known_labels(instances, model.vocab, data_name)
    return risk


def _timings(
    model: EarlyExitClassifier,
    instances: List[Instance],
    settings: SweepSettings,
    result: SweepResult,
) -> List[TimingResult]:
    """
    Real early-exit inference timed against the full model: under the settings' policies, or a
    few spread over each swept type's curve (five for one type, three each for several) and the
    recommended ones.
    """
    if not settings.timing:
        return []
    policies = settings.timing_thresholds
    if policies is None:
        recommended = [each.policy for each in result.recommendations if each.policy is not None]
        count = 5 if len(policy_names(settings.policy)) == 1 else 3
        policies = pick_timing_policies(result.rows, count, include=recommended)
    subset = instances[: settings.timing_instances]
    return [
        timing
        for size in sorted(set(settings.timing_batch_sizes))
        for timing in measure_inference_time(model, subset, policies, size, settings.repeats)
    ]


def _sources(
    model: EarlyExitClassifier, settings: SweepSettings, result: SweepResult
) -> Dict[str, Any]:
    """The model's own policy and the settings used, for the summary."""
    timed = list(dict.fromkeys(each.policy for each in result.timings))
    return {
        "confidence_threshold_of_model": model.confidence_threshold,
        "exit_policy_of_model": model.exit_policy.to_json(),
        "batch_size": settings.batch_size,
        "timing": {
            "enabled": bool(settings.timing),
            "thresholds": [
                each.threshold for each in timed if isinstance(each, MaxProbabilityPolicy)
            ],
            "policies": [each.to_json() for each in timed],
            "batch_sizes": result.timing_batch_sizes,
            "repeats": settings.repeats,
            "instances": min(
                result.num_instances, settings.timing_instances or result.num_instances
            ),
        },
    }


def run_sweep(
    archive_file: Union[str, PathLike],
    data_file: Union[str, PathLike],
    settings: Optional[SweepSettings] = None,
    cuda_device: int = -1,
    overrides: str = "",
    **changes: Any,
) -> SweepResult:
    """
    `sweep_model` on `data_file`, read by the validation reader of an early-exit archive (lines
    without labels too where a guarantee is asked for). Raises `FileNotFoundError` for a missing
    archive or data file, the `ConfigurationError`s of `SweepSettings` and `sweep_model`, and the
    reader's errors (`DataFormatError`, `UnknownLabelError`, `NoInstancesError`).
    """
    settings = (settings or SweepSettings()).replace(**changes)
    archive_file, data_file = str(archive_file), str(data_file)
    if "://" not in archive_file and not os.path.exists(archive_file):
        raise FileNotFoundError(f"archive not found: {archive_file}")
    if "://" not in data_file and not os.path.isfile(data_file):
        raise FileNotFoundError(f"data file not found: {data_file}")
    archive = load_early_exit_archive(archive_file, cuda_device=cuda_device, overrides=overrides)
    reader = archive.validation_dataset_reader
    if settings.guaranteed and hasattr(reader, "require_labels"):
        reader.require_labels = False
    instances = list(reader.read(data_file))
    check_known_labels(instances, archive.model.vocab, data_file, reader)  # with line numbers
    result = sweep_model(archive.model, instances, settings, data_name=data_file)
    result.sources = {"archive_file": archive_file, "data_file": data_file, **result.sources}
    runner = archive.model.layer_runner.describe()
    if runner != "torch":  # the default runner is not named, so default outputs do not change
        result.sources["layer_runner"] = runner
    return result
