from typing import Any, Dict, List, Optional

import torch
from overrides import overrides

from early_exit.modules.exit_policies.exit_policy import (
    ExitDecision,
    ExitPolicy,
    check_fraction,
    check_patience,
    counted,
)

# The thresholds `sweep_grid` combines with every patience: coarser than max_probability's grid, so
# that the grid of both stays a few hundred points.
GRID_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@ExitPolicy.register("confident_patience")
class ConfidentPatiencePolicy(ExitPolicy):
    """
    PCEE-BERT's rule (Zhang et al., 2022): a row exits once `patience` consecutive heads, this one
    included, each reached a temperature-scaled maximum probability of at least `threshold`.
    `patience` 1 is the paper's max-probability rule.

    Per-row state `(num_rows,)`: how many consecutive heads so far were confident.

    Registered as an `ExitPolicy` with name "confident_patience".

    # Parameters

    threshold : `float`
        In [0, 1]; 1.0 never exits early.
    patience : `int`
        At least 1; `patience` >= the number of heads never exits early.
    """

    def __init__(self, threshold: float, patience: int) -> None:
        self.threshold = check_fraction("threshold", threshold)
        self.patience = check_patience(patience)

    @overrides
    def initial_state(self, num_rows: int, device: torch.device) -> Optional[torch.Tensor]:
        return torch.zeros(num_rows, dtype=torch.long, device=device)

    @overrides
    def decide(self, probs: torch.Tensor, state: Optional[torch.Tensor]) -> ExitDecision:
        if self.threshold >= 1.0:
            return ExitDecision(0, None, state)
        confident = probs.max(dim=-1).values >= self.threshold  # (num_rows,)
        streak = torch.where(confident, state + 1, torch.zeros_like(state))  # (num_rows,)
        return counted(streak >= self.patience, streak)

    @overrides
    def never_exits_early(self, num_heads: int) -> bool:
        return self.threshold >= 1.0 or self.patience >= num_heads

    @overrides
    def parameters(self) -> Dict[str, Any]:
        return {"threshold": self.threshold, "patience": self.patience}

    @overrides
    def conservativeness(self) -> tuple:
        return (self.patience, self.threshold)

    @overrides
    def sweep_grid(self, num_heads: int) -> List[ExitPolicy]:
        return [
            ConfidentPatiencePolicy(threshold, patience)
            for patience in range(max(num_heads - 1, 1), 0, -1)
            for threshold in reversed(GRID_THRESHOLDS)
        ]
