"""
Guaranteed recommendations in a sweep: the risk-control walk (see `risk_control`) over the sweep's
own grid, next to the plain pick, and the sweep of data without labels, where only the consistency
risk applies.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.data import Instance

from early_exit.models.head_outputs import HeadOutputs, collect_head_outputs
from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep.recommendation import MAX_ACCURACY_DROP, Recommendation
from early_exit.sweep.risk_control import (
    ACCURACY,
    CONSISTENCY,
    DEFAULT_DELTA,
    RISKS,
    RiskControlResult,
    certify,
    check_risk,
    check_risk_settings,
    instance_losses,
    unguaranteed_note,
)
from early_exit.sweep.sweep_table import SweepRow, head_probabilities
from early_exit.metrics.exit_statistics import ExitStatistics

AUTO = "auto"
NO_GUARANTEE = "none"
RISK_CHOICES = (AUTO,) + RISKS + (NO_GUARANTEE,)


def resolve_risk(risk: Optional[str], num_unlabelled: int, num_instances: int) -> Optional[str]:
    """
    The risk to control for a sweep: `None` for no guarantee (`none`, or `None` as the Python
    default), `auto` is `accuracy` on labelled data and `consistency` on data without labels.

    # Raises

    `ConfigurationError` for an unknown risk, or data without (all) labels for a risk that needs
    them.
    """
    if risk is None or risk == NO_GUARANTEE:
        risk = None
    elif risk == AUTO:
        risk = CONSISTENCY if num_unlabelled == num_instances else ACCURACY
    elif risk not in RISKS:
        raise ConfigurationError(f"unknown risk {risk!r}; choose from {', '.join(RISK_CHOICES)}")
    if num_unlabelled and risk != CONSISTENCY:
        raise ConfigurationError(
            f"{num_unlabelled} of {num_instances} instances have no gold label; "
            f"{'a sweep without a guarantee' if risk is None else f'the {risk} risk'} needs "
            "labelled data, the consistency risk (--risk consistency) does not"
        )
    return risk


def check_guarantee_settings(risk: Optional[str], epsilon: Optional[float], delta: float) -> None:
    """
    `ConfigurationError` for a risk without an accuracy goal or an epsilon or delta outside (0, 1).
    """
    if risk in (None, NO_GUARANTEE):
        return
    if risk not in RISK_CHOICES:
        raise ConfigurationError(f"unknown risk {risk!r}; choose from {', '.join(RISK_CHOICES)}")
    check_risk_settings(epsilon, delta, "--max-accuracy-drop", "--delta")


def split_in_two(num_instances: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    A seeded random split of `range(num_instances)` into two halves (the first one larger by one
    for an odd count), e.g. one to fit temperatures on and one to certify a threshold on: a
    threshold certified on the instances that fitted the temperatures would not carry the
    guarantee, since the candidates would then depend on the data they are tested on.
    """
    order = torch.randperm(num_instances, generator=torch.Generator().manual_seed(seed))
    first = (num_instances + 1) // 2
    return order[:first].sort().values, order[first:].sort().values


def certify_exit_policy(
    model: EarlyExitClassifier, outputs: HeadOutputs, risk: str, epsilon: float, delta: float
) -> RiskControlResult:
    """
    Walks the `sweep_grid` of the model's exit policy type on cached head outputs, at the model's
    temperatures (fitted on other instances than `outputs`).
    """
    head_probs = head_probabilities(outputs.logits.float(), model.serving_temperatures.tolist())
    candidates = model.exit_policy.sweep_grid(len(model.exit_layers))
    return certify(head_probs, outputs.labels, candidates, risk, epsilon, delta)


def guaranteed_recommendation(
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    rows: Sequence[SweepRow],
    reference_accuracy: float,
    risk: str,
    epsilon: float,
    delta: float = DEFAULT_DELTA,
    full_model: Optional[SweepRow] = None,
) -> Recommendation:
    """
    The cheapest policy of `rows` that the fixed-sequence test certifies, as a `Recommendation`
    carrying its `guarantee`. Each policy type of the rows is walked on its own, from its most
    conservative row down (`ExitPolicy.conservativeness`, fixed before the data is seen), at
    `delta` divided by the number of types: by the union bound the promise of the one chosen
    still holds with probability `1 - delta`. Where nothing is certified, the full model
    (`full_model`, or the rows' most expensive row).
    """
    by_type: Dict[type, List[ExitPolicy]] = {}
    for row in rows:
        by_type.setdefault(type(row.policy), []).append(row.policy)
    share = delta / len(by_type)
    results = [
        certify(
            head_probs,
            labels,
            sorted(policies, key=lambda policy: policy.conservativeness(), reverse=True),
            risk,
            epsilon,
            share,
        )
        for policies in by_type.values()
    ]
    by_policy = {row.policy: row for row in rows}
    fallback = full_model or max(rows, key=lambda row: row.relative_compute)
    guarantee = min(
        results, key=lambda result: by_policy.get(result.policy, fallback).relative_compute
    )
    return Recommendation(
        MAX_ACCURACY_DROP,
        epsilon,
        reference_accuracy,
        by_policy.get(guarantee.policy, fallback),
        guarantee.message,
        guarantee=guarantee,
    )


def note_no_guarantee(
    recommendation: Recommendation,
    head_probs: torch.Tensor,
    labels: Optional[torch.Tensor],
    risk: str,
    delta: float,
) -> Recommendation:
    """Appends to the plain pick's message that it carries no guarantee, and its pointwise bound."""
    if recommendation.row is not None:
        note = unguaranteed_note(head_probs, labels, recommendation.row.policy, risk, delta)
        recommendation.message = f"{recommendation.message}; {note}"
    return recommendation


@dataclass
class LabelFreeSweep:
    """
    A sweep of data without labels: relative compute and disagreement with the full model per
    candidate, and the consistency guarantee.

    # Attributes

    exit_layers : `List[int]`
    full_depth : `int`
    temperatures : `List[float]`
    num_instances : `int`
    records : `List[Dict[str, Any]]`
        One per candidate, in walking order: `policy`, `relative_compute`, `mean_exit_layer`,
        `disagreement` (the fraction of predictions that differ from the full model's) and
        `certified` (whether the walk certified it).
    guarantee : `RiskControlResult`
    sources : `Dict[str, Any]`
    """

    exit_layers: List[int]
    full_depth: int
    temperatures: List[float]
    num_instances: int
    records: List[Dict[str, Any]]
    guarantee: RiskControlResult
    sources: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {
            **self.sources,
            "labels": False,
            "num_instances": self.num_instances,
            "exit_layers": self.exit_layers,
            "full_depth": self.full_depth,
            "temperatures": self.temperatures,
            "guarantee": self.guarantee.to_json(),
            "rows": self.records,
        }


def sweep_unlabelled(
    model: EarlyExitClassifier,
    instances: Sequence[Instance],
    policies: Sequence[ExitPolicy],
    epsilon: float,
    delta: float = DEFAULT_DELTA,
    batch_size: int = 32,
) -> LabelFreeSweep:
    """
    Runs every head once on `instances` (labels, if any, are not used) and certifies the policy of
    `policies` (all of one type, walked from the most conservative down) whose predictions differ
    from the full model's on at most `epsilon` of new inputs, with probability `1 - delta`.
    """
    if len({type(policy) for policy in policies}) != 1:
        raise ConfigurationError(
            "a sweep without labels walks one exit policy type: choose one with --policy"
        )
    check_risk(CONSISTENCY, has_labels=False)
    check_risk_settings(epsilon, delta, "--max-accuracy-drop", "--delta")
    outputs = collect_head_outputs(model, instances, batch_size)
    temperatures = [float(value) for value in model.serving_temperatures.tolist()]
    head_probs = head_probabilities(outputs.logits.float(), temperatures)
    candidates = sorted(policies, key=lambda policy: policy.conservativeness(), reverse=True)
    records = []
    for policy in candidates:
        statistics = ExitStatistics(list(model.exit_layers), model.full_depth)
        statistics(policy.exit_heads(head_probs))
        metrics = statistics.get_metric()
        disagreement = instance_losses(head_probs, None, policy, CONSISTENCY).float().mean()
        records.append(
            {
                "policy": policy.to_json(),
                "relative_compute": metrics["relative_compute"],
                "mean_exit_layer": metrics["mean_exit_layer"],
                "disagreement": float(disagreement),
            }
        )
    guarantee = certify(head_probs, None, candidates, CONSISTENCY, epsilon, delta)
    for index, record in enumerate(records):
        record["certified"] = guarantee.certified is not None and index <= guarantee.certified
    return LabelFreeSweep(
        exit_layers=list(model.exit_layers),
        full_depth=model.full_depth,
        temperatures=temperatures,
        num_instances=len(outputs),
        records=records,
        guarantee=guarantee,
    )
