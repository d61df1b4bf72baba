from typing import Optional, Sequence

import torch
from allennlp.modules.seq2vec_encoders import BagOfEmbeddingsEncoder
from overrides import overrides

from early_exit.modules.row_set import RowSet

# allennlp's masked mean; it has no parameters, so one serves every row set.
_MEAN = BagOfEmbeddingsEncoder(embedding_dim=1, averaged=True)


class PaddedRows(RowSet):
    """
    Rows right-padded to their longest, as Hugging Face layers take them (training, `packed` off,
    encoders whose layers cannot be packed). When rows leave, the padding only they needed goes.

    # Parameters

    rows : `torch.LongTensor`
        `(num_rows,)`: each row's place in the batch.
    hidden : `torch.Tensor`
        `(num_rows, num_tokens, hidden_size)`: the last computed layer's output.
    mask : `torch.BoolTensor`
        `(num_rows, num_tokens)`: true for real tokens.

    # Attributes

    layer_mask : `Optional[torch.Tensor]`
        The attention mask in the encoder's layers' form, once `layer_mask_known` (set by the
        encoder when it first runs these rows; `None` is a valid mask: no padding).
    """

    def __init__(self, rows: torch.Tensor, hidden: torch.Tensor, mask: torch.BoolTensor) -> None:
        self._init_row_data(rows)
        self.hidden = hidden
        self.mask = mask
        self.layer_mask: Optional[torch.Tensor] = None
        self.layer_mask_known = False

    @property
    @overrides
    def num_tokens(self) -> int:
        return int(self.mask.numel())

    @overrides
    def mean(self) -> torch.Tensor:
        return _MEAN(self.hidden, self.mask)  # (num_rows, hidden_size)

    @overrides
    def first_tokens(self) -> torch.Tensor:
        return self.hidden[:, 0]  # (num_rows, hidden_size)

    @overrides
    def _select_tokens(self, keep: torch.BoolTensor, kept: torch.LongTensor) -> "PaddedRows":
        mask = self.mask.index_select(0, kept)  # (num_kept, num_tokens)
        length = int(mask.sum(dim=1).max())
        hidden = self.hidden.index_select(0, kept)[:, :length]
        return PaddedRows(self.rows.index_select(0, kept), hidden, mask[:, :length])

    @classmethod
    @overrides
    def _merge_tokens(cls, row_sets: Sequence["PaddedRows"]) -> "PaddedRows":
        length = max(row_set.mask.shape[1] for row_set in row_sets)

        def padded(
            tensor: torch.Tensor,
        ) -> torch.Tensor:  # (rows, tokens, ...) -> (rows, length, ...)
            missing = length - tensor.shape[1]
            if missing == 0:
                return tensor
            padding = tensor.new_zeros((tensor.shape[0], missing) + tuple(tensor.shape[2:]))
            return torch.cat([tensor, padding], dim=1)

        return PaddedRows(
            torch.cat([row_set.rows for row_set in row_sets]),
            torch.cat([padded(row_set.hidden) for row_set in row_sets]),
            torch.cat([padded(row_set.mask) for row_set in row_sets]),
        )
