import math
from collections import deque
from typing import Deque, List, Optional, Sequence, Tuple


class ReachedScores:
    """
    What the `compute_budget` policy knows of its recent rows' exits at other thresholds: per
    batch, for each head but the last, the running maximum confidence score (in the controller's
    coordinate `u`, larger is surer) of every row that reached that head, up to and including it.

    A row exits at the first head whose running maximum reaches the threshold's `u`, so for any
    lower threshold than the one a row was decided with its exit is known exactly (it reached
    every head it would reach); for a higher one only a lower bound is known (the heads after its
    exit never ran). `compute_at` and `threshold_for` read the compute curve of the recent rows
    from these scores: exact going down, a lower bound going up.

    # Parameters

    span : `int`
        How many recent rows are kept (whole batches: the newest batches whose rows add up to at
        least `span`).
    """

    def __init__(self, span: int) -> None:
        self.span = span
        self._batches: Deque[Tuple[int, List[List[float]]]] = deque()  # (rows, per head scores)
        self._pending: List[List[float]] = []
        self._rows = 0

    def start_batch(self) -> None:
        """Forgets what was added since the last `finish_batch` (a batch starts)."""
        self._pending = []

    def add(self, head: int, scores: Sequence[float]) -> None:
        """The running maximum scores of the rows of the current batch that reached `head`."""
        while len(self._pending) <= head:
            self._pending.append([])
        self._pending[head].extend(scores)

    def finish_batch(self, num_rows: int) -> bool:
        """
        Keeps the current batch's scores if they describe its `num_rows` rows (every row reaches
        the first head; else they came from decisions outside the stream and are dropped).
        """
        pending, self._pending = self._pending, []
        if not pending or len(pending[0]) != num_rows:
            return False
        self._batches.append((num_rows, pending))
        self._rows += num_rows
        while self._rows - self._batches[0][0] >= self.span:
            self._rows -= self._batches.popleft()[0]
        return True

    @property
    def rows(self) -> int:
        return self._rows

    def _steps(self, head_compute: Sequence[float]) -> List[Tuple[float, float]]:
        """
        `(score, weight)` sorted by score: the mean compute of the kept rows at `u` is
        `head_compute[0]` plus the weights of the scores below `u` (a row whose running maximum at
        head `h` is below `u` goes on to head `h + 1`, which costs the difference).
        """
        steps = []
        for _, per_head in self._batches:
            for head, scores in enumerate(per_head):
                weight = (head_compute[head + 1] - head_compute[head]) / self._rows
                steps += [(score, weight) for score in scores]
        steps.sort()
        return steps

    def compute_at(self, u: float, head_compute: Sequence[float]) -> float:
        """The kept rows' mean compute at the threshold `u` (a lower bound above theirs)."""
        return head_compute[0] + sum(w for score, w in self._steps(head_compute) if score < u)

    def threshold_for(self, compute: float, head_compute: Sequence[float]) -> Optional[float]:
        """
        The `u` at which the kept rows' mean compute reaches `compute`, interpolated between the
        scores where it steps (0 where even the first head costs more); `None` with no rows.
        """
        if not self._rows:
            return None
        spent, below = head_compute[0], 0.0
        if spent > compute:
            return 0.0
        for score, weight in self._steps(head_compute):
            if spent + weight > compute:
                fraction = (compute - spent) / weight
                return below + fraction * (score - below) if score > below else score
            spent, below = spent + weight, max(score, below)
        return math.inf
