"""
The speed/accuracy table of a threshold sweep, computed from every head's cached outputs.

Each threshold is evaluated exactly as the model decides at that threshold: the exits come from
`first_exit_head` (the model's own exit rule) on the temperature-scaled probabilities, and accuracy,
ECE and the exit statistics come from the metric classes the model reports to `allennlp evaluate`.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.tqdm import Tqdm
from allennlp.training.metrics import CategoricalAccuracy

from early_exit.modules.exit_policies import MaxProbabilityPolicy, scaled_probabilities
from early_exit.training.metrics.exit_statistics import ExitStatistics
from early_exit.training.metrics.expected_calibration_error import ExpectedCalibrationError


@dataclass
class SweepRow:
    """
    The model's behaviour at one confidence threshold on one data set.

    # Attributes

    threshold : `float`
    accuracy : `float`
    ece : `float`
        Expected calibration error of the answering heads' probabilities (15 bins, as the model).
    relative_compute : `float`
        Mean fraction of the full encoder's layers computed, `(exit_layer + 1) / full_depth`.
    mean_exit_layer : `float`
        Mean 0-based exit layer.
    exit_fractions : `Dict[int, float]`
        For each exit layer, the fraction of instances that exit there.
    """

    threshold: float
    accuracy: float
    ece: float
    relative_compute: float
    mean_exit_layer: float
    exit_fractions: Dict[int, float] = field(default_factory=dict)


def head_probabilities(
    head_logits: torch.Tensor, temperatures: Optional[Union[Sequence[float], torch.Tensor]] = None
) -> torch.Tensor:
    """
    Every head's temperature-scaled probabilities, computed as the model computes them.

    # Parameters

    head_logits : `torch.Tensor`
        Raw logits, shape `(num_instances, num_heads, num_labels)`.
    temperatures : `Sequence[float]` or `torch.Tensor`, optional
        One temperature per head; all 1.0 when not given.

    # Returns

    `torch.Tensor` of shape `(num_instances, num_heads, num_labels)`.
    """
    num_heads = head_logits.shape[1]
    if temperatures is None:
        temperatures = [1.0] * num_heads
    temperatures = torch.as_tensor(temperatures, dtype=head_logits.dtype).to(head_logits.device)
    if temperatures.numel() != num_heads:
        raise ConfigurationError(
            f"{temperatures.numel()} temperatures given for {num_heads} heads: "
            f"{temperatures.tolist()}"
        )
    return scaled_probabilities(head_logits, temperatures)


def check_head_outputs(
    head_logits: torch.Tensor,
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    exit_layers: Sequence[int],
) -> None:
    """
    Checks that cached head outputs fit together: logits and probabilities of shape
    `(num_instances, num_heads, num_labels)`, one head per exit layer, one gold label per instance.

    # Raises

    `ConfigurationError` saying what does not fit.
    """
    if head_logits.dim() != 3 or head_logits.shape != head_probs.shape:
        raise ConfigurationError(
            "head_logits and head_probs must both have shape (num_instances, num_heads, "
            f"num_labels); got {tuple(head_logits.shape)} and {tuple(head_probs.shape)}"
        )
    if head_logits.shape[1] != len(exit_layers):
        raise ConfigurationError(
            f"{head_logits.shape[1]} heads in the outputs but {len(exit_layers)} exit layers "
            f"{list(exit_layers)}"
        )
    if labels is None or labels.shape != head_logits.shape[:1]:
        raise ConfigurationError(
            f"one gold label per instance is needed, got "
            f"{None if labels is None else tuple(labels.shape)} "
            f"for {head_logits.shape[0]} instances"
        )
    if head_logits.shape[0] == 0:
        raise ConfigurationError("no instances to sweep over")


def evaluate_threshold(
    head_logits: torch.Tensor,
    head_probs: torch.Tensor,
    labels: torch.Tensor,
    threshold: float,
    exit_layers: Sequence[int],
    full_depth: int,
) -> SweepRow:
    """
    The `SweepRow` of one threshold, from every head's raw logits and temperature-scaled
    probabilities (see `head_probabilities`).

    # Parameters

    head_logits : `torch.Tensor`
        Shape `(num_instances, num_heads, num_labels)`.
    head_probs : `torch.Tensor`
        Shape `(num_instances, num_heads, num_labels)`.
    labels : `torch.Tensor`
        Gold label indices, shape `(num_instances,)`.
    threshold : `float`
    exit_layers : `Sequence[int]`
        The 0-based encoder layer of each head.
    full_depth : `int`
        The number of layers of the full encoder.
    """
    check_head_outputs(head_logits, head_probs, labels, exit_layers)
    exit_head = MaxProbabilityPolicy(threshold).exit_heads(head_probs)  # (num_instances,)
    rows = torch.arange(head_logits.shape[0])
    accuracy = CategoricalAccuracy()
    ece = ExpectedCalibrationError()
    statistics = ExitStatistics(list(exit_layers), full_depth)
    accuracy(head_logits[rows, exit_head], labels)  # (num_instances, num_labels)
    ece(head_probs[rows, exit_head], labels)  # (num_instances, num_labels)
    statistics(exit_head)
    exit_statistics = statistics.get_metric()
    return SweepRow(
        threshold=float(threshold),
        accuracy=float(accuracy.get_metric()),
        ece=float(ece.get_metric()),
        relative_compute=exit_statistics["relative_compute"],
        mean_exit_layer=exit_statistics["mean_exit_layer"],
        exit_fractions={
            layer: exit_statistics[f"exit_fraction_layer_{layer}"] for layer in exit_layers
        },
    )


def sweep_table(
    head_logits: torch.Tensor,
    labels: torch.Tensor,
    thresholds: Sequence[float],
    exit_layers: Sequence[int],
    full_depth: int,
    temperatures: Optional[Union[Sequence[float], torch.Tensor]] = None,
    progress: bool = False,
) -> List[SweepRow]:
    """
    One `SweepRow` per threshold, in the order given.

    # Parameters

    head_logits : `torch.Tensor`
        Every head's raw logits, shape `(num_instances, num_heads, num_labels)`, e.g.
        `collect_head_outputs(...).logits`.
    labels : `torch.Tensor`
        Gold label indices, shape `(num_instances,)`.
    thresholds : `Sequence[float]`
    exit_layers : `Sequence[int]`
    full_depth : `int`
    temperatures : `Sequence[float]` or `torch.Tensor`, optional
        The model's per-head temperatures (`model.temperatures`); all 1.0 when not given.
    progress : `bool`, optional (default = `False`)
        Show a progress bar.
    """
    head_logits = head_logits.float()  # (num_instances, num_heads, num_labels)
    head_probs = head_probabilities(head_logits, temperatures)
    labels = None if labels is None else labels.long()
    iterator = Tqdm.tqdm(thresholds, desc="sweeping thresholds") if progress else thresholds
    return [
        evaluate_threshold(head_logits, head_probs, labels, threshold, exit_layers, full_depth)
        for threshold in iterator
    ]
