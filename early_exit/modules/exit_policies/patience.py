from typing import Any, Dict, List, Optional

import torch
from overrides import overrides

from early_exit.modules.exit_policies.exit_policy import (
    ExitDecision,
    ExitPolicy,
    check_patience,
    counted,
)


@ExitPolicy.register("patience")
class PatiencePolicy(ExitPolicy):
    """
    PABEE's rule (Zhou et al., 2020, "BERT Loses Patience"): a row exits at the first head where
    its predicted label has been the same at `patience` consecutive heads, this one included.

    Per-row state `(num_rows, 2)`: the label predicted at the previous head (-1 before the first)
    and how many consecutive heads have predicted it.

    Registered as an `ExitPolicy` with name "patience".

    # Parameters

    patience : `int`
        At least 1: 1 exits at the first head; `patience` >= the number of heads never exits early.
    """

    def __init__(self, patience: int) -> None:
        self.patience = check_patience(patience)

    @overrides
    def initial_state(self, num_rows: int, device: torch.device) -> Optional[torch.Tensor]:
        state = torch.zeros((num_rows, 2), dtype=torch.long, device=device)
        state[:, 0] = -1
        return state

    @overrides
    def decide(self, probs: torch.Tensor, state: Optional[torch.Tensor]) -> ExitDecision:
        labels = probs.argmax(dim=-1)  # (num_rows,)
        same = labels == state[:, 0]  # (num_rows,)
        streak = torch.where(same, state[:, 1] + 1, torch.ones_like(labels))  # (num_rows,)
        return counted(streak >= self.patience, torch.stack([labels, streak], dim=1))

    @overrides
    def never_exits_early(self, num_heads: int) -> bool:
        # Before the last head at most `num_heads - 1` heads have answered.
        return self.patience >= num_heads

    @overrides
    def parameters(self) -> Dict[str, Any]:
        return {"patience": self.patience}

    @overrides
    def conservativeness(self) -> tuple:
        return (self.patience,)

    @overrides
    def sweep_grid(self, num_heads: int) -> List[ExitPolicy]:
        return [PatiencePolicy(patience) for patience in range(num_heads, 0, -1)]
