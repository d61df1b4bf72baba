from dataclasses import dataclass, field
from typing import List, Optional

import torch


@dataclass
class ExitRecord:
    """
    What the heads of an early-exit forward pass decided, head by head: the rows that exited at
    each head with their logits and probabilities, kept as the heads produce them and written into
    batch order once, at the end.

    # Attributes

    rows : `List[torch.LongTensor]`
        Per head with exits `(num_exited,)`: the rows (their indices in the batch, or in the
        stream) that exited there.
    logits : `List[torch.Tensor]`
        Per head with exits `(num_exited, num_labels)`: their raw logits.
    probs : `List[torch.Tensor]`
        Per head with exits `(num_exited, num_labels)`: their temperature-scaled probabilities.
    heads : `List[int]`
        The exit head of every exited row, in the order of `rows`.
    every_head : `Optional[torch.Tensor]`
        Where every head ran for every row (no row left before the last head):
        `(num_rows, num_heads, num_labels)`, every head's raw logits, rows in the order of `rows`.
    """

    rows: List[torch.Tensor] = field(default_factory=list)
    logits: List[torch.Tensor] = field(default_factory=list)
    probs: List[torch.Tensor] = field(default_factory=list)
    heads: List[int] = field(default_factory=list)
    every_head: Optional[torch.Tensor] = None

    def add(
        self,
        rows: torch.Tensor,
        logits: torch.Tensor,
        probs: torch.Tensor,
        head: int,
        count: int,
        every_head: Optional[torch.Tensor] = None,
    ) -> None:
        """Records that `count` rows `rows` `(count,)` exited at `head` (see `every_head`)."""
        if every_head is not None:
            self.every_head = every_head
        self.rows.append(rows)
        self.logits.append(logits)
        self.probs.append(probs)
        self.heads.extend([head] * count)
