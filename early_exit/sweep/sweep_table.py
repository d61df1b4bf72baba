"""
The speed/accuracy table of a sweep, computed from every head's cached outputs, on labelled data
or without labels (then without accuracy and ECE).

Each exit policy is evaluated exactly as the model decides under it: the exits come from the
policy's own `exit_heads` on the temperature-scaled probabilities, and accuracy, ECE and the exit
statistics come from the metric classes the model reports to `allennlp evaluate`.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.tqdm import Tqdm
from allennlp.training.metrics import CategoricalAccuracy

from early_exit.modules.exit_policies import ExitPolicy, MaxProbabilityPolicy, scaled_probabilities
from early_exit.metrics.exit_statistics import ExitStatistics
from early_exit.metrics.expected_calibration_error import ExpectedCalibrationError
from early_exit.sweep.risk_control import CONSISTENCY, risk_losses


@dataclass
class SweepRow:
    """
    The model's behaviour under one exit policy on one data set.

    # Attributes

    threshold : `Optional[float]`
        The policy's `threshold`; `None` for a policy without one (`patience`).
    accuracy : `float`, optional
        `None` on data without labels.
    ece : `float`, optional
        Expected calibration error of the answering heads' probabilities (15 bins, as the model);
        `None` on data without labels.
    relative_compute : `float`
        Mean fraction of the full encoder's layers computed, `(exit_layer + 1) / full_depth`.
    mean_exit_layer : `float`
        Mean 0-based exit layer.
    exit_fractions : `Dict[int, float]`
        For each exit layer, the fraction of instances that exit there.
    policy : `ExitPolicy`, optional
        The exit policy of the row; `max_probability` at `threshold` when not given.
    disagreement : `float`, optional
        The fraction of predictions that differ from the full model's (the last head's).
    """

    threshold: Optional[float]
    accuracy: Optional[float]
    ece: Optional[float]
    relative_compute: float
    mean_exit_layer: float
    exit_fractions: Dict[int, float] = field(default_factory=dict)
    policy: Optional[ExitPolicy] = None
    disagreement: Optional[float] = None

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = MaxProbabilityPolicy(self.threshold)

    def to_json(self) -> Dict[str, Any]:
        """The row as JSON: its fields, with `policy` as `ExitPolicy.to_json()` gives it."""
        return {
            "policy": self.policy.to_json(),
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "ece": self.ece,
            "relative_compute": self.relative_compute,
            "mean_exit_layer": self.mean_exit_layer,
            "exit_fractions": {str(layer): value for layer, value in self.exit_fractions.items()},
        }


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
    `(num_instances, num_heads, num_labels)`, one head per exit layer, one gold label per instance
    (when there are labels).

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
    if labels is not None and labels.shape != head_logits.shape[:1]:
        raise ConfigurationError(
            f"one gold label per instance is needed, got "
            f"{None if labels is None else tuple(labels.shape)} "
            f"for {head_logits.shape[0]} instances"
        )
    if head_logits.shape[0] == 0:
        raise ConfigurationError("no instances to sweep over")


def evaluate_policy(
    head_logits: torch.Tensor,
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    policy: ExitPolicy,
    exit_layers: Sequence[int],
    full_depth: int,
) -> SweepRow:
    """
    The `SweepRow` of one exit policy, from every head's raw logits and temperature-scaled
    probabilities (see `head_probabilities`); without labels, its compute and its disagreement
    with the full model only.

    # Parameters

    head_logits : `torch.Tensor`
        Shape `(num_instances, num_heads, num_labels)`.
    head_probs : `torch.Tensor`
        Shape `(num_instances, num_heads, num_labels)`.
    labels : `torch.Tensor`, optional
        Gold label indices, shape `(num_instances,)`.
    policy : `ExitPolicy`
    exit_layers : `Sequence[int]`
        The 0-based encoder layer of each head.
    full_depth : `int`
        The number of layers of the full encoder.
    """
    check_head_outputs(head_logits, head_probs, labels, exit_layers)
    exit_head = policy.exit_heads(head_probs)  # (num_instances,)
    rows = torch.arange(head_logits.shape[0])
    statistics = ExitStatistics(list(exit_layers), full_depth)
    statistics(exit_head)
    exit_statistics = statistics.get_metric()
    threshold = policy.parameters().get("threshold")
    row = SweepRow(
        threshold=None if threshold is None else float(threshold),
        accuracy=None,
        ece=None,
        relative_compute=exit_statistics["relative_compute"],
        mean_exit_layer=exit_statistics["mean_exit_layer"],
        exit_fractions={
            layer: exit_statistics[f"exit_fraction_layer_{layer}"] for layer in exit_layers
        },
        policy=policy,
    )
    if labels is None:
        early = head_probs[rows, exit_head].argmax(dim=-1)  # (num_instances,)
        full = head_probs[:, -1].argmax(dim=-1)  # (num_instances,)
        row.disagreement = float(risk_losses(early, full, None, CONSISTENCY).float().mean())
        return row
    accuracy = CategoricalAccuracy()
    ece = ExpectedCalibrationError()
    accuracy(head_logits[rows, exit_head], labels)  # (num_instances, num_labels)
    ece(head_probs[rows, exit_head], labels)  # (num_instances, num_labels)
    row.accuracy = float(accuracy.get_metric())
    row.ece = float(ece.get_metric())
    return row


def sweep_policies(
    head_logits: torch.Tensor,
    labels: Optional[torch.Tensor],
    policies: Sequence[ExitPolicy],
    exit_layers: Sequence[int],
    full_depth: int,
    temperatures: Optional[Union[Sequence[float], torch.Tensor]] = None,
    progress: bool = False,
) -> List[SweepRow]:
    """
    One `SweepRow` per exit policy, in the order given: the policies of any types, each evaluated
    exactly as the model decides under it.

    # Parameters

    head_logits : `torch.Tensor`
        Every head's raw logits, shape `(num_instances, num_heads, num_labels)`, e.g.
        `collect_head_outputs(...).logits`.
    labels : `torch.Tensor`, optional
        Gold label indices, shape `(num_instances,)`; `None` for data without labels.
    policies : `Sequence[ExitPolicy]`
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
    iterator = Tqdm.tqdm(policies, desc="sweeping exit policies") if progress else policies
    return [
        evaluate_policy(head_logits, head_probs, labels, policy, exit_layers, full_depth)
        for policy in iterator
    ]


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
    One `SweepRow` per confidence threshold (the `max_probability` policy), in the order given;
    see `sweep_policies`.
    """
    policies = [MaxProbabilityPolicy(threshold) for threshold in thresholds]
    return sweep_policies(
        head_logits, labels, policies, exit_layers, full_depth, temperatures, progress
    )
