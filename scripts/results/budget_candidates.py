"""
The controller's candidates of docs/results.md's compute-budget section: each candidate's window
and settings run over every stream and budget, the targets each meets against the default's, the
rule a candidate replaces the default by, and how optimistic the per-window hindsight is.
"""

from typing import Dict, List

import torch

from scripts.results.budget_measure import (
    BATCH_SIZE,
    BUDGETS,
    Stream,
    budget_policy,
    difficulty_step,
)
from scripts.results.formatting import pct, title

# The candidates the controller's defaults were chosen from: (window, integral, proportional,
# payback gain, deadband, max step); payback 0 is the PI rule without the cap from the recent
# rows' confidences. The last ones try to swing less on a stream without drift.
CANDIDATES = [
    (window, *gains, 0.0, None)
    for window in (100, 200, 400)
    for gains in (
        (20.0, 10.0, 0.0),
        (40.0, 20.0, 0.0),
        (20.0, 10.0, 1.0),
        (20.0, 10.0, 2.0),
        (20.0, 10.0, 3.0),
        (40.0, 20.0, 2.0),
    )
] + [
    (200, 20.0, 0.0, 2.0, 0.0, None),
    (200, 20.0, 5.0, 2.0, 0.0, None),
    (200, 20.0, 5.0, 3.0, 0.0, None),
    (200, 10.0, 5.0, 2.0, 0.0, None),
    (200, 20.0, 10.0, 2.0, 1.0, None),
    (200, 20.0, 10.0, 2.0, 2.0, None),
    (200, 20.0, 10.0, 2.0, 0.0, 0.5),
    (200, 20.0, 10.0, 2.0, 0.0, 1.0),
]
# The largest window a candidate may have to replace the default (see `candidates_table`).
MAX_WINDOW = 200


def target_marks(policy: Dict, budget: float, per_window: float) -> tuple:
    """Whether a run meets the section's targets: (mean, windows, accuracy)."""
    mean_ok = abs(policy["mean"] - budget) <= 0.01
    window_ok = policy["worst"] is None or policy["worst"] - budget <= 0.05
    return mean_ok, window_ok, per_window - policy["accuracy"] <= 0.01


def candidates_table(sections: Dict[str, tuple], chosen: tuple) -> List[str]:
    """
    Each candidate over every stream and budget at batch size 32: over the three orders of each
    evaluation split and a constructed step, how close it holds; over the section's streams
    (`sections`: dataset -> (streams by name, dev curves)), the targets it meets, against the
    default's (adopted only with more in total and no mean or window target of the default lost).
    """
    constructed = difficulty_step()
    head_compute = [(head + 1) / 6 for head in range(6)]
    labels = torch.zeros(len(constructed), dtype=torch.long)
    runs: List = [(Stream(constructed, labels, head_compute), None, False)]
    for section, curves in sections.values():
        runs += [(stream, curves, " then " not in name) for name, stream in section.items()]
    lines = [
        "| window | integral gain | proportional gain | payback gain | deadband | max step | "
        "largest mean - budget | largest worst window - budget | runs with every window within "
        "0.05 | accuracy below per-window hindsight (mean, points) | section's targets met: mean "
        "/ windows / accuracy / total | |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    measured = [(candidate, *_candidate(candidate, runs)) for candidate in CANDIDATES]
    default = next(entry[5] for entry in measured if entry[0] == chosen)
    for candidate, mean, worst, held, gap, marks in measured:
        notes = [
            "the default" if candidate == chosen else "",
            "wins over the default" if _wins(candidate, marks, default) else "",
        ]
        met = [sum(mark[index] for mark in marks) for index in range(3)]
        window, integral, proportional, payback, deadband, max_step = candidate
        lines.append(
            f"| {window} | {integral:g} | {proportional:g} | {payback:g} | {deadband:g} | "
            f"{'-' if max_step is None else f'{max_step:g}'} | {mean:.3f} | {worst:+.3f} | "
            f"{held} | {gap:.2f} | {' / '.join(map(str, met))} / {sum(met)} of {3 * len(marks)} "
            f"| {', '.join(note for note in notes if note)} |"
        )
    winners = [entry[0] for entry in measured if _wins(entry[0], entry[5], default)]
    return lines + [
        "",
        "Candidates that win over the default (a window of at most 200, more of the section's "
        "targets met in total, and no mean or window target of the default's lost): "
        + (", ".join(map(str, winners)) if winners else "none")
        + ".",
    ]


def _wins(candidate: tuple, marks: List[tuple], default: List[tuple]) -> bool:
    """
    A window of at most `MAX_WINDOW`, more targets met in total than the default, and no mean or
    window target of it lost.
    """
    if candidate[0] > MAX_WINDOW:
        return False
    kept = all(mine[i] or not theirs[i] for mine, theirs in zip(marks, default) for i in (0, 1))
    return kept and sum(map(sum, marks)) > sum(map(sum, default))


def _candidate(candidate: tuple, runs: List) -> tuple:
    """
    Over the orders and the constructed step, every budget: the largest |mean - budget|, the
    largest worst window - budget, how many runs hold every window, the mean accuracy gap; and
    the target marks of each run of the section's streams.
    """
    window, integral, proportional, payback, deadband, max_step = candidate
    settings = {
        "integral_gain": integral,
        "proportional_gain": proportional,
        "payback_gain": payback,
        "deadband": deadband,
        "max_step": max_step,
    }
    means, worsts, gaps, marks = [], [], [], []
    for stream, curves, ordered in runs:
        for budget in BUDGETS:
            outcome = stream.adaptive(budget_policy(budget, window, curves, **settings), BATCH_SIZE)
            per_window = stream.per_window_hindsight(budget, window) if curves else None
            if curves is not None:  # the section's streams, at the candidate's window
                marks.append(target_marks(outcome, budget, per_window))
            if curves is not None and not ordered:
                continue
            means.append(abs(outcome["mean"] - budget))
            if outcome["worst"] is not None:
                worsts.append(outcome["worst"] - budget)
            if curves is not None:  # a real stream, with labels
                gaps.append(per_window - outcome["accuracy"])
    held = f"{sum(worst <= 0.05 for worst in worsts)}/{len(worsts)}"
    return max(means), max(worsts), held, 100 * sum(gaps) / len(gaps), marks


def hindsight_bias(sections: Dict[str, tuple], window: int) -> List[str]:
    """
    How optimistic the per-window hindsight is where nothing drifts: on each shuffled stream, its
    accuracy against the best fixed threshold in hindsight at the budget, and the default's.
    """
    notes = []
    for dataset, (runs, curves) in sections.items():
        stream = runs["shuffled"]
        parts = []
        for budget in BUDGETS:
            per_window = stream.per_window_hindsight(budget, window)
            fixed = stream.hindsight(budget, window)["accuracy"]
            policy = stream.adaptive(budget_policy(budget, window, curves), BATCH_SIZE)
            parts.append(
                f"{budget:g}: {pct(per_window)} against {pct(fixed)} (+{100 * (per_window - fixed):.1f}"
                f"; the policy {pct(policy['accuracy'])})"
            )
        notes.append(
            f"{title(dataset)} ({stream.num_labelled:,} labelled, a point is "
            f"{stream.num_labelled / 100:.1f} instances; " + ", ".join(parts) + ")"
        )
    return [
        "Why accuracy rows still miss where nothing drifts: the per-window hindsight picks each "
        f"block of {window} instances' best threshold knowing its labels, an optimistic bound. "
        "On the shuffled streams, where one threshold is about the most accurate way to spend a "
        "mean compute, it stands above the best fixed threshold in hindsight at the budget (per "
        "budget: per-window hindsight against global hindsight, points above): "
        + "; ".join(notes)
        + ". The rest of the gap, the policy below the global hindsight, is the cost of its "
        "swings; the candidates that swing less (a deadband, a step limit, a smaller "
        "proportional gain) close part of it but answer drift later and lose mean or window "
        "targets (the table above).",
        "",
    ]


def controller_text() -> List[str]:
    return [
        "### The controller's candidates",
        "",
        "Every candidate window and gains over the three orders of each evaluation split "
        "above (starting from the dev curve) and a constructed stream (6 heads, 4,000 rows "
        "whose difficulty steps up halfway; cold start), at every budget, batch size 32. "
        "Payback gain 0 is the proportional-integral rule alone; above 0 the threshold is also "
        "capped where the recent rows' confidences say the coming rows pay back the window's "
        "overspending (exact going down: for a lower threshold than a row was decided with, its "
        "exit is known). Larger gains hold the "
        "windows tighter but swing the threshold, which costs accuracy; the cap holds them "
        "without the swing, since it only ever lowers the threshold to where the recent rows "
        "say it should be. The last candidates try to swing less where nothing drifts (the "
        "default swings the threshold on the shuffled SST-2 stream, which costs accuracy there): "
        "a smaller proportional gain, leaving the fast answer to the cap; a deadband (errors "
        "within that many standard errors of the window's mean count as sampling noise and do "
        "not move the controller); a step limit on the PI rule's threshold (max step in `u` per "
        "window of instances; the cap may still lower it at once). The rule: a candidate replaces "
        "the default only with a window of at most 200 instances (a larger one holds the budget "
        "only over a longer span, and leaves the 436-sentence SST-2 stream without a window "
        "after the warm-up, so its window targets there hold by default), more of the section's "
        "targets met in total (those of the tables above, over their 24 rows: both datasets, "
        "four streams, three budgets, at the candidate's window) and none of the default's mean "
        "or window targets lost. By that rule payback gain 3 replaced 2: the same mean and "
        "accuracy targets, two more runs with every window held.",
        "",
    ]
