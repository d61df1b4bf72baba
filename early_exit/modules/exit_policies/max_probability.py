from typing import Any, Dict, List, Optional

import torch
from overrides import overrides

from early_exit.modules.exit_policies.exit_policy import (
    ExitDecision,
    ExitPolicy,
    check_fraction,
    counted,
    fraction_grid,
    rounded,
)

# Extra grid points near 1.0, where confident models make most of their decisions.
NEAR_ONE_THRESHOLDS = (0.995, 0.998, 0.999, 0.9995, 0.9999)


@ExitPolicy.register("max_probability")
class MaxProbabilityPolicy(ExitPolicy):
    """
    The paper's rule (Schwartz et al., 2020): a row exits at the first head whose temperature-scaled
    maximum probability is at least `threshold`. The comparison is in the probabilities' dtype (the
    threshold rounded to it), so float16 and bfloat16 heads decide as their tensors compare.

    Registered as an `ExitPolicy` with name "max_probability".

    # Parameters

    threshold : `float`
        In [0, 1]. 1.0 never exits early (even where a probability rounds to 1.0); 0 always
        exits at the first head. Required: a policy without it would never exit early, silently.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = check_fraction("threshold", threshold)

    @overrides
    def decide(self, probs: torch.Tensor, state: Optional[torch.Tensor]) -> ExitDecision:
        if self.threshold >= 1.0:
            return ExitDecision(0, None, state)
        if probs.shape[0] == 1:
            # One row: the same comparison on Python floats, without the tensor operators (at
            # batch size 1 a head's operators cost more than its arithmetic). `.item()`, not
            # `float()`: the latter warns when the model runs with gradients on.
            exits = probs.max().item() >= rounded(self.threshold, probs.dtype)
            return ExitDecision(int(exits), None, state)
        return counted(probs.max(dim=-1).values >= self.threshold, state)

    @overrides
    def never_exits_early(self, num_heads: int) -> bool:
        return self.threshold >= 1.0

    @overrides
    def parameters(self) -> Dict[str, Any]:
        return {"threshold": self.threshold}

    @overrides
    def conservativeness(self) -> tuple:
        return (self.threshold,)

    @overrides
    def sweep_grid(self, num_heads: int) -> List[ExitPolicy]:
        thresholds = fraction_grid(0.01, NEAR_ONE_THRESHOLDS)
        return [MaxProbabilityPolicy(threshold) for threshold in reversed(thresholds)]
