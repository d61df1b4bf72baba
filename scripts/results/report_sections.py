"""
The report's section on exit policies: the comparison at equal accuracy with its findings in words.
"""

import json
from typing import Dict, List

from scripts.results.formatting import (
    named,
    parameters,
    pct,
    points,
    policy_json,
    speedup,
    speedups,
    title,
)
from scripts.results.settings import DROPS, drop_key


def _hundredths(value: float) -> str:
    """A signed difference to two places, `+0.16`, with no `-0.00`."""
    text = f"{value:+.2f}"
    return "0.00" if text in ("+0.00", "-0.00") else text


def _within(drop: str) -> str:
    return f"{100 * float(drop):g} point" + ("" if float(drop) == 0.01 else "s")


def _ranked(main: Dict, drop: str, split: str = "eval") -> List[Dict]:
    """The policies chosen within `drop`, cheapest first on `split` (ties: more accurate first)."""
    chosen = [choice for choice in main["policy_choices"] if choice["drop"] == drop]
    return sorted(chosen, key=lambda c: (c[split]["relative_compute"], -c[split]["accuracy"]))


def _chosen(main: Dict, drop: str) -> List[Dict]:
    return [choice["policy"] for choice in main["policy_choices"] if choice["drop"] == drop]


def cheapest_policy(main: Dict, drop: str) -> str:
    """
    The policy types chosen within `drop` on dev that are cheapest on the evaluation split (those
    within 0.005 of the cheapest tie), and that compute: `entropy / max_probability: 0.17`.
    """
    if "policy_choices" not in main:
        return "-"
    ranked = _ranked(main, drop)
    tied = [c["policy_type"] for c in ranked if _compute(c) - _compute(ranked[0]) < 0.005]
    return f"{' / '.join(tied)}: {_compute(ranked[0]):.2f}"


def policy_table(main: Dict) -> List[str]:
    full = main["eval_full"]["accuracy"]
    lines = [
        "| within, on dev | policy | setting | accuracy | vs full | relative compute | measured "
        "speedup, batch 1 | batch 32 | oracle at that accuracy | minus oracle | of the oracle's "
        "saving |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for drop in map(drop_key, DROPS):
        for choice in main["policy_choices"]:
            if choice["drop"] != drop:
                continue
            row, oracle = choice["eval"], choice["oracle_compute"]
            b1, b32 = speedups(main, choice["policy"])
            saving = (1 - row["relative_compute"]) / (1 - oracle)
            lines.append(
                f"| {_within(drop)} | {choice['policy_type']} | {parameters(choice['policy'])} | "
                f"{pct(row['accuracy'])} | {points(row['accuracy'] - full)} | "
                f"{row['relative_compute']:.2f} | {b1} | {b32} | {oracle:.2f} | "
                f"{_hundredths(row['relative_compute'] - oracle)} | {saving:.0%} |"
            )
    return lines


def _compute(choice: Dict, split: str = "eval") -> float:
    return choice[split]["relative_compute"]


def _same_exits(first: Dict, second: Dict) -> bool:
    """Same accuracy, compute and exits at every layer on the evaluation split."""
    keys = ("accuracy", "relative_compute", "exit_fractions")
    return all(first["eval"][key] == second["eval"][key] for key in keys)


def ranking_sentences(main: Dict, drop: str) -> List[str]:
    """
    Which policy is cheapest within `drop` on the evaluation split, and which kept the promise.
    """
    full = main["eval_full"]["accuracy"]
    ranked = _ranked(main, drop)
    winner = ranked[0]
    row = winner["eval"]
    b1, b32 = speedups(main, winner["policy"])
    tied = [c["policy_type"] for c in ranked[1:] if _compute(c) - _compute(winner) < 0.005]
    rest = ", ".join(
        f"{c['policy_type']} {_compute(c):.2f}" for c in ranked[1:] if c["policy_type"] not in tied
    )
    sentences = [
        f"Cheapest within {_within(drop)} on dev: {named(winner['policy'])}, at relative compute "
        f"{row['relative_compute']:.2f} on the evaluation split ({pct(row['accuracy'])} accuracy, "
        f"{points(row['accuracy'] - full)} against full depth; measured {b1} at batch 1, {b32} at "
        f"batch 32)"
        + (f"; {' and '.join(tied)} {'ties' if len(tied) == 1 else 'tie'} with it" if tied else "")
        + (f"; then {rest}." if rest else ".")
    ]
    on_dev = _ranked(main, drop, "dev")[0]
    if _compute(on_dev, "dev") < _compute(winner, "dev") - 1e-9:
        sentences.append(
            f"On dev the cheapest was {on_dev['policy_type']} ({_compute(on_dev, 'dev'):.2f}, "
            f"against {_compute(winner, 'dev'):.2f})."
        )
    broken = [c for c in ranked if full - c["eval"]["accuracy"] > float(drop) + 1e-9]
    if broken:
        lost = ", ".join(
            f"{c['policy_type']} ({points(c['eval']['accuracy'] - full)})" for c in broken
        )
        sentences.append(
            f"Lost more than the allowed {_within(drop)} on the evaluation split: {lost}."
        )
    else:
        sentences.append(f"Every policy stayed within {_within(drop)} on the evaluation split.")
    return sentences


def noise_sentence(main: Dict) -> List[str]:
    """
    The spread of measured speedups among policies that made the same exits (within one drop): what
    a difference in measured speed between policies has to exceed to mean anything.
    """
    for drop in map(drop_key, DROPS):
        chosen = [c for c in main["policy_choices"] if c["drop"] == drop]
        same = [c for c in chosen if _same_exits(c, chosen[0])]
        if len(same) < 2 or len({json.dumps(c["policy"]) for c in same}) < 2:
            continue
        spreads = []
        for batch_size in (1, 32):
            values = [speedup(main, c["policy"], batch_size) for c in same]
            if None in values:
                return []
            spreads.append(f"{min(values):.2f}x to {max(values):.2f}x")
        names = ", ".join(c["policy_type"] for c in same)
        return [
            f"Within {_within(drop)}, {names} made the same exits (the same accuracy, compute and "
            f"exit layers) and were measured at {spreads[0]} at batch 1 and {spreads[1]} at "
            "batch 32: differences of that size between measured speedups are timing noise."
        ]
    return []


def beyond_ideal_sentence(main: Dict) -> List[str]:
    """
    Measured speedups more than 10% above the ideal on the timed instances (1 / their relative
    compute), and how far apart the full model's repeats were: how much to trust the timings.
    """
    beyond = [
        f"{named(timing['policy'])} at batch {timing['batch_size']}, {timing['speedup']:.2f}x "
        f"against {1 / timing['relative_compute']:.1f}x"
        for timing in main.get("timings", [])
        if timing["speedup"] > 1.1 / timing["relative_compute"]
    ]
    full = [t for t in main.get("timings", []) if t["policy"] == policy_json(1.0)]
    spread = "; ".join(
        f"{min(t['repeat_seconds']):.2f} to {max(t['repeat_seconds']):.2f} s at batch "
        f"{t['batch_size']}"
        for t in full
    )
    sentences = [f"The full model's timed repeats took {spread}."] if spread else []
    if beyond:
        sentences.append(
            "Measured more than 10% above the ideal speedup on the timed instances (1 / their "
            f"relative compute, a count of layers): {'; '.join(beyond)}: noise of the shared "
            "machine (see the repeats' spread), or costs the layer count does not see."
        )
    return sentences


def _first_exits(choice: Dict, first_layer: int) -> str:
    return f"{choice['eval']['exit_fractions'][str(first_layer)]:.0%}"


def _patience_sentence(policy: Dict, layers: List[int]) -> List[str]:
    """What a patience of the chosen setting costs at least, or that it is another rule."""
    patience = policy["patience"]
    if patience >= len(layers):
        return [
            f"{named(policy)} never exits early ({len(layers)} heads): no setting of "
            f"{policy['type']} that exits early stayed within 1 point on dev."
        ]
    if patience == 1:
        return (
            ["confident_patience at patience 1 is max_probability itself."]
            if policy["type"] == "confident_patience"
            else []
        )
    floor = (layers[patience - 1] + 1) / (layers[-1] + 1)
    return [
        f"{named(policy)} lets no instance leave before its head {patience} (layer "
        f"{layers[patience - 1]}), so it needs at least {floor:.2f} of the compute."
    ]


def reason_sentences(main: Dict) -> List[str]:
    """Why the policies rank as they do, from the numbers (the choices within 1 point)."""
    layers, full = main["exit_layers"], main["eval_full"]["accuracy"]
    by_type = {c["policy_type"]: c for c in main["policy_choices"] if c["drop"] == "0.01"}
    first = main["single_heads"][0]
    shares = ", ".join(f"{name} {_first_exits(c, layers[0])}" for name, c in by_type.items())
    sentences = [
        f"The first head alone scores {pct(first['accuracy'])} ({points(first['accuracy'] - full)}"
        f" against full depth); the share of instances leaving there: {shares}."
    ]
    if main.get("num_labels") == 2:
        sentences.append(
            "With two labels the normalised entropy is a decreasing function of the top "
            "probability, so entropy and max_probability make the same decisions at matching "
            "thresholds: any difference between them is the grids' granularity."
        )
    for name in ("patience", "confident_patience"):
        if name in by_type:
            sentences += _patience_sentence(by_type[name]["policy"], layers)
    return sentences + [_oracle_sentence(main)]


def _oracle_sentence(main: Dict) -> str:
    """How far the cheapest policy within 1 point is from the oracle at its accuracy, and why."""
    winner = _ranked(main, "0.01")[0]
    oracle, name = winner["oracle_compute"], winner["policy_type"]
    gap = _compute(winner) - oracle
    text = (
        f"At {name}'s accuracy ({pct(winner['eval']['accuracy'])}) the oracle needs {oracle:.2f} "
        f"and {name} {_compute(winner):.2f}"
    )
    if gap < 0.005:
        return text + ": nothing is left to save, the first head alone being about that accurate."
    return (
        text + ": the gap is the price of not knowing which head is right (a policy sees only its"
        " heads' outputs)."
    )


def policy_comparison(dataset: str, main: Dict) -> List[str]:
    if "policy_choices" not in main:
        return []
    oracle = main["oracle"]
    lines = [
        "### Exit policies at equal accuracy",
        "",
        "Each policy's setting is the cheapest within 0.5 / 1 point of full depth on dev (its own "
        "grid, `sweep-thresholds --policy all`); the rows are the evaluation split. 'Oracle at "
        "that accuracy' is the least relative compute any exit policy over these heads needs for "
        "the policy's accuracy on the evaluation split (the library's `oracle_compute_at_accuracy`:"
        " the instances cheapest to get right exit at their earliest correct head, the rest at the "
        "first head); 'minus oracle' is the policy's compute minus that, and 'of the oracle's "
        "saving' is (1 - compute) / (1 - the oracle's compute). The oracle of the table above (every"
        " instance some head gets right at its earliest correct head) reaches "
        f"{pct(oracle['accuracy'])} at {oracle['relative_compute_unsolved_at_first']:.2f}.",
        "",
    ]
    lines += policy_table(main)
    findings = ranking_sentences(main, "0.01")
    if _chosen(main, "0.005") == _chosen(main, "0.01"):
        findings.append("Within 0.5 points on dev every policy chose the same setting.")
    else:
        findings += ranking_sentences(main, "0.005")
    reasons = reason_sentences(main) + noise_sentence(main) + beyond_ideal_sentence(main)
    lines += ["", " ".join(findings), "", " ".join(reasons), ""]
    lines += [f"![{title(dataset)}: every exit policy](results/{dataset}_policies.png)", ""]
    return lines
