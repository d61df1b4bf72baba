"""
Packed rows: packing keeps every real token in row order, padding and unpadding invert each other,
selecting rows keeps exactly their tokens, and pooling equals the masked padded computation.
"""

import pytest
import torch

from early_exit.modules.packed_rows import PackedRows

HIDDEN = 3


def _padded(lengths, width=None):
    """A right-padded batch: hidden `(rows, width, HIDDEN)` with distinct values, and its mask."""
    width = width or max(lengths)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    hidden = torch.arange(len(lengths) * width * HIDDEN, dtype=torch.float).view(
        len(lengths), width, HIDDEN
    )
    return hidden, mask


def _pack(lengths, width=None):
    hidden, mask = _padded(lengths, width)
    rows = torch.arange(len(lengths)) + 10  # batch indices need not start at 0
    return PackedRows.from_padded(rows, hidden, mask), hidden, mask


def test_packing_keeps_the_real_tokens_in_order():
    packed, hidden, mask = _pack([2, 4, 1], width=6)  # extra padding columns are ignored
    assert packed.num_tokens == 7 and packed.longest == 4 and packed.has_padding
    torch.testing.assert_close(packed.hidden, hidden[mask])
    assert packed.row_of_token.tolist() == [0, 0, 1, 1, 1, 1, 2]
    assert packed.position.tolist() == [0, 1, 0, 1, 2, 3, 0]
    assert packed.rows.tolist() == [10, 11, 12]


def _rows_of_groups(packed):
    return [list(group) for group in packed.attention_groups]


def test_pad_puts_each_attention_group_side_by_side_with_zero_padding():
    lengths = [2, 40, 1, 3, 38]
    packed, hidden, mask = _pack(lengths)
    # Rows of similar length are padded together, shortest first (the split of
    # length_sorted_groups): here the short rows apart from the long ones.
    assert _rows_of_groups(packed) == [[2, 0, 3], [4, 1]]
    parts = packed.pad(packed.hidden)
    assert [tuple(part.shape) for part in parts] == [(3, 3, HIDDEN), (2, 40, HIDDEN)]
    for rows, part, group_mask in zip(packed.attention_groups, parts, packed.attention_masks):
        width = part.shape[1]
        real = mask[rows, :width]  # (group_size, width)
        torch.testing.assert_close(part[real], hidden[rows, :width][real])
        assert bool((part[~real] == 0).all())
        assert torch.equal(group_mask, real.view(len(rows), 1, 1, width))
    torch.testing.assert_close(packed.unpad(parts), packed.hidden)


def test_a_group_without_padding_needs_no_mask():
    packed, _, _ = _pack([40, 2, 2, 40, 40])
    masks = dict(zip(map(tuple, _rows_of_groups(packed)), packed.attention_masks))
    assert masks == {(1, 2): None, (0, 3, 4): None}


def test_equal_lengths_need_no_padding_and_no_mask():
    packed, hidden, _ = _pack([3, 3])
    assert not packed.has_padding and packed.attention_masks == [None]
    # Nothing to scatter: each token's row and position are computed only when asked for.
    assert packed._row_of_token is None and packed._position is None
    assert packed.row_of_token.tolist() == [0, 0, 0, 1, 1, 1]
    assert packed.position.tolist() == [0, 1, 2, 0, 1, 2]
    assert _rows_of_groups(packed) == [[0, 1]]
    (part,) = packed.pad(packed.hidden)
    torch.testing.assert_close(part, hidden)
    torch.testing.assert_close(packed.unpad([hidden]), packed.hidden)


@pytest.mark.parametrize("lengths", [[2, 4, 1, 3], [3, 3, 3]])
def test_mean_and_first_tokens_equal_the_masked_padded_computation(lengths):
    packed, hidden, mask = _pack(lengths)
    expected_mean = (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    torch.testing.assert_close(packed.mean(), expected_mean)
    torch.testing.assert_close(packed.first_tokens(), hidden[:, 0])


def test_select_keeps_exactly_the_kept_rows_tokens():
    packed, hidden, mask = _pack([2, 5, 1, 3])
    kept = packed.select(torch.tensor([True, False, True, True]))
    assert kept.rows.tolist() == [10, 12, 13]
    assert kept.lengths.tolist() == [2, 1, 3] and kept.longest == 3  # the longest row left
    torch.testing.assert_close(kept.hidden, hidden[[0, 2, 3]][mask[[0, 2, 3]]])
    assert kept.row_of_token.tolist() == [0, 0, 1, 2, 2, 2]
    assert sorted(row for group in _rows_of_groups(kept) for row in group) == [0, 1, 2]
    torch.testing.assert_close(kept.unpad(kept.pad(kept.hidden)), kept.hidden)
    again = kept.select(torch.tensor([False, False, True]))
    assert again.rows.tolist() == [13] and not again.has_padding
    assert again.position.tolist() == [0, 1, 2] and again.row_of_token.tolist() == [0, 0, 0]
    torch.testing.assert_close(again.mean(), hidden[3, :3].mean(dim=0, keepdim=True))


def test_a_row_without_tokens_is_refused():
    hidden, mask = _padded([2, 0])
    with pytest.raises(ValueError, match="at least one token"):
        PackedRows.from_padded(torch.arange(2), hidden, mask)


def test_groups_pack_one_after_the_other_as_one_padded_batch_would():
    lengths = [2, 5, 1, 3]
    whole, hidden, mask = _pack(lengths)
    groups = [[2, 0], [3, 1]]  # e.g. the split by length
    parts = [
        (whole.rows[group], hidden[group][:, : max(lengths[i] for i in group)], mask[group])
        for group in groups
    ]
    parts = [(rows, part, group_mask[:, : part.shape[1]]) for rows, part, group_mask in parts]
    packed = PackedRows.from_padded_groups(parts)
    order = [row for group in groups for row in group]
    assert packed.rows.tolist() == [10 + row for row in order]
    assert packed.lengths.tolist() == [lengths[row] for row in order]
    torch.testing.assert_close(packed.hidden, hidden[order][mask[order]])
    assert packed.row_of_token.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
    assert packed.position.tolist() == [0, 0, 1, 0, 1, 2, 0, 1, 2, 3, 4]
    torch.testing.assert_close(packed.mean(), whole.mean()[order])


def test_rows_of_equal_length_select_by_their_tokens():
    packed = PackedRows.from_tokens(
        torch.tensor([7, 8, 9]), torch.arange(12.0).view(6, 2), torch.tensor([2, 2, 2])
    )
    kept = packed.select(torch.tensor([True, False, True]))
    assert kept.rows.tolist() == [7, 9] and kept.lengths.tolist() == [2, 2]
    assert kept.hidden.tolist() == [[0.0, 1.0], [2.0, 3.0], [8.0, 9.0], [10.0, 11.0]]
    assert kept.row_of_token.tolist() == [0, 0, 1, 1] and kept.position.tolist() == [0, 1, 0, 1]


def test_lengths_read_by_the_caller_give_the_same_rows():
    hidden, mask = _padded([2, 4, 1])
    rows, lengths = torch.arange(3), mask.sum(dim=1)
    read = PackedRows.from_tokens(rows, hidden[mask], lengths, lengths.tolist())
    computed = PackedRows.from_tokens(rows, hidden[mask], lengths)
    assert (read.num_tokens, read.longest, read.has_padding) == (7, 4, True)
    assert read.attention_groups == computed.attention_groups
    torch.testing.assert_close(read.pad(read.hidden), computed.pad(computed.hidden))
    with pytest.raises(ValueError, match="at least one token"):
        PackedRows.from_tokens(rows, hidden[mask], lengths, [2, 0, 1])
