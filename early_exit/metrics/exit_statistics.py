from typing import Dict, List, Sequence

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.util import is_distributed
from allennlp.nn.util import dist_reduce_sum
from allennlp.training.metrics.metric import Metric
from overrides import overrides


@Metric.register("early_exit_statistics")
class ExitStatistics(Metric):
    """
    Where instances leave an early-exit model, and what that costs.

    Registered as a `Metric` with name "early_exit_statistics".

    # Parameters

    exit_layers : `List[int]`
        The 0-based transformer layer index of each head, in order.
    full_depth : `int`
        The number of transformer layers of the full pretrained encoder (24 for BERT-large). Compute
        is reported relative to it, so a model cut after layer 11 of BERT-large never exceeds 0.5.

    # Metrics

    `exit_fraction_layer_{l}` for each exit layer `l`: the fraction of instances that exited there.
    `mean_exit_layer`: the mean 0-based exit layer.
    `relative_compute`: the mean fraction of the full encoder's layers computed,
    `(l + 1) / full_depth`.
    """

    def __init__(self, exit_layers: List[int], full_depth: int) -> None:
        if full_depth <= 0 or not exit_layers or max(exit_layers) >= full_depth:
            raise ConfigurationError(
                f"exit_layers {exit_layers} do not fit an encoder of depth {full_depth}"
            )
        self._exit_layers = list(exit_layers)
        self._full_depth = full_depth
        self._counts = torch.zeros(len(exit_layers), dtype=torch.long)
        # Counted by `count` from Python ints, added to `_counts` when the metric is read.
        self._pending = [0] * len(exit_layers)

    @overrides
    def __call__(self, exit_heads: torch.Tensor) -> None:  # type: ignore[override]
        """
        # Parameters

        exit_heads : `torch.Tensor`
            Shape `(batch_size,)`: the index (into `exit_layers`) of the head each instance exited
            at.
        """
        # Each conversion only where needed: at batch size 1 every call counts.
        if exit_heads.requires_grad:
            exit_heads = exit_heads.detach()
        if exit_heads.dim() != 1:
            exit_heads = exit_heads.reshape(-1)
        if exit_heads.dtype != torch.long:
            exit_heads = exit_heads.long()
        if exit_heads.device.type != "cpu":
            exit_heads = exit_heads.cpu()
        counts = torch.bincount(exit_heads, minlength=len(self._exit_layers))
        self._counts += dist_reduce_sum(counts)  # the counts themselves unless distributed

    def count(self, exit_heads: Sequence[int]) -> None:
        """
        As calling the metric with `torch.tensor(exit_heads)`, from Python ints: counted without
        an operator (at batch size 1 the two that bincounting takes cost more than the exit rule).
        """
        if is_distributed():  # every worker reduces its counts with the others, call by call
            self(torch.tensor(exit_heads, dtype=torch.long))
            return
        pending = self._pending
        num_heads = len(pending)
        for head in exit_heads:
            if not 0 <= head < num_heads:
                raise ValueError(f"exit head {head} is not one of the {num_heads} heads")
            pending[head] += 1

    @overrides
    def get_metric(self, reset: bool = False) -> Dict[str, float]:
        if any(self._pending):
            self._counts += torch.tensor(self._pending, dtype=torch.long)
            self._pending = [0] * len(self._pending)
        total = int(self._counts.sum())
        layers = torch.tensor(self._exit_layers, dtype=torch.double)
        fractions = self._counts.double() / max(total, 1)
        metrics = {
            f"exit_fraction_layer_{layer}": float(fraction)
            for layer, fraction in zip(self._exit_layers, fractions)
        }
        metrics["mean_exit_layer"] = float((fractions * layers).sum()) if total else 0.0
        metrics["relative_compute"] = (
            float((fractions * (layers + 1)).sum()) / self._full_depth if total else 0.0
        )
        if reset:
            self.reset()
        return metrics

    @overrides
    def reset(self) -> None:
        self._counts.zero_()
        self._pending = [0] * len(self._pending)
