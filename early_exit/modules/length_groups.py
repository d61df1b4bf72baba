"""
Groups of rows of similar length: packed rows run the attention of each group padded to the
group's longest row only (`PackedRows`), since a batch of 32 sentences in file order is about half
padding.
"""

from typing import List, Sequence

# What one more group costs, in padded tokens: each group is one more attention call, and small
# matrices multiply less efficiently (the value was chosen by measurement: docs/performance.md).
SUB_BATCH_OVERHEAD_TOKENS = 64


def length_sorted_groups(
    lengths: Sequence[int], overhead_tokens: int = SUB_BATCH_OVERHEAD_TOKENS
) -> List[List[int]]:
    """
    Splits a batch into sub-batches of similar length, so that short instances are not padded to
    the longest one.

    The instances are sorted by length (stably) and cut into consecutive groups that minimise the
    total padded size plus `overhead_tokens` per group, `sum(overhead_tokens + size * longest)`.
    Instances of equal length are never separated. A batch of equal lengths stays whole.

    # Parameters

    lengths : `Sequence[int]`
        The number of tokens of each instance.
    overhead_tokens : `int`, optional (default = `SUB_BATCH_OVERHEAD_TOKENS`)
        The cost of one more sub-batch, in padded tokens.

    # Returns

    `List[List[int]]`: indices into `lengths`, shortest instances first; every index exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    # Runs of equal length: splitting one never lowers the cost.
    run_ends = [
        end
        for end in range(1, len(order) + 1)
        if end == len(order) or lengths[order[end]] != lengths[order[end - 1]]
    ]
    starts = [0] + run_ends[:-1]
    # best[j]: the cheapest cost of the first j runs; cut[j]: where the last group starts.
    best = [0.0] + [float("inf")] * len(run_ends)
    cut = [0] * (len(run_ends) + 1)
    for j, end in enumerate(run_ends, start=1):
        longest = lengths[order[end - 1]]
        for i in range(j):
            cost = best[i] + overhead_tokens + (end - starts[i]) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups = []
    j = len(run_ends)
    while j > 0:
        i = cut[j]
        groups.append(order[starts[i] : run_ends[j - 1]])
        j = i
    return groups[::-1]
