"""
Sub-batches of similar length: the split (`length_sorted_groups`) is the cheapest, and re-splitting
the rows still running (`regroup`) keeps every row's real tokens, pooled vectors and logits, in
ascending length, padded with zeros and masked.
"""

import itertools
import random

import pytest
import torch

from early_exit.modules.length_groups import RowGroup, length_sorted_groups, regroup, select_rows


def _cost(groups, lengths, overhead):
    return sum(overhead + len(group) * max(lengths[i] for i in group) for group in groups)


class TestLengthSortedGroups:
    def test_every_index_once_shortest_first(self):
        lengths = [5, 30, 5, 12, 40, 13, 7, 100, 6]
        groups = length_sorted_groups(lengths)
        flat = [index for group in groups for index in group]
        assert sorted(flat) == list(range(len(lengths)))
        assert [lengths[i] for i in flat] == sorted(lengths)

    def test_edge_cases(self):
        assert length_sorted_groups([]) == []
        assert length_sorted_groups([7]) == [[0]]
        assert length_sorted_groups([9, 9, 9]) == [[0, 1, 2]]  # equal lengths stay whole

    def test_overhead_decides_how_far_to_split(self):
        lengths = [5, 30, 5, 12, 40, 7]
        assert length_sorted_groups(lengths, overhead_tokens=10**6) == [[0, 2, 5, 3, 1, 4]]
        # Free forward passes: one per distinct length, equal lengths together.
        assert length_sorted_groups(lengths, overhead_tokens=0) == [[0, 2], [5], [3], [1], [4]]

    @pytest.mark.parametrize("seed", range(20))
    def test_cost_is_minimal(self, seed):
        rng = random.Random(seed)
        lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 9))]
        overhead = rng.choice([0, 16, 64, 256])
        groups = length_sorted_groups(lengths, overhead)
        order = sorted(range(len(lengths)), key=lambda index: lengths[index])
        best = min(
            _cost(
                [order[a:b] for a, b in zip((0,) + cuts, cuts + (len(order),))],
                lengths,
                overhead,
            )
            for size in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), size)
        )
        assert _cost(groups, lengths, overhead) == best


HIDDEN = 3


def _groups(lengths, seed=0):
    """Row groups as the model makes them: split by length, every real token a distinct value."""
    generator = torch.Generator().manual_seed(seed)
    groups = []
    for rows in length_sorted_groups(lengths, overhead_tokens=8):
        longest = max(lengths[row] for row in rows)
        mask = torch.tensor([[t < lengths[row] for t in range(longest)] for row in rows])
        hidden = torch.rand((len(rows), longest, HIDDEN), generator=generator)
        hidden = hidden.masked_fill(~mask.unsqueeze(-1), 7.0)  # padding: any value at all
        groups.append(RowGroup(torch.tensor(rows), hidden, mask))
    return groups


def _by_row(groups):
    """row -> its real tokens' hidden states."""
    rows = {}
    for group in groups:
        lengths = group.mask.sum(dim=1)
        for i, row in enumerate(group.rows.tolist()):
            rows[row] = group.hidden[i, : lengths[i]]
    return rows


class TestRegroup:
    LENGTHS = [3, 40, 4, 3, 12, 41, 5, 13, 6, 39, 4, 11]

    def test_select_drops_rows_and_the_padding_only_they_needed(self):
        group = _groups([3, 9, 5], seed=1)[0]
        assert group.hidden.shape[1] == 9
        kept = group.select(torch.tensor([True, True, False]))  # rows sorted: 3, 5, 9 tokens
        assert kept.rows.tolist() == [0, 2]
        assert kept.hidden.shape == (2, 5, HIDDEN) and kept.mask.shape == (2, 5)
        torch.testing.assert_close(kept.hidden, group.hidden[:2, :5])

    def test_select_rows_keeps_order_drops_empty_groups_and_keeps_untouched_ones(self):
        groups = _groups(self.LENGTHS)
        assert len(groups) >= 3
        all_rows = torch.cat([group.rows for group in groups])
        keep = torch.ones(len(all_rows), dtype=torch.bool)
        first, second = len(groups[0]), len(groups[0]) + len(groups[1])
        keep[:first] = False  # the whole first group leaves
        keep[second - 1] = False  # one row of the second group leaves
        selected = select_rows(groups, keep)
        assert len(selected) == len(groups) - 1
        assert torch.equal(torch.cat([group.rows for group in selected]), all_rows[keep])
        assert selected[1:] == groups[2:]  # the same objects: nothing copied
        assert len(selected[0]) == len(groups[1]) - 1
        expected = _by_row(groups)
        for row, hidden in _by_row(selected).items():
            torch.testing.assert_close(hidden, expected[row])
        assert select_rows(groups, torch.zeros(len(all_rows), dtype=torch.bool)) == []

    def test_rows_left_running_are_merged_without_losing_anything(self):
        groups = _groups(self.LENGTHS)
        assert len(groups) > 2
        expected = _by_row(groups)
        rng = random.Random(0)
        survivors = []
        for group in groups:  # most rows exit: the small groups left over should merge
            keep = torch.tensor([rng.random() < 0.3 for _ in range(len(group))])
            keep[0] = True
            survivors.append(group.select(keep))
        merged = regroup(survivors, overhead_tokens=64)  # sub-batches cost more now: merge
        assert len(merged) < len(survivors)
        order = torch.cat([group.rows for group in merged]).tolist()
        assert order == torch.cat([group.rows for group in survivors]).tolist()
        lengths = [self.LENGTHS[row] for row in order]
        assert lengths == sorted(lengths)
        for row, hidden in _by_row(merged).items():
            torch.testing.assert_close(hidden, expected[row])
        for group in merged:
            lengths = group.mask.sum(dim=1)
            assert group.mask.shape[1] == int(lengths.max())  # padded to its longest row only
            for i, length in enumerate(lengths.tolist()):
                assert bool(group.mask[i, :length].all()) and not bool(group.mask[i, length:].any())

    def test_groups_the_split_keeps_are_returned_as_they_are(self):
        groups = _groups(self.LENGTHS)
        assert regroup(groups, overhead_tokens=8) == groups
        assert regroup(groups[:1]) == groups[:1]

    def test_a_group_can_be_cut_between_two_new_ones(self):
        # One group of 4 short rows and one of 2 long rows; once the long rows' neighbours change,
        # the split may take rows from both: whatever it does, every row stays exactly once.
        groups = _groups([2, 2, 3, 3, 30, 31], seed=2)
        survivors = [
            groups[0],
            groups[-1].select(torch.tensor([True] + [False] * (len(groups[-1]) - 1))),
        ]
        for overhead in (0, 8, 64, 10**6):
            merged = regroup(survivors, overhead_tokens=overhead)
            rows = torch.cat([group.rows for group in merged]).tolist()
            assert rows == torch.cat([group.rows for group in survivors]).tolist()
            assert [len(group) for group in merged] == [
                len(group)
                for group in length_sorted_groups(
                    torch.cat([g.mask.sum(dim=1) for g in survivors]).tolist(), overhead
                )
            ]
