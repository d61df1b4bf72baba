from typing import List, Optional, Sequence, TypeVar

import torch

R = TypeVar("R", bound="RowSet")


class RowSet:
    """
    Rows that go through the encoder's layers together, and what the heads and the exit policy
    keep of each row on the way: the pooled output of every layer run so far, the logits of the
    heads passed (where later heads read them) and the policy's per-row state. `select` and `merge`
    carry all of it along with the rows' tokens, so that a row is computed and decided alike
    whatever rows it runs with.

    Two layouts implement it: `PackedRows` (the real tokens only, one matrix) and `PaddedRows`
    (right-padded, as Hugging Face layers take them). Row sets are data: the encoder runs a layer
    on them (`LayerwiseTransformer.run_rows`) and the engine stores the result in `hidden`.

    # Attributes

    rows : `torch.LongTensor`
        `(num_rows,)`: each row's place in the batch (or in a stream of batches).
    pooled : `List[torch.Tensor]`
        Per layer run so far `(num_rows, hidden_size)`.
    head_logits : `List[torch.Tensor]`
        Per head passed whose logits are kept `(num_rows, num_labels)`.
    state : `Optional[torch.Tensor]`
        The exit policy's state `(num_rows, ...)`, or `None`.
    """

    rows: torch.Tensor
    hidden: torch.Tensor
    pooled: List[torch.Tensor]
    head_logits: List[torch.Tensor]
    state: Optional[torch.Tensor]

    def _init_row_data(self, rows: torch.Tensor) -> None:
        self.rows = rows
        self.pooled = []
        self.head_logits = []
        self.state = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def num_tokens(self) -> int:
        """How many tokens a layer computes for these rows (padding included, where padded)."""
        raise NotImplementedError

    def mean(self) -> torch.Tensor:
        """
        `(num_rows, hidden_size)`: the mean of each row's real tokens in the last layer's output.
        """
        raise NotImplementedError

    def first_tokens(self) -> torch.Tensor:
        """`(num_rows, hidden_size)`: each row's first token in the last layer's output."""
        raise NotImplementedError

    def _select_tokens(self: R, keep: torch.BoolTensor, kept: torch.LongTensor) -> R:
        """A row set of the rows `kept` `(num_kept,)` (`keep` as a mask), with their tokens only."""
        raise NotImplementedError

    @classmethod
    def _merge_tokens(cls: "type[R]", row_sets: Sequence[R]) -> R:
        """The tokens of several row sets of this layout as one, in the order given."""
        raise NotImplementedError

    def select(self: R, keep: torch.BoolTensor) -> R:
        """
        The rows where `keep` `(num_rows,)` is true, in the same order, with everything kept of
        them.
        """
        # Indices rather than boolean masks: index_select is several times faster on a CPU.
        kept = keep.nonzero().squeeze(1)  # (num_kept,)
        selected = self._select_tokens(keep, kept)
        selected.pooled = [layer.index_select(0, kept) for layer in self.pooled]
        selected.head_logits = [head.index_select(0, kept) for head in self.head_logits]
        selected.state = None if self.state is None else self.state.index_select(0, kept)
        return selected

    @classmethod
    def merge(cls: "type[R]", row_sets: Sequence[R]) -> R:
        """Several row sets that ran the same layers as one, their rows in the order given."""
        if len(row_sets) == 1:
            return row_sets[0]
        merged = cls._merge_tokens(row_sets)
        merged.pooled = [torch.cat(layer) for layer in zip(*(s.pooled for s in row_sets))]
        merged.head_logits = [torch.cat(head) for head in zip(*(s.head_logits for s in row_sets))]
        states = [row_set.state for row_set in row_sets]
        merged.state = None if states[0] is None else torch.cat(states)
        return merged
