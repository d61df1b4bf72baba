"""Groups of similar length (the attention groups of packed rows): the split is the cheapest."""

import itertools
import random

import pytest

from early_exit.modules.length_groups import length_sorted_groups


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
