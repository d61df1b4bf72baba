"""
The exit-policy comparison at equal accuracy: each policy type's setting chosen on dev and its row
on the evaluation split (the library's `choose_on_dev` over that type's rows of `--policy all`
sweeps), with the oracle's compute at the same accuracy (`oracle_compute_at_accuracy`).
"""

from typing import Any, Dict, List, Sequence

from early_exit.models.head_outputs import HeadOutputs
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.sweep import SweepRow
from early_exit.sweep.recommendation import HeldOutChoice, choose_on_dev
from early_exit.sweep.reference_points import oracle_compute_at_accuracy
from scripts.results.settings import drop_key


def policy_types(rows: Sequence[SweepRow]) -> List[str]:
    """The policy types of a sweep table, in its order."""
    return list(dict.fromkeys(row.policy.registered_name() for row in rows))


def of_type(rows: Sequence[SweepRow], name: str) -> List[SweepRow]:
    return [row for row in rows if row.policy.registered_name() == name]


def choose_per_policy(
    dev_rows: Sequence[SweepRow],
    full_accuracy: float,
    eval_rows: Sequence[SweepRow],
    drops: Sequence[float],
) -> List[Dict[str, Any]]:
    """
    For each policy type of `dev_rows` and each allowed accuracy drop, the cheapest setting of that
    type within the drop of `full_accuracy` on dev, with its row of `eval_rows` (of the same
    grids). Records `{"policy_type", "choice": HeldOutChoice}`, drops first.
    """
    by_type = {
        name: choose_on_dev(of_type(dev_rows, name), full_accuracy, eval_rows, drops)
        for name in policy_types(dev_rows)
    }
    return [
        {"policy_type": name, "choice": choices[index]}
        for index in range(len(drops))
        for name, choices in by_type.items()
    ]


def chosen_policies(choices: Sequence[Dict[str, Any]]) -> List[ExitPolicy]:
    """The distinct policies of `choose_per_policy`'s records, in their order (to time them)."""
    return list(dict.fromkeys(record["choice"].policy for record in choices))


def _row_json(choice: HeldOutChoice) -> Dict[str, Any]:
    row = choice.on_dev.row if choice.on_dev.row is not None else choice.on_eval
    return row.to_json()


def choice_records(
    choices: Sequence[Dict[str, Any]], eval_outputs: HeadOutputs, exit_layers, full_depth: int
) -> List[Dict[str, Any]]:
    """
    `choose_per_policy`'s records as JSON: the policy, its rows on dev and on the evaluation split,
    and the least compute any policy over the heads needs for the same accuracy on the evaluation
    split (`oracle_compute`).
    """
    records = []
    for record in choices:
        choice: HeldOutChoice = record["choice"]
        oracle = oracle_compute_at_accuracy(
            eval_outputs.logits, eval_outputs.labels, exit_layers, full_depth,
            choice.on_eval.accuracy,
        )  # fmt: skip
        records.append(
            {
                "policy_type": record["policy_type"],
                "drop": drop_key(choice.max_accuracy_drop),
                "policy": choice.policy.to_json(),
                "dev": _row_json(choice),
                "eval": choice.on_eval.to_json(),
                "oracle_compute": oracle,
            }
        )
    return records
