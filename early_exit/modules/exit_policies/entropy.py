import math
from typing import Any, Dict, List, Optional

import torch
from overrides import overrides

from early_exit.modules.exit_policies.exit_policy import (
    ExitDecision,
    ExitPolicy,
    check_fraction,
    counted,
    fraction_grid,
)

# Extra grid points near 0, where confident models make most of their decisions.
NEAR_ZERO_THRESHOLDS = (0.0001, 0.0005, 0.001, 0.002, 0.005)


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """`(num_rows, num_labels)` -> `(num_rows,)`: H(p) / log(num_labels), in float32 at least."""
    if probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()  # a sum of products loses too much in half precision
    entropy = -torch.special.xlogy(probs, probs).sum(dim=-1)  # (num_rows,); 0 log 0 = 0
    return entropy / math.log(probs.shape[-1])


@ExitPolicy.register("entropy")
class EntropyPolicy(ExitPolicy):
    """
    DeeBERT's and FastBERT's rule: a row exits at the first head where the normalised entropy
    `H(p) / log(num_labels)` of its temperature-scaled distribution is at most `threshold`.
    Normalising makes one threshold mean the same for 2 labels and for 40.

    Registered as an `ExitPolicy` with name "entropy".

    # Parameters

    threshold : `float`
        In [0, 1]. 0 never exits early (even where a distribution rounds to one-hot); 1.0 always
        exits at the first head. Required: a policy without it would never exit early, silently.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = check_fraction("threshold", threshold)

    @overrides
    def decide(self, probs: torch.Tensor, state: Optional[torch.Tensor]) -> ExitDecision:
        num_rows = probs.shape[0]
        if self.threshold <= 0.0:
            return ExitDecision(0, None, state)
        if self.threshold >= 1.0:  # H / log K <= 1 always; rounding must not say otherwise
            return ExitDecision(num_rows, None, state)
        return counted(normalised_entropy(probs) <= self.threshold, state)

    @overrides
    def never_exits_early(self, num_heads: int) -> bool:
        return self.threshold <= 0.0

    @overrides
    def parameters(self) -> Dict[str, Any]:
        return {"threshold": self.threshold}

    @overrides
    def conservativeness(self) -> tuple:
        return (-self.threshold,)

    @overrides
    def sweep_grid(self, num_heads: int) -> List[ExitPolicy]:
        return [EntropyPolicy(value) for value in fraction_grid(0.01, NEAR_ZERO_THRESHOLDS)]
