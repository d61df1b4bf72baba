"""
Temperature scaling (Guo et al., 2017) of each exit head, fitted on cached logits.

The paper calibrates every head on development data and takes the exit decision on the calibrated
probabilities. Fitting one scalar per head from cached logits costs seconds, so the search is a
bounded one-dimensional minimisation of the negative log-likelihood over `log T` (the NLL is convex
in `1 / T`, hence unimodal in `log T`), which cannot run off to `T = 0` the way an unguarded
gradient method can on separable data.
"""

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy
import torch
from allennlp.common.checks import ConfigurationError
from scipy.optimize import minimize_scalar

from early_exit.metrics.expected_calibration_error import ExpectedCalibrationError

if TYPE_CHECKING:
    from early_exit.models.head_outputs import HeadOutputs

logger = logging.getLogger(__name__)

DEFAULT_MIN_TEMPERATURE = 0.05
DEFAULT_MAX_TEMPERATURE = 20.0
DEFAULT_NUM_BINS = 15
# Below this many instances a fitted temperature is reported with a warning.
FEW_INSTANCES = 50
# Tolerance of the bounded search, in log-temperature (a relative precision of about 1e-5 on T).
_LOG_TEMPERATURE_TOLERANCE = 1e-5


@dataclass
class TemperatureFit:
    """
    The result of fitting one head's temperature.

    # Attributes

    temperature : `float`
        The fitted temperature, rounded to float32 (the precision the model stores it in); the NLL
        and ECE "after" values are computed with exactly this value.
    nll_before : `float`
        Mean negative log-likelihood of the calibration data at `T = 1`.
    nll_after : `float`
        The same at `temperature`; never larger than `nll_before`.
    ece_before : `float`
        Expected calibration error at `T = 1`.
    ece_after : `float`
        Expected calibration error at `temperature`.
    num_instances : `int`
        How many instances the temperature was fitted on.
    warning : `str`, optional
        Why the temperature should be taken with care (too few instances, a search that stopped at
        the range's bound, no improvement over `T = 1` ...), or `None`.
    """

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    num_instances: int
    warning: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def check_temperature_range(min_temperature: float, max_temperature: float) -> None:
    """
    Raises a `ConfigurationError` unless `0 < min_temperature <= 1 <= max_temperature` (the range
    must hold `T = 1`, the fallback when no temperature improves the NLL).
    """
    if not (0.0 < min_temperature <= 1.0 <= max_temperature < math.inf):
        raise ConfigurationError(
            "the temperature range must satisfy 0 < min_temperature <= 1 <= max_temperature "
            f"(finite); got [{min_temperature}, {max_temperature}]"
        )


def negative_log_likelihood(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> float:
    """
    The mean negative log-likelihood of `labels` under `softmax(logits / temperature)`, computed in
    float64.

    # Parameters

    logits : `torch.Tensor`
        Shape `(num_instances, num_labels)`, raw (unscaled) logits.
    labels : `torch.Tensor`
        Shape `(num_instances,)`.
    temperature : `float`, optional (default = `1.0`)
    """
    scaled = logits.double() / temperature  # (num_instances, num_labels)
    return float(torch.nn.functional.cross_entropy(scaled, labels.long()))


def expected_calibration_error(
    probabilities: torch.Tensor, labels: torch.Tensor, num_bins: int = DEFAULT_NUM_BINS
) -> float:
    """
    The expected calibration error of `probabilities` `(num_instances, num_labels)` for `labels`
    `(num_instances,)`, with the equal-width bins of the `expected_calibration_error` metric.

    Unlike the metric object, this never reduces across distributed workers, so it can run on one
    worker alone.
    """
    num_instances = probabilities.shape[0]
    if num_instances == 0:
        return 0.0
    confidence, predicted = probabilities.double().max(dim=-1)  # (num_instances,)
    correct = (predicted == labels.long()).double()  # (num_instances,)
    bins = ExpectedCalibrationError.bin_indices(confidence, num_bins)  # (num_instances,)
    confidence_sums = torch.bincount(bins, confidence, minlength=num_bins)  # (num_bins,)
    correct_sums = torch.bincount(bins, correct, minlength=num_bins)  # (num_bins,)
    return float((correct_sums - confidence_sums).abs().sum() / num_instances)


def _as_float32(value: float) -> float:
    return float(numpy.float32(value))


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    min_temperature: float = DEFAULT_MIN_TEMPERATURE,
    max_temperature: float = DEFAULT_MAX_TEMPERATURE,
    num_bins: int = DEFAULT_NUM_BINS,
    name: str = "temperature scaling",
) -> TemperatureFit:
    """
    Fits one temperature `T` minimising the mean NLL of `labels` under `softmax(logits / T)`.

    The search is bounded to `[min_temperature, max_temperature]` (over `log T`). When the NLL still
    falls at a bound (separable data: every prediction correct, or too few instances), the
    temperature stops at that bound and a warning is logged. A temperature whose NLL on the data is
    not lower than at `T = 1` is never returned: the fit falls back to `1.0`. Degenerate data (one
    instance, one class) gives a warning and a temperature in the range, never NaN.

    # Parameters

    logits : `torch.Tensor`
        Shape `(num_instances, num_labels)`, the head's raw logits.
    labels : `torch.Tensor`
        Shape `(num_instances,)`, gold label indices.
    min_temperature : `float`, optional (default = `0.05`)
    max_temperature : `float`, optional (default = `20.0`)
        The search range; it must hold 1.
    num_bins : `int`, optional (default = `15`)
        Bins of the reported expected calibration error.
    name : `str`, optional
        Names the head in logged warnings.

    # Returns

    A `TemperatureFit`.

    # Raises

    `ValueError` for empty data, mismatched shapes, labels out of range or non-finite logits.
    """
    check_temperature_range(min_temperature, max_temperature)
    if logits.dim() != 2 or labels.dim() != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            "expected logits (num_instances, num_labels) and labels (num_instances,), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    num_instances, num_labels = logits.shape
    if num_instances == 0:
        raise ValueError("no instances to fit a temperature on")
    logits = logits.detach().double().cpu()  # (num_instances, num_labels)
    labels = labels.detach().long().cpu()  # (num_instances,)
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(f"{name}: the logits hold NaN or infinite values")
    if int(labels.min()) < 0 or int(labels.max()) >= num_labels:
        raise ValueError(f"{name}: labels must be in [0, {num_labels}), got {labels.unique()}")

    def nll(temperature: float) -> float:
        return negative_log_likelihood(logits, labels, temperature)

    def ece(temperature: float) -> float:
        probabilities = torch.softmax(logits / temperature, dim=-1)  # (num_instances, num_labels)
        return expected_calibration_error(probabilities, labels, num_bins)

    warnings: List[str] = []
    if num_instances < FEW_INSTANCES:
        warnings.append(f"only {num_instances} instance(s), the temperature is unreliable")
    if int(labels.unique().numel()) < 2:
        warnings.append(f"every label is class {int(labels[0])}")

    lower, upper = _as_float32(min_temperature), _as_float32(max_temperature)
    search = minimize_scalar(
        lambda log_temperature: nll(math.exp(log_temperature)),
        bounds=(math.log(min_temperature), math.log(max_temperature)),
        method="bounded",
        options={"xatol": _LOG_TEMPERATURE_TOLERANCE},
    )
    found = min(max(_as_float32(math.exp(float(search.x))), lower), upper)
    # The bounded search never evaluates the bounds themselves: try them too.
    candidates = {found: nll(found), lower: nll(lower), upper: nll(upper)}
    temperature = min(candidates, key=candidates.__getitem__)  # ties: the search's own answer
    nll_before, nll_after = nll(1.0), candidates[temperature]
    if not nll_after < nll_before or not math.isfinite(nll_after):
        warnings.append(
            f"no temperature in [{min_temperature:g}, {max_temperature:g}] lowers the NLL below "
            f"its value at T = 1 ({nll_before:.6g}); keeping T = 1"
        )
        temperature, nll_after = 1.0, nll_before
    elif temperature in (lower, upper):
        side = "lower" if temperature == lower else "upper"
        cause = (
            "(nearly) every prediction is correct: the data are separable for this head"
            if side == "lower"
            else "the head's predictions are mostly wrong or carry no information"
        )
        warnings.append(
            f"the NLL still falls at the {side} bound of the range, T = {temperature:.4g} "
            f"({cause}); stopped there"
        )

    warning = "; ".join(warnings) if warnings else None
    if warning is not None:
        logger.warning("%s: %s", name, warning)
    return TemperatureFit(
        temperature=temperature,
        nll_before=nll_before,
        nll_after=nll_after,
        ece_before=ece(1.0),
        ece_after=ece(temperature),
        num_instances=num_instances,
        warning=warning,
    )


def fit_head_temperatures(
    head_outputs: "HeadOutputs",
    exit_layers: Optional[Sequence[int]] = None,
    min_temperature: float = DEFAULT_MIN_TEMPERATURE,
    max_temperature: float = DEFAULT_MAX_TEMPERATURE,
    num_bins: int = DEFAULT_NUM_BINS,
) -> List[TemperatureFit]:
    """
    Fits one temperature per head (see `fit_temperature`) from every head's cached logits.

    # Parameters

    head_outputs : `HeadOutputs`
        From `collect_head_outputs`, with gold labels.
    exit_layers : `Sequence[int]`, optional
        The heads' layers, only to name them in logged warnings.
    min_temperature : `float`, optional (default = `0.05`)
    max_temperature : `float`, optional (default = `20.0`)
    num_bins : `int`, optional (default = `15`)

    # Returns

    One `TemperatureFit` per head, in head order.
    """
    if head_outputs.labels is None:
        raise ValueError("the calibration data have no gold labels; temperature scaling needs them")
    logits = head_outputs.logits  # (num_instances, num_heads, num_labels)
    num_heads = logits.shape[1]
    if exit_layers is not None and len(exit_layers) != num_heads:
        raise ValueError(f"{len(exit_layers)} exit layers for {num_heads} heads")
    fits = []
    for head in range(num_heads):
        name = f"head {head}" + (f" (layer {exit_layers[head]})" if exit_layers else "")
        fits.append(
            fit_temperature(
                logits[:, head],
                head_outputs.labels,
                min_temperature=min_temperature,
                max_temperature=max_temperature,
                num_bins=num_bins,
                name=name,
            )
        )
    return fits
