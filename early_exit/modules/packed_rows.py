"""
Rows of a batch packed token by token, without padding, for the early-exit forward pass.

Padding costs a transformer layer as much as real tokens do: a batch of 32 SST-2 sentences in file
order is half padding. Most of a layer's work is in its linear layers (the query, key and value
projections, the attention output and the feed-forward block), which treat every token on its
own: run on the real tokens alone, packed as one `(num_tokens, hidden_size)` matrix, they compute
nothing for padding and make one large matrix multiplication for all rows, however different their
lengths. Only the attention itself needs each row's tokens side by side; it runs on the rows
padded to the longest one (`pad`, `unpad`), which is a small part of the work on short texts.

When rows exit, their tokens leave the matrix (`select`), and the padding of the attention is that
of the longest row still running.
"""

from typing import Optional

import torch


class PackedRows:
    """
    The real tokens of some rows of a batch, row after row, each row's tokens in order.

    # Parameters

    rows : `torch.LongTensor`
        `(num_rows,)`: each row's index in the whole batch.
    hidden : `torch.Tensor`
        `(num_tokens, hidden_size)`: the last computed layer's output for every real token.
    row_of_token : `torch.LongTensor`
        `(num_tokens,)`: the row (0 to `num_rows - 1`) each token belongs to, non-decreasing.
    position : `torch.LongTensor`
        `(num_tokens,)`: each token's position among its row's real tokens.
    lengths : `torch.LongTensor`
        `(num_rows,)`: each row's number of real tokens (at least 1).
    """

    def __init__(
        self,
        rows: torch.Tensor,
        hidden: torch.Tensor,
        row_of_token: torch.Tensor,
        position: torch.Tensor,
        lengths: torch.Tensor,
    ) -> None:
        self.rows = rows
        self.hidden = hidden
        self.row_of_token = row_of_token
        self.position = position
        self.lengths = lengths
        length_list = lengths.tolist()
        self.longest = max(length_list)
        self.num_tokens = sum(length_list)
        # Without padding the padded layout is the packed one: `pad` and `unpad` are views.
        self.has_padding = min(length_list) != self.longest
        self._scatter: Optional[torch.Tensor] = None
        self._attention_mask: Optional[torch.Tensor] = None
        self._first_tokens: Optional[torch.Tensor] = None

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
        lengths = mask.sum(dim=1)  # (batch_size,)
        if not bool((lengths > 0).all()):
            raise ValueError("every row needs at least one token")
        row_ids = torch.arange(mask.shape[0], device=mask.device)
        row_of_token = row_ids.unsqueeze(1).expand_as(mask)[mask]  # (num_tokens,)
        position = (mask.long().cumsum(dim=1) - 1)[mask]  # (num_tokens,)
        return cls(rows, hidden[mask], row_of_token, position, lengths)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def select(self, keep: torch.BoolTensor) -> "PackedRows":
        """The rows where `keep` `(num_rows,)` is true, in the same order, with only their tokens."""
        token_keep = keep[self.row_of_token]  # (num_tokens,)
        new_index = keep.long().cumsum(dim=0) - 1  # (num_rows,): a kept row's new number
        return PackedRows(
            rows=self.rows[keep],
            hidden=self.hidden[token_keep],
            row_of_token=new_index[self.row_of_token[token_keep]],
            position=self.position[token_keep],
            lengths=self.lengths[keep],
        )

    @property
    def scatter(self) -> torch.Tensor:
        """`(num_tokens,)`: each token's place in the `(num_rows * longest)` padded layout."""
        if self._scatter is None:
            self._scatter = self.row_of_token * self.longest + self.position
        return self._scatter

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """`(num_tokens, features)` -> `(num_rows, longest, features)`, zeros for padding."""
        features = packed.shape[-1]
        if not self.has_padding:
            return packed.view(len(self), self.longest, features)
        padded = packed.new_zeros((len(self) * self.longest, features))
        padded.index_copy_(0, self.scatter, packed)
        return padded.view(len(self), self.longest, features)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """`(num_rows, longest, features)` -> `(num_tokens, features)`, the real tokens only."""
        flat = padded.reshape(len(self) * self.longest, padded.shape[-1])
        if not self.has_padding:
            return flat
        return flat.index_select(0, self.scatter)

    @property
    def attention_mask(self) -> Optional[torch.BoolTensor]:
        """
        `(num_rows, 1, 1, longest)`, true where a key is a real token, for
        `scaled_dot_product_attention` on the padded layout; `None` without padding.
        """
        if self.has_padding and self._attention_mask is None:
            steps = torch.arange(self.longest, device=self.lengths.device)
            mask = steps.unsqueeze(0) < self.lengths.unsqueeze(1)  # (num_rows, longest)
            self._attention_mask = mask.view(len(self), 1, 1, self.longest)
        return self._attention_mask

    def mean(self) -> torch.Tensor:
        """`(num_rows, hidden_size)`: the mean of each row's real tokens in `hidden`."""
        if not self.has_padding:
            return self.hidden.view(len(self), self.longest, -1).mean(dim=1)
        sums = self.hidden.new_zeros((len(self), self.hidden.shape[-1]))
        sums.index_add_(0, self.row_of_token, self.hidden)
        return sums / self.lengths.unsqueeze(1).to(sums.dtype)

    def first_tokens(self) -> torch.Tensor:
        """`(num_rows, hidden_size)`: each row's first token in `hidden` (`[CLS]` for BERT)."""
        if self._first_tokens is None:
            self._first_tokens = self.lengths.cumsum(dim=0) - self.lengths  # (num_rows,)
        return self.hidden.index_select(0, self._first_tokens)
