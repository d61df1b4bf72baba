"""
Rows of a batch packed token by token, without padding, for the early-exit forward pass.

Padding costs a transformer layer as much as real tokens do: a batch of 32 SST-2 sentences in file
order is half padding. Most of a layer's work is in its linear layers (the query, key and value
projections, the attention output and the feed-forward block), which treat every token on its
own: run on the real tokens alone, packed as one `(num_tokens, hidden_size)` matrix, they compute
nothing for padding and make one large matrix multiplication for all rows, however different their
lengths. Only the attention itself needs each row's tokens side by side: it runs on the rows padded
in groups of similar length (`pad`, `unpad`; the groups of `length_sorted_groups`), because on a
CPU attention over rows padded to the batch's longest costs as much as a fifth of a layer on
SST-2 sentences, and about half that in groups.

When rows exit, their tokens leave the matrix (`select`), and the attention groups are made anew
for the rows still running.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from overrides import overrides

from early_exit.modules.length_groups import length_sorted_groups
from early_exit.modules.row_set import RowSet


class PackedRows(RowSet):
    """
    The real tokens of some rows of a batch, row after row, each row's tokens in order: the row set
    of packed inference (see `RowSet` for what it carries of each row besides its tokens).

    # Parameters

    rows : `torch.LongTensor`
        `(num_rows,)`: each row's index in the whole batch.
    hidden : `torch.Tensor`
        `(num_tokens, hidden_size)`: the last computed layer's output for every real token.
    lengths : `torch.LongTensor`
        `(num_rows,)`: each row's number of real tokens (at least 1).
    row_of_token : `torch.LongTensor`, optional
        `(num_tokens,)`: the row (0 to `num_rows - 1`) each token belongs to, non-decreasing.
        Computed from `lengths` when first needed if not given (rows without padding that never
        lose a row need it at no point).
    position : `torch.LongTensor`, optional
        `(num_tokens,)`: each token's position among its row's real tokens; as `row_of_token`.
    length_list : `List[int]`, optional
        `lengths` as Python ints, where the caller has read them already.

    # Attributes

    attention_groups : `List[List[int]]`
        The rows (numbers 0 to `num_rows - 1`) of each group that the attention runs padded
        together, shortest first; with no padding at all, every row in one group in order.
    attention_masks : `List[Optional[torch.BoolTensor]]`
        Per group `(group_size, 1, 1, longest_in_group)`, true where a key is a real token, for
        `scaled_dot_product_attention`; `None` for a group without padding.
    """

    def __init__(
        self,
        rows: torch.Tensor,
        hidden: torch.Tensor,
        lengths: torch.Tensor,
        row_of_token: Optional[torch.Tensor] = None,
        position: Optional[torch.Tensor] = None,
        length_list: Optional[List[int]] = None,
    ) -> None:
        self._init_row_data(rows)
        self.hidden = hidden
        self.lengths = lengths
        self._row_of_token = row_of_token
        self._position = position
        if length_list is None:
            length_list = lengths.tolist()
        if min(length_list) < 1:
            raise ValueError("every row needs at least one token")
        self.longest = max(length_list)
        self._num_tokens = sum(length_list)
        # Without padding the padded layout is the packed one: `pad` and `unpad` are views.
        self.has_padding = min(length_list) != self.longest
        self._first_tokens: Optional[torch.Tensor] = None
        self._one_group: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
        device = lengths.device
        if not self.has_padding:
            self.attention_groups = [list(range(len(length_list)))]
            self.attention_masks: List[Optional[torch.Tensor]] = [None]
            self._group_shapes = [(len(length_list), self.longest)]
            self._scatter: Optional[torch.Tensor] = None
            return
        self.attention_groups, self.attention_masks, self._group_shapes = [], [], []
        # Each row's first place in the groups' padded layouts, laid one after the other.
        row_start = [0] * len(length_list)
        offset = 0
        for group in length_sorted_groups(length_list):
            longest = max(length_list[row] for row in group)
            for slot, row in enumerate(group):
                row_start[row] = offset + slot * longest
            offset += len(group) * longest
            group_lengths = lengths[group]  # (group_size,)
            mask = None
            if min(length_list[row] for row in group) != longest:
                steps = torch.arange(longest, device=device)
                mask = steps.unsqueeze(0) < group_lengths.unsqueeze(1)  # (group_size, longest)
                mask = mask.view(len(group), 1, 1, longest)
            self.attention_groups.append(group)
            self.attention_masks.append(mask)
            self._group_shapes.append((len(group), longest))
        self._padded_size = offset
        starts = torch.tensor(row_start, dtype=torch.long, device=device)
        # (num_tokens,): each token's place in the groups' padded layouts
        self._scatter = starts[self.row_of_token] + self.position

    @property
    def row_of_token(self) -> torch.Tensor:
        """`(num_tokens,)`: the row (0 to `num_rows - 1`) of each token, non-decreasing."""
        if self._row_of_token is None:
            row_ids = torch.arange(self.lengths.shape[0], device=self.lengths.device)
            self._row_of_token = torch.repeat_interleave(
                row_ids, self.lengths, output_size=self._num_tokens
            )  # (num_tokens,)
        return self._row_of_token

    @property
    def position(self) -> torch.Tensor:
        """`(num_tokens,)`: each token's position among its row's real tokens."""
        if self._position is None:
            row_starts = self.lengths.cumsum(dim=0) - self.lengths  # (num_rows,)
            steps = torch.arange(self._num_tokens, device=self.lengths.device)  # (num_tokens,)
            self._position = steps - row_starts[self.row_of_token]  # (num_tokens,)
        return self._position

    @classmethod
    def from_padded(
        cls, rows: torch.Tensor, hidden: torch.Tensor, mask: torch.BoolTensor
    ) -> "PackedRows":
        """
        Packs a padded batch.

        # Parameters

        rows : `torch.LongTensor`
            `(batch_size,)`: the rows' indices in the whole batch.
        hidden : `torch.Tensor`
            `(batch_size, num_tokens, hidden_size)`.
        mask : `torch.BoolTensor`
            `(batch_size, num_tokens)`: true for real tokens (every row has at least one).
        """
        return cls.from_padded_groups([(rows, hidden, mask)])

    @classmethod
    def from_padded_groups(
        cls, groups: Sequence[Tuple[torch.Tensor, torch.Tensor, torch.BoolTensor]]
    ) -> "PackedRows":
        """
        Packs several padded groups of rows, each `(rows, hidden, mask)` as `from_padded` takes
        them, one group after the other: the rows' order is the groups' (`rows` says where each
        row belongs in the batch).
        """
        return cls.from_tokens(
            torch.cat([rows for rows, _, _ in groups]),
            torch.cat([hidden[mask] for _, hidden, mask in groups]),
            torch.cat([mask.sum(dim=1) for _, _, mask in groups]),
        )

    @classmethod
    def from_tokens(
        cls,
        rows: torch.Tensor,
        hidden: torch.Tensor,
        lengths: torch.Tensor,
        length_list: Optional[List[int]] = None,
    ) -> "PackedRows":
        """
        Rows already packed: `hidden` `(num_tokens, hidden_size)` holds the real tokens of the rows
        `rows` `(num_rows,)`, row after row, `lengths` `(num_rows,)` of them each (`length_list`:
        the same as Python ints, if already read).
        """
        return cls(rows=rows, hidden=hidden, lengths=lengths, length_list=length_list)

    @property
    @overrides
    def num_tokens(self) -> int:
        return self._num_tokens

    @overrides
    def _select_tokens(self, keep: torch.BoolTensor, kept: torch.LongTensor) -> "PackedRows":
        kept_tokens = keep[self.row_of_token].nonzero().squeeze(1)  # (num_kept_tokens,)
        new_index = keep.long().cumsum(dim=0) - 1  # (num_rows,): a kept row's new number
        return PackedRows(
            rows=self.rows.index_select(0, kept),
            hidden=self.hidden.index_select(0, kept_tokens),
            row_of_token=new_index[self.row_of_token.index_select(0, kept_tokens)],
            position=self.position.index_select(0, kept_tokens),
            lengths=self.lengths.index_select(0, kept),
        )

    @classmethod
    @overrides
    def _merge_tokens(cls, row_sets: Sequence["PackedRows"]) -> "PackedRows":
        return cls.from_tokens(
            torch.cat([row_set.rows for row_set in row_sets]),
            torch.cat([row_set.hidden for row_set in row_sets]),
            torch.cat([row_set.lengths for row_set in row_sets]),
        )

    def pad(self, packed: torch.Tensor) -> List[torch.Tensor]:
        """
        `(num_tokens, features)` -> per attention group `(group_size, longest_in_group, features)`,
        zeros for padding.
        """
        features = packed.shape[-1]
        if self._scatter is None:
            return [packed.view(len(self), self.longest, features)]
        padded = packed.new_zeros((self._padded_size, features))
        padded.index_copy_(0, self._scatter, packed)
        parts, offset = [], 0
        for size, longest in self._group_shapes:
            parts.append(padded[offset : offset + size * longest].view(size, longest, features))
            offset += size * longest
        return parts

    def unpad(self, padded: List[torch.Tensor]) -> torch.Tensor:
        """
        Per attention group `(group_size, longest_in_group, features)` -> `(num_tokens, features)`.
        """
        features = padded[0].shape[-1]
        if self._scatter is None:
            return padded[0].reshape(self._num_tokens, features)
        flat = torch.cat([part.reshape(-1, features) for part in padded])
        return flat.index_select(0, self._scatter)

    def one_group(self) -> Tuple[torch.Tensor, torch.Tensor, torch.BoolTensor]:
        """
        Every row padded to the longest, as one attention group, for a runner that pads inside
        its own graph by gathering (a gather is far cheaper there than a scatter):

        - `slots` `(num_rows * longest,)`: the token each padded slot takes (for padding, token
          0: a padding key is masked and a padding query dropped, so any real token will do);
        - `places` `(num_tokens,)`: each token's padded slot;
        - `mask` `(num_rows, 1, 1, longest)`: true where a key is a real token.
        """
        if self._one_group is None:
            device = self.lengths.device
            if not self.has_padding:
                places = torch.arange(self._num_tokens, device=device)  # (num_tokens,)
                slots = places
                mask = torch.ones((len(self), 1, 1, self.longest), dtype=torch.bool, device=device)
            else:
                places = self.row_of_token * self.longest + self.position  # (num_tokens,)
                slots = torch.zeros(
                    (len(self) * self.longest,), dtype=torch.long, device=device
                )  # (num_rows * longest,)
                slots[places] = torch.arange(self._num_tokens, device=device)
                steps = torch.arange(self.longest, device=device)  # (longest,)
                mask = steps.unsqueeze(0) < self.lengths.unsqueeze(1)  # (num_rows, longest)
                mask = mask.view(len(self), 1, 1, self.longest)
            self._one_group = (slots, places, mask)
        return self._one_group

    @overrides
    def mean(self) -> torch.Tensor:
        """`(num_rows, hidden_size)`: the mean of each row's real tokens in `hidden`."""
        if not self.has_padding:
            return self.hidden.view(len(self), self.longest, -1).mean(dim=1)
        sums = self.hidden.new_zeros((len(self), self.hidden.shape[-1]))
        sums.index_add_(0, self.row_of_token, self.hidden)
        return sums / self.lengths.unsqueeze(1).to(sums.dtype)

    @overrides
    def first_tokens(self) -> torch.Tensor:
        """`(num_rows, hidden_size)`: each row's first token in `hidden` (`[CLS]` for BERT)."""
        if self._first_tokens is None:
            self._first_tokens = self.lengths.cumsum(dim=0) - self.lengths  # (num_rows,)
        return self.hidden.index_select(0, self._first_tokens)
