"""
The exit-policy comparison at equal accuracy: each policy type's setting chosen on dev (the
library's `recommend_threshold` over that type's rows of an `--policy all` sweep), then looked up
in the sweep of the evaluation split.
"""

from typing import Any, Dict, List, Sequence

from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep import SweepRow, recommend_threshold
from scripts.results.settings import drop_key


def policy_types(rows: Sequence[SweepRow]) -> List[str]:
    """The policy types of a sweep table, in its order."""
    return list(dict.fromkeys(row.policy.registered_name() for row in rows))


def choose_per_policy(
    dev_rows: Sequence[SweepRow], full_accuracy: float, drops: Sequence[float]
) -> List[Dict[str, Any]]:
    """
    For each policy type of `dev_rows` and each allowed accuracy drop, the cheapest row of that type
    within the drop of `full_accuracy` (there is always one: every type's grid ends at the full
    model). Records `{"policy_type", "drop", "row"}`, drops first.
    """
    choices = []
    for drop in drops:
        for name in policy_types(dev_rows):
            own = [row for row in dev_rows if row.policy.registered_name() == name]
            recommendation = recommend_threshold(own, full_accuracy, max_accuracy_drop=drop)
            choices.append({"policy_type": name, "drop": drop, "row": recommendation.row})
    return choices


def chosen_policies(choices: Sequence[Dict[str, Any]]) -> List[ExitPolicy]:
    """The distinct policies of `choose_per_policy`'s records, in their order (to time them)."""
    return list(dict.fromkeys(choice["row"].policy for choice in choices))


def choice_records(
    choices: Sequence[Dict[str, Any]], eval_rows: Sequence[SweepRow]
) -> List[Dict[str, Any]]:
    """
    `choose_per_policy`'s records as JSON, each with its row on dev and the same policy's row in
    the evaluation split's sweep (`eval_rows`, of the same grids).
    """
    on_eval = {row.policy: row for row in eval_rows}
    return [
        {
            "policy_type": choice["policy_type"],
            "drop": drop_key(choice["drop"]),
            "policy": choice["row"].policy.to_json(),
            "dev": choice["row"].to_json(),
            "eval": on_eval[choice["row"].policy].to_json(),
        }
        for choice in choices
    ]
