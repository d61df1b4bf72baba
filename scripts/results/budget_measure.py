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
        # Rows of another dataset's text carry the label -1: wrong for every threshold alike, and
        # left out of the accuracies, which are taken on the labelled rows.
        self.num_labelled = max(int((labels >= 0).sum()), 1)
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
            "accuracy": float(correct.double().sum()) / self.num_labelled,
            "computes": computes,
        }

    def fixed(self, threshold: float, window: int) -> Dict:
        return self.outcome(MaxProbabilityPolicy(threshold).exit_heads(self.probs), window)

    def adaptive(self, policy: ComputeBudgetPolicy, batch_size: int) -> Dict:
        heads, thresholds = stream_exit_heads(policy, self.probs, self.head_compute, batch_size)
        result = self.outcome(heads, policy.window)
        result.update(low=min(thresholds), high=max(thresholds), thresholds=thresholds)
        return result

    def hindsight(self, compute: float, window: int) -> Dict:
        """
        The best fixed threshold whose mean compute here is within `compute`: its accuracy, and
        its worst window (what the sampling noise of a window's mean costs a fixed rule).
        """
        fits = (self.grid_compute.mean(dim=1) <= compute + 1e-9).nonzero().squeeze(1)
        best = int(fits[self.grid_correct.sum(dim=1)[fits].argmax()])
        return self.fixed(GRID[best], window)

    def spending(self, budget: float, window: int) -> Dict:
        """
        The fixed threshold of the grid that spends the most within `budget` here (known only in
        hindsight): its windows stray from its mean by the sampling of the instances alone.
        """
        means = self.grid_compute.mean(dim=1)
        fits = (means <= budget + 1e-9).nonzero().squeeze(1)
        return self.fixed(GRID[int(fits[means[fits].argmax()])], window)

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
        return correct / self.num_labelled


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


def dev_curves(data: Dict) -> Dict[str, List[List[float]]]:
    """The dev compute curves calibration stores in an archive (where `compute_budget` starts)."""
    from early_exit.calibration.compute_curves import compute_curves

    temperatures = torch.tensor(data["temperatures"])
    return compute_curves(
        scaled_probabilities(data["dev"]["logits"], temperatures), data["head_compute"]
    )


def budget_policy(
    budget: float, window: int, curves: Optional[Dict], **gains
) -> ComputeBudgetPolicy:
    """The policy as an archive with these dev curves runs it (no `start`)."""
    policy = ComputeBudgetPolicy(budget, window=window, **gains)
    if curves is not None:  # else a cold start (constructed streams have no dev split)
        policy.use_compute_curves(curves)
    return policy


def stream_of(data: Dict, order: List[int], foreign: Optional[torch.Tensor] = None) -> Stream:
    """The evaluation split in `order`, then `foreign` logits (another dataset's text), if any."""
    split = data["eval"]
    logits, labels = split["logits"][order], split["labels"][order]
    if foreign is not None:
        logits = torch.cat([logits, foreign])
        labels = torch.cat([labels, torch.full((len(foreign),), -1, dtype=labels.dtype)])
    probs = scaled_probabilities(logits, torch.tensor(data["temperatures"]))
    return Stream(probs, labels, data["head_compute"])


def measure_dataset(data: Dict, orders: Dict[str, Stream], window: int) -> List[Dict]:
    """One row per stream and budget: the fixed threshold, the policy and the hindsight columns."""
    starts, curves = dev_thresholds(data, BUDGETS), dev_curves(data)
    rows = []
    for name, stream in orders.items():
        for budget in BUDGETS:
            start = starts[budget]
            policy = budget_policy(budget, window, curves)
            begins = policy.threshold
            adaptive = stream.adaptive(policy, BATCH_SIZE)
            one = stream.adaptive(budget_policy(budget, window, curves), 1)
            rows.append(
                {
                    "stream": name,
                    "budget": budget,
                    "start": start,
                    "begins": begins,
                    "fixed": stream.fixed(start, window),
                    "policy": adaptive,
                    "batch_1": one,
                    "hindsight": stream.hindsight(adaptive["mean"], window),
                    "spending": stream.spending(budget, window),
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
