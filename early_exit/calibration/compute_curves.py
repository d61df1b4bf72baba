"""
The dev compute curves an archive keeps next to its temperatures: for each threshold policy that
`compute_budget` can adapt, the mean relative compute at every threshold of its sweep grid on the
calibration data. `compute_budget` without a `start` starts at the threshold whose compute there
is the budget (`ComputeBudgetPolicy.use_compute_curves`).
"""

from typing import Dict, List, Sequence

import torch

from early_exit.modules.exit_policies import ExitPolicy

COMPUTE_CURVES_KEY = "compute_curves"
# The policies `compute_budget` adapts (one threshold each).
CURVE_POLICIES = ("max_probability", "entropy")


def compute_curves(
    head_probs: torch.Tensor, head_compute: Sequence[float]
) -> Dict[str, List[List[float]]]:
    """
    `{policy name: [[threshold, mean relative compute], ...]}`, thresholds in the order of the
    policy's sweep grid (from the most to the least compute), on these instances.

    # Parameters

    head_probs : `torch.Tensor`
        `(num_instances, num_heads, num_labels)`: every head's temperature-scaled probabilities.
    head_compute : `Sequence[float]`
        `(num_heads,)`: each head's relative compute.
    """
    compute = torch.tensor(list(head_compute), dtype=torch.double)  # (num_heads,)
    num_heads = head_probs.shape[1]
    curves = {}
    for name in CURVE_POLICIES:
        policy_class = ExitPolicy.by_name(name)
        grid = policy_class(1.0).sweep_grid(num_heads)
        curves[name] = [
            [policy.threshold, round(float(compute[policy.exit_heads(head_probs)].mean()), 6)]
            for policy in grid
        ]
    return curves
