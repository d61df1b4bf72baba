"""
What the compute-budget section of docs/results.md measures (`python -m scripts.results.budget`):
the policies on every head's outputs as arrays, through `stream_exit_heads`, the policy's own code;
the fixed threshold the dev sweep picks; the hindsight thresholds; a constructed difficulty step.
"""

from typing import Dict, List, Optional, Sequence

import torch

from early_exit.modules.exit_policies import (
    ComputeBudgetPolicy,
    ComputeWindow,
    MaxProbabilityPolicy,
    scaled_probabilities,
    stream_exit_heads,
)

BUDGETS = (0.3, 0.4, 0.5)
BATCH_SIZE = 32
# Every threshold the hindsight columns choose among: max_probability's sweep grid.
GRID = [policy.threshold for policy in MaxProbabilityPolicy(1.0).sweep_grid(2)]


class Stream:
    """
    One ordered stream: every head's probabilities `(n, heads, labels)`, whether each head is
    right `(n, heads)`, and each head's relative compute; the exits of every grid threshold,
    computed once.
    """

    def __init__(self, probs: torch.Tensor, labels: torch.Tensor, head_compute: List[float]):
        self.probs, self.head_compute = probs, head_compute
        self.correct = probs.argmax(dim=-1) == labels.unsqueeze(1)  # (n, heads)
        compute = torch.tensor(head_compute, dtype=torch.double)
        grid_heads = torch.stack([MaxProbabilityPolicy(t).exit_heads(probs) for t in GRID])
        self.grid_compute = compute[grid_heads]  # (thresholds, n)
        self.grid_correct = self.correct.gather(1, grid_heads.T).T.double()  # (thresholds, n)

    def __len__(self) -> int:
        return self.probs.shape[0]

    def outcome(self, heads: torch.Tensor, window: int) -> Dict:
        """Mean compute, the worst window after the first, accuracy and the compute per instance."""
        computes = [self.head_compute[head] for head in heads.tolist()]
        tracker = ComputeWindow(window)
        tracker.add(computes)
        correct = self.correct[torch.arange(len(self)), heads]
        return {
            "mean": tracker.overall,
            "worst": tracker.worst,
            "accuracy": float(correct.double().mean()),
            "computes": computes,
        }

    def fixed(self, threshold: float, window: int) -> Dict:
        return self.outcome(MaxProbabilityPolicy(threshold).exit_heads(self.probs), window)

    def adaptive(self, policy: ComputeBudgetPolicy, batch_size: int) -> Dict:
        heads, thresholds = stream_exit_heads(policy, self.probs, self.head_compute, batch_size)
        result = self.outcome(heads, policy.window)
        result.update(low=min(thresholds), high=max(thresholds), thresholds=thresholds)
        return result

    def hindsight(self, compute: float) -> float:
        """The accuracy of the best fixed threshold whose mean compute here is within `compute`."""
        fits = self.grid_compute.mean(dim=1) <= compute + 1e-9
        return float(self.grid_correct.mean(dim=1)[fits].max())

    def per_window_hindsight(self, budget: float, window: int) -> float:
        """
        The accuracy of choosing, in each block of `window` instances (the last may be shorter),
        the best fixed threshold whose compute there is within `budget`.
        """
        correct = 0.0
        for start in range(0, len(self), window):
            block = slice(start, start + window)
            fits = self.grid_compute[:, block].mean(dim=1) <= budget + 1e-9
            correct += float(self.grid_correct[:, block].sum(dim=1)[fits].max())
        return correct / len(self)


def dev_thresholds(data: Dict, budgets: Sequence[float]) -> Dict[float, Optional[float]]:
    """The threshold `allennlp sweep-thresholds --compute-budget B` recommends on dev, per budget."""
    from early_exit.sweep import recommend_threshold, sweep_policies

    dev = data["dev"]
    policies = [MaxProbabilityPolicy(threshold) for threshold in GRID]
    rows = sweep_policies(
        dev["logits"],
        dev["labels"],
        policies,
        data["exit_layers"],
        data["full_depth"],
        data["temperatures"],
    )
    full = next(row for row in rows if row.threshold == 1.0).accuracy
    return {b: recommend_threshold(rows, full, compute_budget=b).threshold for b in budgets}


def stream_of(data: Dict, order: List[int]) -> Stream:
    split = data["eval"]
    probs = scaled_probabilities(split["logits"][order], torch.tensor(data["temperatures"]))
    return Stream(probs, split["labels"][order], data["head_compute"])


def measure_dataset(data: Dict, orders: Dict[str, List[int]], window: int) -> List[Dict]:
    """One row per stream and budget: the fixed threshold, the policy and the hindsight columns."""
    starts = dev_thresholds(data, BUDGETS)
    rows = []
    for name, order in orders.items():
        stream = stream_of(data, order)
        for budget in BUDGETS:
            start = starts[budget]
            policy = ComputeBudgetPolicy(budget, window=window, start=start)
            adaptive = stream.adaptive(policy, BATCH_SIZE)
            one = stream.adaptive(ComputeBudgetPolicy(budget, window=window, start=start), 1)
            rows.append(
                {
                    "stream": name,
                    "budget": budget,
                    "start": start,
                    "fixed": stream.fixed(start, window),
                    "policy": adaptive,
                    "batch_1": one,
                    "hindsight": stream.hindsight(adaptive["mean"]),
                    "per_window": stream.per_window_hindsight(budget, window),
                }
            )
    return rows


def difficulty_step(count: int = 4000, num_heads: int = 6, seed: int = 0) -> torch.Tensor:
    """
    Constructed head probabilities `(count, num_heads, 2)` whose difficulty steps up halfway: a
    row's confidence grows with depth, and the second half's rows start less sure. A fixed
    threshold that spends a budget on the first half overspends on the second.
    """
    generator = torch.Generator().manual_seed(seed)
    difficulty = torch.rand(count, 1, generator=generator)
    difficulty[count // 2 :] = 0.5 + 0.5 * difficulty[count // 2 :]
    depth = torch.arange(1, num_heads + 1, dtype=torch.float) / num_heads  # (num_heads,)
    noise = 0.3 * torch.randn(count, num_heads, generator=generator)
    margin = 10.0 * (depth - difficulty) + 6.0 + noise  # (count, num_heads)
    confidence = torch.sigmoid(margin).clamp(0.5, 1 - 1e-6)
    return torch.stack([confidence, 1 - confidence], dim=-1)
