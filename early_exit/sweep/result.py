"""
What a sweep found, on labelled data or without labels: one type, `SweepResult`, for the reports.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from early_exit.sweep.certification import RiskControlResult
from early_exit.sweep.recommendation import Recommendation, walking_order
from early_exit.sweep.reference_points import HeadPoint, OraclePoint
from early_exit.sweep.sweep_table import SweepRow
from early_exit.sweep.thresholds import thresholds_only
from early_exit.sweep.timing import TimingResult


@dataclass
class SweepResult:
    """
    Everything a sweep found; `to_json()` gives the summary written to `sweep.json`. `rows` has
    one row per swept policy, type after type, each from the most aggressive to the most
    conservative. Without labels (`labelled` false) the rows have no accuracy but their
    disagreement with the full model, `recommendations` is the one guaranteed (consistency) pick,
    and there is no `full_model` row, no reference points and no timing. `full_model` is the row
    of `FULL_MODEL`, `policy` what was swept (a name or `"all"`), `sources` where the model and
    data came from and the settings used.
    """

    exit_layers: List[int]
    full_depth: int
    temperatures: List[float]
    num_instances: int
    rows: List[SweepRow]
    full_model: Optional[SweepRow]
    single_heads: List[HeadPoint]
    oracle: Optional[OraclePoint]
    recommendations: List[Recommendation] = field(default_factory=list)
    timings: List[TimingResult] = field(default_factory=list)
    sources: Dict[str, Any] = field(default_factory=dict)
    policy: str = "max_probability"
    labelled: bool = True

    @property
    def policies(self) -> List[str]:
        """The names of the policy types swept, in the table's order."""
        return list(dict.fromkeys(row.policy.registered_name() for row in self.rows))

    @property
    def thresholds_only(self) -> bool:
        """True for a sweep of confidence thresholds only (the default; see `thresholds_only`)."""
        policies = [row.policy for row in self.rows] + [each.policy for each in self.timings]
        return thresholds_only(policies)

    @property
    def timing_batch_sizes(self) -> List[int]:
        return sorted({timing.batch_size for timing in self.timings})

    @property
    def guarantee(self) -> Optional[RiskControlResult]:
        """The guarantee of the first guaranteed recommendation, if any."""
        return next((each.guarantee for each in self.recommendations if each.guarantee), None)

    def walked_rows(self) -> List[Tuple[SweepRow, bool]]:
        """Without labels, the rows as the guarantee walked them, and whether it certified each."""
        guarantee = self.guarantee
        by_policy = {row.policy: row for row in self.rows}
        return [
            (by_policy[policy], guarantee.certified is not None and index <= guarantee.certified)
            for index, policy in enumerate(walking_order(by_policy))
        ]

    def to_json(self) -> Dict[str, Any]:
        common = {
            "num_instances": self.num_instances,
            "exit_layers": self.exit_layers,
            "full_depth": self.full_depth,
            "temperatures": self.temperatures,
        }
        if not self.labelled:
            return {
                **self.sources,
                "labels": False,
                **common,
                "guarantee": self.guarantee.to_json(),
                "rows": [
                    {
                        "policy": row.policy.to_json(),
                        "relative_compute": row.relative_compute,
                        "mean_exit_layer": row.mean_exit_layer,
                        "disagreement": row.disagreement,
                        "certified": certified,
                    }
                    for row, certified in self.walked_rows()
                ],
            }
        return {
            **self.sources,
            "policy": self.policy,
            "policies": self.policies,
            **common,
            "full_model": self.full_model.to_json(),
            "recommendations": [_recommendation_json(each) for each in self.recommendations],
            "single_heads": [dataclasses.asdict(point) for point in self.single_heads],
            "oracle": dataclasses.asdict(self.oracle),
            "timings": [timing.to_json() for timing in self.timings],
            "rows": [row.to_json() for row in self.rows],
        }


def _recommendation_json(recommendation: Recommendation) -> Dict[str, Any]:
    policy, row, guarantee = recommendation.policy, recommendation.row, recommendation.guarantee
    return {
        "goal": recommendation.goal,
        "limit": recommendation.limit,
        "policy": None if policy is None else policy.to_json(),
        "description": None if policy is None else policy.describe(),
        "threshold": recommendation.threshold,
        "message": recommendation.message,
        "guarantee": guarantee.to_json() if guarantee else None,
        "row": None if row is None else row.to_json(),
    }
