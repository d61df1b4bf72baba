"""
The exit rule of the paper, in one place: an instance exits at the first head whose temperature-scaled
maximum probability is at least the confidence threshold; the last head always answers; a threshold of
1.0 means no early exit at all (even where a probability rounds to 1.0 in float32). The model applies
it batch-wise during inference, and the threshold sweep applies it to cached probabilities, so both
take exactly the same decisions.
"""

from functools import lru_cache
from typing import Union

import torch


def scaled_probabilities(
    logits: torch.Tensor, temperatures: Union[torch.Tensor, float]
) -> torch.Tensor:
    """
    Temperature-scaled probabilities, the ones exit decisions are taken on.

    # Parameters

    logits : `torch.Tensor`
        Raw logits: `(batch_size, num_heads, num_labels)` for every head, or `(batch_size,
        num_labels)` for one head.
    temperatures : `Union[torch.Tensor, float]`
        `(num_heads,)` for every head, or a 0-dimensional tensor or a float for one head (the
        same probabilities: a float is a scalar to the division as a 0-dimensional tensor is).

    # Returns

    `torch.Tensor` of the shape of `logits`.
    """
    if isinstance(temperatures, torch.Tensor) and temperatures.dim() > 0:
        # one per head: (num_heads, 1) against (batch_size, num_heads, num_labels)
        temperatures = temperatures.unsqueeze(-1)
    return torch.softmax(logits / temperatures, dim=-1)


def exits_at_head(probs: torch.Tensor, threshold: float, is_last_head: bool) -> torch.BoolTensor:
    """
    Which instances exit at one head.

    # Parameters

    probs : `torch.Tensor`
        Temperature-scaled probabilities of that head, shape `(batch_size, num_labels)`.
    threshold : `float`
        The confidence threshold, in [0, 1].
    is_last_head : `bool`

    # Returns

    `torch.BoolTensor` of shape `(batch_size,)`.
    """
    if is_last_head:
        return torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
    if threshold >= 1.0:
        return torch.zeros(probs.shape[0], dtype=torch.bool, device=probs.device)
    return probs.max(dim=-1).values >= threshold


def one_row_exits(probs: torch.Tensor, threshold: float) -> bool:
    """
    `exits_at_head` for a batch of one row that is not at the last head, as a Python `bool`: the
    same decision with one operator and one sync instead of four (at batch size 1 the operators
    cost more than the rule's arithmetic). The comparison is exactly the tensor rule's: that one
    compares in the probabilities' dtype, the threshold rounded to it; here both values are those
    of that dtype, compared exactly as Python floats.

    # Parameters

    probs : `torch.Tensor`
        Temperature-scaled probabilities of that head, shape `(1, num_labels)`.
    threshold : `float`
        The confidence threshold, in [0, 1].
    """
    if threshold >= 1.0:
        return False
    return float(probs.max()) >= _rounded(threshold, probs.dtype)


@lru_cache(maxsize=64)
def _rounded(value: float, dtype: torch.dtype) -> float:
    """`value` rounded to `dtype`, as `probs >= value` rounds it."""
    return float(torch.tensor(value, dtype=torch.double).to(dtype))


def first_exit_head(head_probs: torch.Tensor, threshold: float) -> torch.LongTensor:
    """
    The head each instance exits at, from every head's probabilities.

    # Parameters

    head_probs : `torch.Tensor`
        Shape `(batch_size, num_heads, num_labels)`, temperature-scaled.
    threshold : `float`

    # Returns

    `torch.LongTensor` of shape `(batch_size,)`: indices into the heads.
    """
    num_heads = head_probs.shape[1]
    exits = torch.stack(
        [exits_at_head(head_probs[:, k], threshold, k == num_heads - 1) for k in range(num_heads)],
        dim=1,
    )  # (batch_size, num_heads)
    return exits.long().argmax(dim=1)  # argmax returns the first maximal index
