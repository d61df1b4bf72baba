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
    The model's behaviour under one exit `policy` (`max_probability` at `threshold` when not
    given) on one data set: `accuracy` and `ece` (of the answering heads, 15 bins as the model;
    both `None` without labels), the mean fraction of the encoder's layers computed
    (`relative_compute`, `(exit_layer + 1) / full_depth`), the mean 0-based exit layer, the
    fraction of instances that exit at each exit layer and the fraction of predictions that differ
    from the full model's (`disagreement`; computed without labels).
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
    Every head's temperature-scaled probabilities `(num_instances, num_heads, num_labels)` from its
    raw logits (the same shape), computed as the model computes them; `temperatures` (one a head)
    are all 1.0 when not given.
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
    A `ConfigurationError` saying what does not fit, unless cached head outputs fit together:
    logits and probabilities of shape `(num_instances, num_heads, num_labels)`, one head per exit
    layer, one gold label per instance (when there are labels).
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
            f"one gold label per instance is needed, got {tuple(labels.shape)} "
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
    probabilities (see `head_probabilities`), gold label indices `(num_instances,)`, the 0-based
    encoder layer of each head and the full encoder's depth; without labels, its compute and its
    disagreement with the full model only.
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
    One `SweepRow` per exit policy (of any types), in the order given, each evaluated exactly as
    the model decides under it (see `evaluate_policy`), from every head's raw logits (e.g.
    `collect_head_outputs(...).logits`) and the model's temperatures, with a progress bar if asked.
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
