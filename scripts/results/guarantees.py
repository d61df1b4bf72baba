"""
Plain and guaranteed confidence thresholds (#21), on the head outputs of one model computed once:
the plain rule (the cheapest threshold within epsilon on the data it is given, `--risk none`) and
the Learn-then-Test rules of the library (`guaranteed_recommendation`, accuracy and consistency
risks), chosen on one part and measured on another; once on dev and evaluation, then on many
seeded halvings of the evaluation split, and on many bootstrap draws from it (where the true risk
is known: the whole split is the population).
"""

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.head_outputs import HeadOutputs
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep import FULL_MODEL, Recommendation, SweepRow, evaluate_policy
from early_exit.sweep import head_probabilities, recommend_threshold, sweep_grid, sweep_policies
from early_exit.sweep.certification import instance_losses
from early_exit.sweep.recommendation import guaranteed_recommendation
from early_exit.sweep.risk_control import ACCURACY, CONSISTENCY, split_in_two

PLAIN = "plain"
RULES = (PLAIN, ACCURACY, CONSISTENCY)
# The threshold rule compared: the paper's, the sweep's default.
POLICY = "max_probability"


@dataclass
class Heads:
    """Every head's outputs on one data set, and what the sweep needs to read them."""

    logits: torch.Tensor  # (num_instances, num_heads, num_labels)
    labels: torch.Tensor  # (num_instances,)
    temperatures: List[float]
    exit_layers: List[int]
    full_depth: int

    @classmethod
    def of(cls, model: EarlyExitClassifier, outputs: HeadOutputs) -> "Heads":
        temperatures = [float(value) for value in model.temperatures.tolist()]
        return cls(
            outputs.logits.float(), outputs.labels, temperatures, list(model.exit_layers),
            model.full_depth,
        )  # fmt: skip

    def __len__(self) -> int:
        return self.logits.shape[0]

    @cached_property
    def probs(self) -> torch.Tensor:
        return head_probabilities(self.logits, self.temperatures)

    def subset(self, indices: torch.Tensor) -> "Heads":
        return Heads(
            self.logits[indices], self.labels[indices], self.temperatures, self.exit_layers,
            self.full_depth,
        )  # fmt: skip

    def sweep(self, policy: str = POLICY) -> List[SweepRow]:
        """The sweep table of a policy's grid (a name or `all`; by default the compared one)."""
        grid = sweep_grid(policy, len(self.exit_layers))
        return sweep_policies(
            self.logits, self.labels, grid, self.exit_layers, self.full_depth, self.temperatures
        )

    def row(self, policy: ExitPolicy) -> SweepRow:
        return evaluate_policy(
            self.logits, self.probs, self.labels, policy, self.exit_layers, self.full_depth
        )

    def risk(self, policy: ExitPolicy, rule: str) -> float:
        """The mean of the loss the rule promises about (for the plain rule, the accuracy drop)."""
        if rule == PLAIN:
            return self.row(FULL_MODEL).accuracy - self.row(policy).accuracy
        return float(instance_losses(self.probs, self.labels, policy, rule).double().mean())


def choose(
    heads: Heads, epsilons: Sequence[float], delta: float
) -> Dict[Tuple[float, str], Recommendation]:
    """Each rule's recommendation at each epsilon, from one sweep of `heads`."""
    rows = heads.sweep()
    full = next(row for row in rows if row.policy == FULL_MODEL)
    chosen = {}
    for epsilon in epsilons:
        chosen[epsilon, PLAIN] = recommend_threshold(rows, full.accuracy, max_accuracy_drop=epsilon)
        for risk in (ACCURACY, CONSISTENCY):
            chosen[epsilon, risk] = guaranteed_recommendation(
                heads.probs, heads.labels, rows, full.accuracy, risk, epsilon, delta, full
            )
    return chosen


def outcome(heads: Heads, policy: ExitPolicy, rule: str) -> Dict[str, float]:
    """How `policy` does on `heads`: accuracy drop, relative compute and the rule's own risk."""
    full, row = heads.row(FULL_MODEL), heads.row(policy)
    return {
        "accuracy": row.accuracy,
        "drop": full.accuracy - row.accuracy,
        "relative_compute": row.relative_compute,
        "risk": heads.risk(policy, rule),
    }


def guarantee_records(
    dev: Heads, evaluation: Heads, epsilons: Sequence[float], delta: float
) -> List[Dict[str, Any]]:
    """Each rule chosen on `dev` at each epsilon: its promise and how it did on both splits."""
    records = []
    for (epsilon, rule), recommendation in choose(dev, epsilons, delta).items():
        policy = recommendation.policy
        guarantee = recommendation.guarantee
        records.append(
            {
                "epsilon": epsilon,
                "rule": rule,
                "policy": policy.to_json(),
                "exits_early": not policy.never_exits_early(len(dev.exit_layers)),
                "message": recommendation.message if guarantee is None else guarantee.message,
                "dev": outcome(dev, policy, rule),
                "eval": outcome(evaluation, policy, rule),
            }
        )
    return records


def halves(num_instances: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    A seeded random halving (the library's `split_in_two`): choose on one, measure on the other.
    """
    return split_in_two(num_instances, seed)


def bootstrap(num_instances: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    Half as many seeded draws with replacement to choose on, and every instance to measure on: the
    data set is then the population the draws are i.i.d. from, and a rule's risk on all of it is
    its true risk, not an estimate from a finite half.
    """
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(num_instances, ((num_instances + 1) // 2,), generator=generator)
    return draws, torch.arange(num_instances)


def repeated_splits(
    heads: Heads,
    epsilons: Sequence[float],
    delta: float,
    num_splits: int,
    seed: int,
    split: Callable[[int, int], Tuple[torch.Tensor, torch.Tensor]] = halves,
) -> List[Dict[str, Any]]:
    """
    On `num_splits` seeded splits of `heads` (`split(num_instances, seed)`, seeds `seed`,
    `seed + 1`, ...; by default `halves`): each rule chosen on the first part, measured on the
    second. One record per split, epsilon and rule.
    """
    records = []
    for index in range(num_splits):
        first, second = split(len(heads), seed + index)
        choosing, measuring = heads.subset(first), heads.subset(second)
        for (epsilon, rule), recommendation in choose(choosing, epsilons, delta).items():
            policy = recommendation.policy
            records.append(
                {
                    "split": index,
                    "epsilon": epsilon,
                    "rule": rule,
                    "exits_early": not policy.never_exits_early(len(heads.exit_layers)),
                    **outcome(measuring, policy, rule),
                }
            )
    return records


# Accuracies are fractions of a finite set: this absorbs float noise when a drop equals epsilon.
_TOLERANCE = 1e-9


def summarize_splits(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """
    Per epsilon and rule (in the records' order): how many splits there were, how often the
    measured accuracy drop exceeded epsilon (`broken`), how often the rule's own risk did
    (`risk_broken`: the accuracy drop for the plain rule, the fraction of lost predictions or of
    disagreements for the guaranteed ones), how often it chose the full model, and the mean drop
    and relative compute.
    """
    groups: Dict[Tuple[float, str], List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["epsilon"], record["rule"]), []).append(record)
    summary = []
    for (epsilon, rule), group in groups.items():
        count = len(group)
        summary.append(
            {
                "epsilon": epsilon,
                "rule": rule,
                "splits": count,
                "broken": sum(r["drop"] > epsilon + _TOLERANCE for r in group),
                "risk_broken": sum(r["risk"] > epsilon + _TOLERANCE for r in group),
                "full_model": sum(not r["exits_early"] for r in group),
                "mean_drop": sum(r["drop"] for r in group) / count,
                "mean_compute": sum(r["relative_compute"] for r in group) / count,
            }
        )
    return summary
