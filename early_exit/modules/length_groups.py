"""
Sub-batches of similar length for the early-exit forward pass.

A batch of 32 sentences in file order is about half padding. The model therefore runs its rows in
groups of similar length (`length_sorted_groups`), and as rows exit it merges what is left of the
groups again (`regroup`): without that, each small group would shrink to a handful of rows whose
every layer costs a forward pass of its own, and the early-exit model would lose to the full model
much of what the split gained.
"""

import itertools
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

# What one more sub-batch costs, in padded tokens, when a batch is split by length: on a CPU a layer
# reads all its weights whatever the number of rows, and small matrices multiply less efficiently.
# Measured with all-MiniLM-L6-v2 on SST-2 and AG News (batches of 32, one thread): 64 was within 3%
# of the best value between 16 and 128, at threshold 1.0 and with early exit (see
# docs/performance.md).
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


@dataclass
class RowGroup:
    """
    Rows of a batch that go through the encoder's layers together, right-padded to their longest.

    What the heads need of every row (its pooled layers, earlier heads' logits) is kept by the model
    for all running rows at once, in the order of the groups' rows: `select_rows` and `regroup` keep
    that order, so the heads and the exit rule run once per layer, not once per group.

    # Attributes

    rows : `torch.LongTensor`
        `(group_size,)`: each row's index in the whole batch.
    hidden : `torch.Tensor`
        `(group_size, num_tokens, hidden_size)`: the last computed layer's output.
    mask : `torch.BoolTensor`
        `(group_size, num_tokens)`: the padding mask; `num_tokens` is the longest row's length.
    layer_mask : `torch.Tensor`, optional
        The encoder's attention mask, filled in by the model; valid while `layer_mask_for` is `mask`.
    """

    rows: torch.Tensor
    hidden: torch.Tensor
    mask: torch.BoolTensor
    layer_mask: Optional[torch.Tensor] = None
    layer_mask_for: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def select(self, keep: torch.BoolTensor) -> "RowGroup":
        """The rows where `keep` `(group_size,)` is true, with the padding only the others needed dropped."""
        mask = self.mask[keep]  # (kept, num_tokens)
        length = int(mask.sum(dim=1).max())
        return RowGroup(
            rows=self.rows[keep], hidden=self.hidden[keep][:, :length], mask=mask[:, :length]
        )


def select_rows(groups: List[RowGroup], keep: torch.BoolTensor) -> List[RowGroup]:
    """
    The rows of `groups` where `keep` is true, in the same order; groups left empty are dropped and
    groups that keep every row are returned as they are.

    # Parameters

    groups : `List[RowGroup]`
    keep : `torch.BoolTensor`
        `(total_rows,)`, one flag per row of the groups taken one after the other.
    """
    sizes = [len(group) for group in groups]
    kept_per_group = keep.split(sizes)
    counts = torch.stack([kept.sum() for kept in kept_per_group]).tolist()
    selected = []
    for group, kept, count, size in zip(groups, kept_per_group, counts, sizes):
        if count == size:
            selected.append(group)
        elif count:
            selected.append(group.select(kept))
    return selected


def _concatenate(pieces: List[RowGroup]) -> RowGroup:
    """Rows of several groups as one, padded (or trimmed of padding) to the longest row's length."""
    if len(pieces) == 1:
        return pieces[0]
    length = max(int(piece.mask.sum(dim=1).max()) for piece in pieces)

    def fit(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor[:, :length]
        missing = length - tensor.shape[1]
        if missing == 0:
            return tensor
        padding = tensor.new_zeros((tensor.shape[0], missing) + tuple(tensor.shape[2:]))
        return torch.cat([tensor, padding], dim=1)

    return RowGroup(
        rows=torch.cat([piece.rows for piece in pieces]),
        hidden=torch.cat([fit(piece.hidden) for piece in pieces]),  # (rows, length, hidden)
        mask=torch.cat([fit(piece.mask) for piece in pieces]),  # (rows, length)
    )


def regroup(
    groups: List[RowGroup], overhead_tokens: int = SUB_BATCH_OVERHEAD_TOKENS
) -> List[RowGroup]:
    """
    Re-splits the rows still running, as `length_sorted_groups` would split them now.

    `groups` must hold rows in ascending length across groups, as the groups made by
    `length_sorted_groups` do and keep doing when rows leave them. When rows have left, fewer and
    larger groups are usually cheaper: small neighbouring groups are merged (their rows padded to
    the new longest row). The rows keep their order across the groups. Groups the split would keep
    as they are are returned unchanged.
    """
    if len(groups) <= 1:
        return groups
    lengths = torch.cat([group.mask.sum(dim=1) for group in groups]).tolist()
    sizes = [len(group) for group in length_sorted_groups(lengths, overhead_tokens)]
    if sizes == [len(group) for group in groups]:
        return groups
    # Both splits are consecutive ranges of the same sorted rows: each new group takes the part of
    # every old group that overlaps its range.
    old_ends = list(itertools.accumulate(len(group) for group in groups))
    new_ends = list(itertools.accumulate(sizes))
    regrouped: List[RowGroup] = []
    for new_start, new_end in zip([0] + new_ends[:-1], new_ends):
        pieces = []
        for group, old_end in zip(groups, old_ends):
            old_start = old_end - len(group)
            low, high = max(new_start, old_start) - old_start, min(new_end, old_end) - old_start
            if low >= high:
                continue
            if (low, high) == (0, len(group)):
                pieces.append(group)
            else:
                keep = torch.zeros(len(group), dtype=torch.bool, device=group.rows.device)
                keep[low:high] = True
                pieces.append(group.select(keep))
        regrouped.append(_concatenate(pieces))
    return regrouped
