from typing import Callable, Generic, Optional, Sequence, Tuple, TypeVar

import torch

T = TypeVar("T")


class VersionedCache(Generic[T]):
    """
    A value computed from some tensors, computed again only when one of them has changed: written
    in place (its `_version` moves: training steps, `load_state_dict`, `copy_`) or replaced by
    another tensor (its storage moves: `.to(...)`). The one staleness rule of every cache of this
    package (reordered linear weights, a head's mixing weights, temperatures as Python floats).

    Inference tensors (made under `torch.inference_mode`, e.g. a model copied there) have no
    version counter: for them only a replacement is seen, not a change in place.

    The cached value is never copied or pickled with its owner: a deep copy or an unpickled copy
    starts empty (values such as oneDNN's reordered weights are opaque and belong to one tensor).
    """

    def __init__(self) -> None:
        self._key: Optional[Tuple[Tuple[int, int], ...]] = None
        self._value: Optional[T] = None

    def get(self, tensors: Sequence[torch.Tensor], compute: Callable[[], T]) -> T:
        """
        The cached value if no tensor of `tensors` changed since it was computed, else `compute()`.
        """
        key = tuple((tensor.data_ptr(), _version(tensor)) for tensor in tensors)
        if key != self._key:
            self._value = compute()
            self._key = key
        return self._value  # type: ignore[return-value]

    def __deepcopy__(self, memo: dict) -> "VersionedCache[T]":
        return VersionedCache()

    def __getstate__(self) -> dict:
        return {"_key": None, "_value": None}


def _version(tensor: torch.Tensor) -> int:
    # Not `tensor.is_inference()`: on a Parameter that dispatches through `__torch_function__`,
    # which costs tens of microseconds, more than the rest of a cache lookup.
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor: "Inference tensors do not track version counter"
        return 0
