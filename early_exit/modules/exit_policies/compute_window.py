from collections import deque
from typing import Deque, Iterable, Optional


class ComputeWindow:
    """
    The running mean of the relative compute over the last `window` instances of a stream, and
    the largest such mean seen: what the `compute_budget` policy holds, and what its metrics and
    docs/results.md report for it and for a fixed threshold alike.

    The first window is the warm-up (the controller starts from a guess): `worst` is the largest
    mean over the full windows that start after it (every window from instance `window` on), or
    `None` while there is none yet.

    # Parameters

    window : `int`
        How many recent instances the mean is taken over.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._recent: Deque[float] = deque()
        self._sum = 0.0  # of `_recent`, kept exactly by re-summing now and then
        self.seen = 0
        self.total = 0.0
        self.worst: Optional[float] = None

    def add(self, computes: Iterable[float]) -> None:
        """Adds the compute of the next instances, in stream order."""
        recent, window = self._recent, self.window
        for compute in computes:
            recent.append(compute)
            self._sum += compute
            if len(recent) > window:
                self._sum -= recent.popleft()
            self.seen += 1
            self.total += compute
            if self.seen % 4096 == 0:
                self._sum = sum(recent)  # no drift of the running sum over a long stream
            if self.seen >= 2 * window:  # a full window that starts after the first
                mean = self._sum / window
                self.worst = mean if self.worst is None else max(self.worst, mean)

    @property
    def mean(self) -> float:
        """The running mean over the last `window` instances (fewer at the start; 0 before any)."""
        return self._sum / len(self._recent) if self._recent else 0.0

    @property
    def standard_error(self) -> float:
        """
        The sampling standard error of `mean`: the recent computes' standard deviation over the
        square root of their count (0 before two).
        """
        count = len(self._recent)
        if count < 2:
            return 0.0
        mean = self._sum / count
        variance = sum((compute - mean) ** 2 for compute in self._recent) / (count - 1)
        return (variance / count) ** 0.5

    @property
    def overall(self) -> float:
        """The mean compute of every instance seen (0 before any)."""
        return self.total / self.seen if self.seen else 0.0
