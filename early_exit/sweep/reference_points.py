"""
Reference points for a threshold sweep, from the same cached head outputs: each head on its own (the
paper's "efficient baselines", all from one model) and the oracle that exits every instance at the
earliest head that gets it right, and the least compute any policy over the heads needs for a
given accuracy.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
from allennlp.training.metrics import CategoricalAccuracy

from early_exit.sweep.sweep_table import check_head_outputs, head_probabilities
from early_exit.metrics.expected_calibration_error import ExpectedCalibrationError


@dataclass
class HeadPoint:
    """One head (its index, its 0-based encoder layer) answering for every instance."""

    head: int
    layer: int
    accuracy: float
    ece: float
    relative_compute: float


@dataclass
class OraclePoint:
    """
    The oracle: every instance exits at the earliest head whose prediction is correct; `accuracy`
    is the fraction of instances some head gets right. Instances no head gets right
    (`unsolved_fraction`) cannot be placed by it; they are charged either to the first head (the
    cheapest possible, `..._unsolved_at_first`) or to the last head (`..._unsolved_at_last`).
    """

    accuracy: float
    relative_compute_unsolved_at_first: float
    relative_compute_unsolved_at_last: float
    mean_exit_layer_unsolved_at_first: float
    mean_exit_layer_unsolved_at_last: float
    unsolved_fraction: float


def single_head_points(
    head_logits: torch.Tensor,
    labels: torch.Tensor,
    exit_layers: Sequence[int],
    full_depth: int,
    temperatures: Optional[Union[Sequence[float], torch.Tensor]] = None,
) -> List[HeadPoint]:
    """
    Accuracy, ECE and cost of each head used alone for every instance, from raw logits
    `(num_instances, num_heads, num_labels)` and gold label indices `(num_instances,)`; the
    temperatures only affect the ECE.
    """
    head_logits = head_logits.float()  # (num_instances, num_heads, num_labels)
    head_probs = head_probabilities(head_logits, temperatures)
    check_head_outputs(head_logits, head_probs, labels, exit_layers)
    points = []
    for head, layer in enumerate(exit_layers):
        accuracy = CategoricalAccuracy()
        ece = ExpectedCalibrationError()
        accuracy(head_logits[:, head], labels.long())  # (num_instances, num_labels)
        ece(head_probs[:, head], labels.long())  # (num_instances, num_labels)
        points.append(
            HeadPoint(
                head=head,
                layer=int(layer),
                accuracy=float(accuracy.get_metric()),
                ece=float(ece.get_metric()),
                relative_compute=(layer + 1) / full_depth,
            )
        )
    return points


def oracle_point(
    head_logits: torch.Tensor, labels: torch.Tensor, exit_layers: Sequence[int], full_depth: int
) -> OraclePoint:
    """
    The oracle's accuracy and cost (see `OraclePoint`), from raw logits (or probabilities: the
    temperatures change no head's prediction), as `single_head_points`.
    """
    check_head_outputs(head_logits, head_logits, labels, exit_layers)
    solved, layers, at_first = _earliest_correct(head_logits, labels, exit_layers)
    at_last = torch.where(solved, at_first, layers[-1])  # (num_instances,)
    return OraclePoint(
        accuracy=float(solved.double().mean()),
        relative_compute_unsolved_at_first=float((at_first + 1).mean()) / full_depth,
        relative_compute_unsolved_at_last=float((at_last + 1).mean()) / full_depth,
        mean_exit_layer_unsolved_at_first=float(at_first.mean()),
        mean_exit_layer_unsolved_at_last=float(at_last.mean()),
        unsolved_fraction=float((~solved).double().mean()),
    )


def oracle_compute_at_accuracy(
    head_logits: torch.Tensor,
    labels: torch.Tensor,
    exit_layers: Sequence[int],
    full_depth: int,
    accuracy: float,
) -> float:
    """
    The least relative compute any exit policy over these heads needs for `accuracy` on this data:
    the instances that are cheapest to get right exit at their earliest correct head, every other
    instance at the first head. `nan` when no head gets that many instances right. Set against a
    policy's compute at its accuracy (a fraction of the instances), it says how far the policy is
    from the best its heads allow. The other parameters are `oracle_point`'s.
    """
    check_head_outputs(head_logits, head_logits, labels, exit_layers)
    solved, _, at_first = _earliest_correct(head_logits, labels, exit_layers)
    cheapest = (at_first + 1)[solved].sort().values  # the solved instances' costs, ascending
    count = len(labels)
    needed = math.ceil(accuracy * count - 1e-3)  # an accuracy is (instances right) / count
    if needed > len(cheapest):
        return float("nan")
    total = float(cheapest[:needed].sum()) + (count - needed) * (exit_layers[0] + 1)
    return total / count / full_depth


def _earliest_correct(
    head_logits: torch.Tensor, labels: torch.Tensor, exit_layers: Sequence[int]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Which instances some head gets right `(num_instances,)`, the heads' layers `(num_heads,)`
    (double), and each instance's layer at its earliest correct head, the first head's where none
    is right `(num_instances,)`.
    """
    correct = head_logits.argmax(dim=-1) == labels.long().view(-1, 1)  # (num_instances, num_heads)
    solved = correct.any(dim=1)  # (num_instances,)
    earliest = correct.long().argmax(dim=1)  # (num_instances,): first correct head, 0 if none
    layers = torch.tensor(list(exit_layers), dtype=torch.double)  # (num_heads,)
    return solved, layers, layers[earliest]
