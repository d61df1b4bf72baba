"""
A whole sweep: run every head once, tabulate every threshold (or the grid of any exit policy, or of
all of them), add the reference points, recommend a policy and time real early-exit inference.
`allennlp sweep-thresholds` is a thin command-line interface over `run_sweep`; benchmark scripts can
call `sweep_model` on a model they already hold.
"""

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Union

from allennlp.common.checks import ConfigurationError
from allennlp.data import Instance

from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.common.cli_errors import UserError
from early_exit.models.head_outputs import HeadOutputs, collect_head_outputs
from early_exit.dataset_readers.errors import NoInstancesError
from early_exit.dataset_readers.label_check import check_known_labels
from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.sweep.guaranteed import (
    NO_GUARANTEE,
    LabelFreeSweep,
    check_guarantee_settings,
    guaranteed_recommendation,
    note_no_guarantee,
    resolve_risk,
    sweep_unlabelled,
)
from early_exit.sweep.recommendation import Recommendation, check_goals, recommend_threshold
from early_exit.sweep.reference_points import (
    HeadPoint,
    OraclePoint,
    oracle_point,
    single_head_points,
)
from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy
from early_exit.sweep.sweep_table import (
    SweepRow,
    evaluate_policy,
    head_probabilities,
    sweep_policies,
)
from early_exit.sweep.thresholds import (
    SWEPT_POLICIES,
    check_thresholds,
    policy_names,
    sweep_grid,
)
from early_exit.sweep.risk_control import DEFAULT_DELTA
from early_exit.sweep.timing import (
    FULL_MODEL,
    TimingResult,
    measure_inference_time,
    pick_timing_policies,
    timed_policies,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ACCURACY_DROP = 0.01


class SweepInputError(UserError, ValueError):
    """Raised for data a sweep cannot use: instances without gold labels."""


@dataclass
class SweepResult:
    """
    Everything a sweep found. `to_json()` gives the summary written to `sweep.json`.

    # Attributes

    exit_layers : `List[int]`
    full_depth : `int`
    temperatures : `List[float]`
    num_instances : `int`
    rows : `List[SweepRow]`
        One row per swept policy: policy type after type, each from the most aggressive to the
        most conservative (confidence thresholds in ascending order).
    full_model : `SweepRow`
        The row of no early exit (`max_probability` at threshold 1.0; also in `rows` when
        `max_probability` is swept).
    single_heads : `List[HeadPoint]`
    oracle : `OraclePoint`
    recommendations : `List[Recommendation]`
    timings : `List[TimingResult]`
        Empty when timing was skipped.
    sources : `Dict[str, Any]`
        Where the model and data came from and the settings used (for the summary).
    policy : `str`
        What was swept: a policy name, or `"all"`.
    """

    exit_layers: List[int]
    full_depth: int
    temperatures: List[float]
    num_instances: int
    rows: List[SweepRow]
    full_model: SweepRow
    single_heads: List[HeadPoint]
    oracle: OraclePoint
    recommendations: List[Recommendation] = field(default_factory=list)
    timings: List[TimingResult] = field(default_factory=list)
    sources: Dict[str, Any] = field(default_factory=dict)
    policy: str = "max_probability"

    @property
    def policies(self) -> List[str]:
        """The names of the policy types swept, in the table's order."""
        return list(dict.fromkeys(row.policy.registered_name() for row in self.rows))

    def to_json(self) -> Dict[str, Any]:
        def row_json(row: Optional[SweepRow]) -> Optional[Dict[str, Any]]:
            return None if row is None else row.to_json()

        return {
            **self.sources,
            "policy": self.policy,
            "policies": self.policies,
            "num_instances": self.num_instances,
            "exit_layers": self.exit_layers,
            "full_depth": self.full_depth,
            "temperatures": self.temperatures,
            "full_model": row_json(self.full_model),
            "recommendations": [
                {
                    "goal": recommendation.goal,
                    "limit": recommendation.limit,
                    "policy": (
                        None if recommendation.policy is None else recommendation.policy.to_json()
                    ),
                    "description": (
                        None if recommendation.policy is None else recommendation.policy.describe()
                    ),
                    "threshold": recommendation.threshold,
                    "message": recommendation.message,
                    "guarantee": (
                        recommendation.guarantee.to_json() if recommendation.guarantee else None
                    ),
                    "row": row_json(recommendation.row),
                }
                for recommendation in self.recommendations
            ],
            "single_heads": [dataclasses.asdict(point) for point in self.single_heads],
            "oracle": dataclasses.asdict(self.oracle),
            "timings": [timing.to_json() for timing in self.timings],
            "rows": [row_json(row) for row in self.rows],
        }


# The timing's defaults (the command line's too).
TIMING_BATCH_SIZE = 32
TIMING_REPEATS = 3
TIMING_INSTANCES = 200


def _check_labelled(model: EarlyExitClassifier, instances: List[Instance], data_name: str) -> None:
    if not instances:
        raise NoInstancesError(data_name)
    unlabelled = sum(1 for instance in instances if "label" not in instance.fields)
    if unlabelled:
        raise SweepInputError(
            f"{data_name}: {unlabelled} of {len(instances)} instances have no gold label; "
            "a sweep needs labelled data"
        )
    check_known_labels(instances, model.vocab, data_name)


def sweep_model(
    model: EarlyExitClassifier,
    instances: Sequence[Instance],
    thresholds: Optional[Sequence[float]] = None,
    batch_size: int = 32,
    max_accuracy_drop: Optional[float] = None,
    compute_budget: Optional[float] = None,
    timing: bool = True,
    timing_thresholds: Optional[Sequence[Union[float, ExitPolicy]]] = None,
    timing_batch_sizes: Sequence[int] = (1, TIMING_BATCH_SIZE),
    repeats: int = TIMING_REPEATS,
    timing_instances: Optional[int] = TIMING_INSTANCES,
    data_name: str = "the data",
    policy: str = "max_probability",
    grid_step: Optional[float] = None,
    risk: Optional[str] = None,
    delta: float = DEFAULT_DELTA,
    head_outputs: Optional[HeadOutputs] = None,
) -> SweepResult:
    """
    Sweeps an exit policy's parameters (by default the confidence threshold) of a loaded model on
    labelled instances.

    # Parameters

    model : `EarlyExitClassifier`
    instances : `Sequence[Instance]`
        Labelled instances with token indexers applied (as a dataset reader's `read` gives them).
    thresholds : `Sequence[float]`, optional
        The thresholds of the policies that have one (see `policy_grid`); each policy's own grid
        when not given. For `max_probability`, 1.0 is always added.
    batch_size : `int`, optional (default = `32`)
        Batch size for running every head once.
    max_accuracy_drop : `float`, optional
        Recommend the cheapest row within this absolute accuracy drop of the full model.
    compute_budget : `float`, optional
        Recommend the most accurate row within this relative compute. When neither goal is
        given, `max_accuracy_drop` is 0.01.
    timing : `bool`, optional (default = `True`)
        Measure real inference time.
    timing_thresholds : `Sequence[Union[float, ExitPolicy]]`, optional
        Policies to time, or thresholds of the swept policy (one of `max_probability` and
        `entropy`); by default about five that spread over each swept type's curve (three when
        several types are swept), the recommended ones and the full model.
    timing_batch_sizes : `Sequence[int]`, optional (default = `(1, 32)`)
    repeats : `int`, optional (default = `3`)
        Timing repeats; the median is reported.
    timing_instances : `int`, optional (default = `200`)
        Time only the first this many instances (`None`: all).
    data_name : `str`
        How error messages name the data.
    policy : `str`, optional (default = `"max_probability"`)
        The exit policy to sweep (`max_probability`, `entropy`, `patience`, `confident_patience`),
        or `"all"` for every one of them in one table.
    grid_step : `float`, optional
        The step of the threshold grids of `max_probability` and `entropy` (see `policy_grid`).
    risk : `str`, optional
        With `max_accuracy_drop`, also recommend the threshold certified on new data (see
        `early_exit.sweep.risk_control`), first: `accuracy`, `consistency`, or `auto` (here
        `accuracy`). `None` or `none`: only the plain pick, as before.
    delta : `float`, optional (default = `0.05`)
        The allowed probability that the certified threshold breaks its promise.
    head_outputs : `HeadOutputs`, optional
        Every head's outputs on `instances`, in their order, from `collect_head_outputs` on this
        model: the heads are then not run again (a report that sweeps the same data several ways
        runs them once).
    """
    if not isinstance(model, EarlyExitClassifier):
        raise ConfigurationError(
            f"a sweep needs an early_exit_classifier, got {type(model).__name__}"
        )
    if batch_size < 1:
        raise ConfigurationError(f"batch size must be at least 1, got {batch_size}")
    if timing_instances is not None and timing_instances < 1:
        raise ConfigurationError(f"timing instances must be at least 1, got {timing_instances}")
    if repeats < 1:
        raise ConfigurationError(f"repeats must be at least 1, got {repeats}")
    if any(size < 1 for size in timing_batch_sizes):
        raise ConfigurationError(f"timing batch sizes must be at least 1, got {timing_batch_sizes}")
    grid = sweep_grid(policy, len(model.exit_layers), thresholds, grid_step)
    if timing_thresholds is not None:
        timing_thresholds = _timing_policies(policy, timing_thresholds)
    check_goals(max_accuracy_drop, compute_budget)
    if max_accuracy_drop is None and compute_budget is None:
        max_accuracy_drop = DEFAULT_MAX_ACCURACY_DROP
    check_guarantee_settings(risk, max_accuracy_drop, delta)
    instances = list(instances)
    _check_labelled(model, instances, data_name)
    risk = resolve_risk(risk, 0, len(instances))

    outputs = head_outputs
    if outputs is None:
        outputs = collect_head_outputs(model, instances, batch_size)
    if len(outputs) != len(instances):
        raise ConfigurationError(
            f"head outputs of {len(outputs)} instances given for {len(instances)} instances"
        )
    if outputs.labels is None:
        raise SweepInputError(f"{data_name} has no gold labels; a sweep needs labelled data")
    exit_layers = list(model.exit_layers)
    temperatures = [float(value) for value in model.serving_temperatures.tolist()]
    rows = sweep_policies(
        outputs.logits,
        outputs.labels,
        grid,
        exit_layers,
        model.full_depth,
        temperatures,
        progress=len(grid) * len(outputs) > 1_000_000,
    )
    full_model = next((row for row in rows if row.policy == FULL_MODEL), None)
    if full_model is None:
        head_logits = outputs.logits.float()  # (num_instances, num_heads, num_labels)
        head_probs = head_probabilities(head_logits, temperatures)
        full_model = evaluate_policy(
            head_logits, head_probs, outputs.labels, FULL_MODEL, exit_layers, model.full_depth
        )
    recommendations = []
    if max_accuracy_drop is not None:
        plain = recommend_threshold(rows, full_model.accuracy, max_accuracy_drop=max_accuracy_drop)
        if risk is not None:
            head_probs = head_probabilities(outputs.logits.float(), temperatures)
            recommendations.append(
                guaranteed_recommendation(
                    head_probs,
                    outputs.labels,
                    rows,
                    full_model.accuracy,
                    risk,
                    max_accuracy_drop,
                    delta,
                    full_model,
                )
            )
            plain = note_no_guarantee(plain, head_probs, outputs.labels, risk, delta)
        recommendations.append(plain)
    if compute_budget is not None:
        recommendations.append(
            recommend_threshold(rows, full_model.accuracy, compute_budget=compute_budget)
        )

    timings: List[TimingResult] = []
    if timing:
        if timing_thresholds is None:
            recommended = [r.policy for r in recommendations if r.policy is not None]
            count = 5 if len(policy_names(policy)) == 1 else 3
            timing_thresholds = pick_timing_policies(rows, count, include=recommended)
        subset = instances if timing_instances is None else instances[:timing_instances]
        for size in sorted(set(timing_batch_sizes)):
            timings.extend(
                measure_inference_time(model, subset, timing_thresholds, size, repeats=repeats)
            )
    timed = timed_policies(timing_thresholds) if timing else []

    return SweepResult(
        exit_layers=exit_layers,
        full_depth=model.full_depth,
        temperatures=temperatures,
        num_instances=len(outputs),
        rows=rows,
        full_model=full_model,
        single_heads=single_head_points(
            outputs.logits, outputs.labels, exit_layers, model.full_depth, temperatures
        ),
        oracle=oracle_point(outputs.logits, outputs.labels, exit_layers, model.full_depth),
        recommendations=recommendations,
        timings=timings,
        sources={
            "confidence_threshold_of_model": model.confidence_threshold,
            "exit_policy_of_model": model.exit_policy.to_json(),
            "batch_size": batch_size,
            "timing": {
                "enabled": bool(timing),
                "thresholds": [
                    each.threshold for each in timed if isinstance(each, MaxProbabilityPolicy)
                ],
                "policies": [each.to_json() for each in timed],
                "batch_sizes": sorted(set(timing_batch_sizes)) if timing else [],
                "repeats": repeats,
                "instances": min(len(instances), timing_instances or len(instances)),
            },
        },
        policy=policy,
    )


def _timing_policies(policy: str, timing: Sequence[Union[float, ExitPolicy]]) -> List[ExitPolicy]:
    """
    The policies to time: exit policies as given, a float as the threshold of the swept policy
    (`max_probability` or `entropy`, the policies whose only parameter is a threshold).
    """
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


def _is_url(path: str) -> bool:
    return "://" in path


def run_sweep(
    archive_file: Union[str, PathLike],
    data_file: Union[str, PathLike],
    cuda_device: int = -1,
    overrides: str = "",
    **kwargs: Any,
) -> Union[SweepResult, LabelFreeSweep]:
    """
    Loads an early-exit archive and its validation dataset reader, reads `data_file` and runs
    `sweep_model` on it (keyword arguments are passed on). With a guarantee asked for (`risk` not
    `None` or `none`), lines without labels are read too; data without labels then gets the
    consistency guarantee only, from `sweep_unlabelled` (a `LabelFreeSweep`, without timing).

    # Raises

    `FileNotFoundError` for a missing archive or data file, `ConfigurationError` for an archive of
    another model type, an unknown policy or bad settings, `SweepInputError` for data without gold
    labels, `NoInstancesError` for no data, `UnknownLabelError` for labels the model does not know,
    and the reader's own errors (e.g. `DataFormatError`) for unreadable data.
    """
    archive_file, data_file = str(archive_file), str(data_file)
    check_goals(kwargs.get("max_accuracy_drop"), kwargs.get("compute_budget"))
    policy_names(kwargs.get("policy", "max_probability"))  # before the archive loads
    risk = kwargs.get("risk")
    check_guarantee_settings(
        risk, kwargs.get("max_accuracy_drop"), kwargs.get("delta", DEFAULT_DELTA)
    )
    if not _is_url(archive_file) and not os.path.exists(archive_file):
        raise FileNotFoundError(f"archive not found: {archive_file}")
    if not _is_url(data_file) and not os.path.isfile(data_file):
        raise FileNotFoundError(f"data file not found: {data_file}")
    archive = load_early_exit_archive(archive_file, cuda_device=cuda_device, overrides=overrides)
    reader = archive.validation_dataset_reader
    if risk not in (None, NO_GUARANTEE) and hasattr(reader, "require_labels"):
        reader.require_labels = False
    instances = list(reader.read(data_file))
    check_known_labels(instances, archive.model.vocab, data_file, reader)  # with line numbers
    unlabelled = sum(1 for instance in instances if "label" not in instance.fields)
    if instances and unlabelled and risk not in (None, NO_GUARANTEE):
        result = _sweep_unlabelled(archive.model, instances, unlabelled, **kwargs)
    else:
        result = sweep_model(archive.model, instances, data_name=data_file, **kwargs)
    result.sources = {"archive_file": archive_file, "data_file": data_file, **result.sources}
    runner = archive.model.layer_runner.describe()
    if runner != "torch":  # the default runner is not named, so default outputs do not change
        result.sources["layer_runner"] = runner
    return result


def _sweep_unlabelled(
    model: EarlyExitClassifier, instances: List[Instance], unlabelled: int, **kwargs: Any
) -> LabelFreeSweep:
    resolve_risk(kwargs.get("risk"), unlabelled, len(instances))  # only consistency goes on
    if kwargs.get("compute_budget") is not None:
        raise ConfigurationError(
            "a compute budget picks the most accurate threshold: it needs labels"
        )
    grid = sweep_grid(
        kwargs.get("policy", "max_probability"),
        len(model.exit_layers),
        kwargs.get("thresholds"),
        kwargs.get("grid_step"),
    )
    return sweep_unlabelled(
        model,
        instances,
        grid,
        epsilon=kwargs.get("max_accuracy_drop") or DEFAULT_MAX_ACCURACY_DROP,
        delta=kwargs.get("delta", DEFAULT_DELTA),
        batch_size=kwargs.get("batch_size", 32),
    )
