"""
A whole threshold sweep: run every head once, tabulate every threshold, add the reference points,
recommend thresholds and time real early-exit inference. `allennlp sweep-thresholds` is a thin
command-line interface over `run_sweep`; benchmark scripts can call `sweep_model` on a model they
already hold.
"""

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Union

from allennlp.common.checks import ConfigurationError
from allennlp.data import Instance

from early_exit.common.archives import load_early_exit_archive
from early_exit.common.head_outputs import collect_head_outputs
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
from early_exit.sweep.risk_control import DEFAULT_DELTA
from early_exit.sweep.sweep_table import SweepRow, head_probabilities, sweep_table
from early_exit.sweep.thresholds import check_thresholds, default_threshold_grid
from early_exit.sweep.timing import (
    FULL_MODEL_THRESHOLD,
    TimingResult,
    measure_inference_time,
    pick_timing_thresholds,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ACCURACY_DROP = 0.01


class SweepInputError(ValueError):
    """Raised for data a sweep cannot use (no instances, no gold labels, unknown labels)."""


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
        One row per swept threshold, sorted by threshold.
    full_model : `SweepRow`
        The row at threshold 1.0 (no early exit).
    single_heads : `List[HeadPoint]`
    oracle : `OraclePoint`
    recommendations : `List[Recommendation]`
    timings : `List[TimingResult]`
        Empty when timing was skipped.
    sources : `Dict[str, Any]`
        Where the model and data came from and the settings used (for the summary).
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

    def to_json(self) -> Dict[str, Any]:
        def row_json(row: Optional[SweepRow]) -> Optional[Dict[str, Any]]:
            if row is None:
                return None
            record = dataclasses.asdict(row)
            record["exit_fractions"] = {str(k): v for k, v in row.exit_fractions.items()}
            return record

        return {
            **self.sources,
            "num_instances": self.num_instances,
            "exit_layers": self.exit_layers,
            "full_depth": self.full_depth,
            "temperatures": self.temperatures,
            "full_model": row_json(self.full_model),
            "recommendations": [
                {
                    "goal": recommendation.goal,
                    "limit": recommendation.limit,
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
            "timings": [dataclasses.asdict(timing) for timing in self.timings],
            "rows": [row_json(row) for row in self.rows],
        }


def _check_labelled(model: EarlyExitClassifier, instances: List[Instance], data_name: str) -> None:
    if not instances:
        raise SweepInputError(f"{data_name} holds no instances")
    unlabelled = sum(1 for instance in instances if "label" not in instance.fields)
    if unlabelled:
        raise SweepInputError(
            f"{data_name}: {unlabelled} of {len(instances)} instances have no gold label; "
            "a sweep needs labelled data"
        )
    known = model.vocab.get_token_to_index_vocabulary(model._label_namespace)
    unknown = sorted(
        {
            str(instance.fields["label"].label)
            for instance in instances
            if isinstance(instance.fields["label"].label, str)
            and instance.fields["label"].label not in known
        }
    )
    if unknown:
        raise SweepInputError(
            f"{data_name} has label(s) the model does not know: {', '.join(unknown)}; "
            f"it knows {', '.join(known)}"
        )


def _grid(thresholds: Optional[Sequence[float]]) -> List[float]:
    """The thresholds to sweep, sorted: `thresholds` or the default grid, with 1.0 always."""
    grid = default_threshold_grid() if thresholds is None else thresholds
    return check_thresholds(list(grid) + [FULL_MODEL_THRESHOLD])


def sweep_model(
    model: EarlyExitClassifier,
    instances: Sequence[Instance],
    thresholds: Optional[Sequence[float]] = None,
    batch_size: int = 32,
    max_accuracy_drop: Optional[float] = None,
    compute_budget: Optional[float] = None,
    timing: bool = True,
    timing_thresholds: Optional[Sequence[float]] = None,
    timing_batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 3,
    timing_instances: Optional[int] = 200,
    data_name: str = "the data",
    risk: Optional[str] = None,
    delta: float = DEFAULT_DELTA,
) -> SweepResult:
    """
    Sweeps the confidence threshold of a loaded model on labelled instances.

    # Parameters

    model : `EarlyExitClassifier`
    instances : `Sequence[Instance]`
        Labelled instances with token indexers applied (as a dataset reader's `read` gives them).
    thresholds : `Sequence[float]`, optional
        The grid; `default_threshold_grid()` when not given. 1.0 is always added.
    batch_size : `int`, optional (default = `32`)
        Batch size for running every head once.
    max_accuracy_drop : `float`, optional
        Recommend the cheapest threshold within this absolute accuracy drop of the full model.
    compute_budget : `float`, optional
        Recommend the most accurate threshold within this relative compute. When neither goal is
        given, `max_accuracy_drop` is 0.01.
    timing : `bool`, optional (default = `True`)
        Measure real inference time.
    timing_thresholds : `Sequence[float]`, optional
        Thresholds to time; by default five that spread over the curve, the recommended ones and
        1.0.
    timing_batch_sizes : `Sequence[int]`, optional (default = `(1, 32)`)
    repeats : `int`, optional (default = `3`)
        Timing repeats; the median is reported.
    timing_instances : `int`, optional (default = `200`)
        Time only the first this many instances (`None`: all).
    data_name : `str`
        How error messages name the data.
    risk : `str`, optional
        With `max_accuracy_drop`, also recommend the threshold certified on new data (see
        `early_exit.sweep.risk_control`), first: `accuracy`, `consistency`, or `auto` (here
        `accuracy`). `None` or `none`: only the plain pick, as before.
    delta : `float`, optional (default = `0.05`)
        The allowed probability that the certified threshold breaks its promise.
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
    grid = _grid(thresholds)
    if timing_thresholds is not None:
        timing_thresholds = check_thresholds(timing_thresholds, "timing thresholds")
    check_goals(max_accuracy_drop, compute_budget)
    if max_accuracy_drop is None and compute_budget is None:
        max_accuracy_drop = DEFAULT_MAX_ACCURACY_DROP
    check_guarantee_settings(risk, max_accuracy_drop, delta)
    instances = list(instances)
    _check_labelled(model, instances, data_name)
    risk = resolve_risk(risk, 0, len(instances))

    outputs = collect_head_outputs(model, instances, batch_size)
    if outputs.labels is None:
        raise SweepInputError(f"{data_name} has no gold labels; a sweep needs labelled data")
    exit_layers = list(model.exit_layers)
    temperatures = [float(value) for value in model.temperatures.tolist()]
    rows = sweep_table(
        outputs.logits,
        outputs.labels,
        grid,
        exit_layers,
        model.full_depth,
        temperatures,
        progress=len(grid) * len(outputs) > 1_000_000,
    )
    full_model = next(row for row in rows if row.threshold == FULL_MODEL_THRESHOLD)
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
            recommended = [r.threshold for r in recommendations if r.threshold is not None]
            timing_thresholds = pick_timing_thresholds(rows, include=recommended)
        timed = instances if timing_instances is None else instances[:timing_instances]
        for size in sorted(set(timing_batch_sizes)):
            timings.extend(
                measure_inference_time(model, timed, timing_thresholds, size, repeats=repeats)
            )

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
            "batch_size": batch_size,
            "timing": {
                "enabled": bool(timing),
                "thresholds": list(timing_thresholds or []),
                "batch_sizes": sorted(set(timing_batch_sizes)) if timing else [],
                "repeats": repeats,
                "instances": min(len(instances), timing_instances or len(instances)),
            },
        },
    )


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
    another model type or bad settings, `SweepInputError` for data without gold labels, and the
    reader's own errors (e.g. `DataFormatError`) for unreadable data.
    """
    archive_file, data_file = str(archive_file), str(data_file)
    check_goals(kwargs.get("max_accuracy_drop"), kwargs.get("compute_budget"))
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
    unlabelled = sum(1 for instance in instances if "label" not in instance.fields)
    if instances and unlabelled and risk not in (None, NO_GUARANTEE):
        result = _sweep_unlabelled(archive.model, instances, unlabelled, **kwargs)
    else:
        result = sweep_model(archive.model, instances, data_name=data_file, **kwargs)
    result.sources = {"archive_file": archive_file, "data_file": data_file, **result.sources}
    return result


def _sweep_unlabelled(
    model: EarlyExitClassifier, instances: List[Instance], unlabelled: int, **kwargs: Any
) -> LabelFreeSweep:
    resolve_risk(kwargs.get("risk"), unlabelled, len(instances))  # only consistency goes on
    if kwargs.get("compute_budget") is not None:
        raise ConfigurationError(
            "a compute budget picks the most accurate threshold: it needs labels"
        )
    grid = _grid(kwargs.get("thresholds"))
    return sweep_unlabelled(
        model,
        instances,
        grid,
        epsilon=kwargs.get("max_accuracy_drop") or DEFAULT_MAX_ACCURACY_DROP,
        delta=kwargs.get("delta", DEFAULT_DELTA),
        batch_size=kwargs.get("batch_size", 32),
    )
