from typing import Optional

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.nn.util import dist_reduce_sum
from allennlp.training.metrics.metric import Metric
from overrides import overrides


@Metric.register("expected_calibration_error")
class ExpectedCalibrationError(Metric):
    """
    Expected calibration error (Guo et al., 2017) of predicted probabilities: instances are put into
    `num_bins` equal-width bins by their confidence (max probability; bin `b` holds confidences in
    `(b / num_bins, (b + 1) / num_bins]`, confidence 0 goes to the first bin), and the metric is the
    instance-weighted mean over bins of `|accuracy - mean confidence|`.

    Registered as a `Metric` with name "expected_calibration_error".

    # Parameters

    num_bins : `int`, optional (default = `15`)
    """

    def __init__(self, num_bins: int = 15) -> None:
        if num_bins < 1:
            raise ConfigurationError(f"num_bins must be at least 1, got {num_bins}")
        self._num_bins = num_bins
        self.reset()

    @overrides
    def __call__(  # type: ignore[override]
        self,
        probabilities: torch.Tensor,
        gold_labels: torch.Tensor,
        mask: Optional[torch.BoolTensor] = None,
    ) -> None:
        """
        # Parameters

        probabilities : `torch.Tensor`
            Shape `(batch_size, num_classes)`, rows summing to 1.
        gold_labels : `torch.Tensor`
            Shape `(batch_size,)`.
        mask : `torch.BoolTensor`, optional
            Shape `(batch_size,)`; instances where it is False are ignored.
        """
        probabilities, gold_labels, mask = self.detach_tensors(probabilities, gold_labels, mask)
        probabilities = probabilities.float().cpu()  # (batch_size, num_classes)
        gold_labels = gold_labels.reshape(-1).long().cpu()  # (batch_size,)
        if mask is not None:
            keep = mask.reshape(-1).bool().cpu()
            probabilities, gold_labels = probabilities[keep], gold_labels[keep]
        confidence, predicted = probabilities.max(dim=-1)  # (batch_size,)
        correct = (predicted == gold_labels).double()  # (batch_size,)
        bins = self.bin_indices(confidence, self._num_bins)  # (batch_size,)
        counts = torch.bincount(bins, minlength=self._num_bins).double()
        confidence_sums = torch.bincount(bins, confidence.double(), minlength=self._num_bins)
        correct_sums = torch.bincount(bins, correct, minlength=self._num_bins)
        self._counts += dist_reduce_sum(counts)
        self._confidence_sums += dist_reduce_sum(confidence_sums)
        self._correct_sums += dist_reduce_sum(correct_sums)

    @staticmethod
    def bin_indices(confidence: torch.Tensor, num_bins: int) -> torch.Tensor:
        """The equal-width bin of each confidence, right-closed: `(b/n, (b+1)/n]` is bin `b`."""
        return (torch.ceil(confidence.double() * num_bins).long() - 1).clamp(0, num_bins - 1)

    @overrides
    def get_metric(self, reset: bool = False) -> float:
        total = float(self._counts.sum())
        if total == 0:
            ece = 0.0
        else:
            gaps = (
                self._correct_sums - self._confidence_sums
            ).abs()  # per bin: n_b * |acc_b - conf_b|
            ece = float(gaps.sum() / total)
        if reset:
            self.reset()
        return ece

    @overrides
    def reset(self) -> None:
        self._counts = torch.zeros(self._num_bins, dtype=torch.double)
        self._confidence_sums = torch.zeros(self._num_bins, dtype=torch.double)
        self._correct_sums = torch.zeros(self._num_bins, dtype=torch.double)
