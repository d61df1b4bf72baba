"""
The report's sections on exit policies and guarantees: the policy comparison at equal accuracy with
its findings in words, the plain and guaranteed thresholds, and the repeated-split experiment.
"""

import json
from typing import Dict, List

from early_exit.sweep.risk_control import minimum_instances
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
from scripts.results.guarantees import PLAIN, RULES
from scripts.results.settings import DELTA, DROPS, EPSILONS, MAIN, NUM_SPLITS, SEED, drop_key

RULE_NAMES = {
    PLAIN: "plain (`--risk none`)",
    "accuracy": "guaranteed, accuracy risk",
    "consistency": "guaranteed, consistency risk",
}


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
    """Which policy is cheapest within `drop` on the evaluation split, and which kept the promise."""
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


def guarantee_table(main: Dict) -> List[str]:
    if "guarantees" not in main:
        return []
    guarantees = main["guarantees"]
    needed = " / ".join(f"{minimum_instances(e, guarantees['delta']):,}" for e in EPSILONS)
    lines = [
        "### Plain and guaranteed thresholds",
        "",
        f"Confidence thresholds chosen on dev ({guarantees['dev_size']:,} instances) for a promise "
        "of at most epsilon accuracy points lost. The plain rule (`--risk none`: the cheapest "
        "threshold within epsilon on dev) promises nothing beyond dev. The guaranteed rules (Learn "
        f"then Test, `--risk accuracy` / `--risk consistency`, delta {guarantees['delta']:g}) "
        f"certify with probability {1 - guarantees['delta']:g} that on new data from the same "
        "distribution the fraction of inputs the full model gets right and the early exit wrong "
        "(accuracy risk, needs labels), or of predictions that differ from the full model's "
        "(consistency risk, needs none), is at most epsilon; either bounds the accuracy drop. Even "
        f"with no loss at all, {needed} instances are needed to certify anything at epsilon "
        "0.5 / 1 / 2 points; with fewer the guaranteed rules keep the full model (threshold 1). "
        "The guarantee assumes the candidates were fixed in advance (the sweep's grid, walked from "
        "threshold 1 down) and the instances were not used to fit the model: here the temperatures "
        "were fitted on this same dev split by the training callback, so on dev it is not exact "
        "(the repeated splits below use evaluation data only).",
        "",
        "| epsilon | rule | threshold | dev: points lost, compute | evaluation: points lost, "
        "compute | "
        "within epsilon on evaluation |",
        "| ---: | --- | ---: | --- | --- | --- |",
    ]
    for record in guarantees["records"]:
        dev, evaluation = record["dev"], record["eval"]
        kept = evaluation["drop"] <= record["epsilon"] + 1e-9
        lines.append(
            f"| {100 * record['epsilon']:g} pt | {RULE_NAMES[record['rule']]} | "
            f"{record['policy']['threshold']:g} | {pct(dev['drop'])}, "
            f"{dev['relative_compute']:.2f} | {pct(evaluation['drop'])}, "
            f"{evaluation['relative_compute']:.2f} | {'yes' if kept else '**no**'} |"
        )
    return lines + [""]


def split_rows(result: Dict) -> List[str]:
    splits = result["models"][MAIN]["splits"]
    halves = " / ".join(f"{size:,}" for size in splits["sizes"])
    bootstrap = {(b["epsilon"], b["rule"]): b for b in splits.get("bootstrap", [])}
    lines = []
    for entry in splits["summary"]:
        claimed = "-" if entry["rule"] == PLAIN else f"<= {splits['delta'] * entry['splits']:g}"
        true_risk = bootstrap.get((entry["epsilon"], entry["rule"]), {}).get("risk_broken", "-")
        lines.append(
            f"| {title(result['dataset'])} | {halves} | {100 * entry['epsilon']:g} pt | "
            f"{RULE_NAMES[entry['rule']]} | {entry['broken']} | {entry['risk_broken']} | "
            f"{true_risk} | {claimed} | {entry['full_model']} | {pct(entry['mean_drop'])} | "
            f"{entry['mean_compute']:.2f} |"
        )
    return lines


def split_verdict(results: List[Dict]) -> str:
    """
    The most broken promises of each rule in any cell, and whether a guaranteed rule broke its
    promise more often than its delta: its accuracy drop on the other half, or its true risk in the
    bootstrap (its own risk on a finite half is a noisy measurement, see the caption).
    """
    worst: Dict[str, int] = {rule: 0 for rule in RULES}
    allowed = 0.0
    for result in results:
        splits = result["models"][MAIN]["splits"]
        allowed = splits["delta"] * splits["num_splits"]
        for entry in splits["summary"]:
            worst[entry["rule"]] = max(worst[entry["rule"]], entry["broken"])
        for entry in splits.get("bootstrap", []):
            if entry["rule"] != PLAIN:
                worst[entry["rule"]] = max(worst[entry["rule"]], entry["risk_broken"])
    over = [rule for rule in RULES if rule != PLAIN and worst[rule] > allowed]
    text = (
        f"Most broken promises in a cell of {NUM_SPLITS}: plain {worst[PLAIN]} (accuracy drop on "
        f"the other half); guaranteed accuracy {worst['accuracy']}, guaranteed consistency "
        f"{worst['consistency']} (accuracy drop on the other half, or true risk in the "
        f"bootstrap), against the at most {allowed:g} they claim."
    )
    if over:
        text += " **A guaranteed rule broke its promise more often than its delta claims.**"
    return " ".join([text, *own_risk_sentences(results, allowed), *too_few_sentences(results)])


def own_risk_sentences(results: List[Dict], allowed: float) -> List[str]:
    """The cells where a guaranteed rule's own risk on the other half exceeded epsilon too often."""
    cells = []
    for result in results:
        splits = result["models"][MAIN]["splits"]
        bootstrap = {(b["epsilon"], b["rule"]): b for b in splits.get("bootstrap", [])}
        for entry in splits["summary"]:
            if entry["rule"] != PLAIN and entry["risk_broken"] > allowed:
                true = bootstrap.get((entry["epsilon"], entry["rule"]), {}).get("risk_broken")
                cells.append(
                    f"{title(result['dataset'])}, {entry['rule']} risk at "
                    f"{100 * entry['epsilon']:g} pt ({entry['risk_broken']} on the half, {true} "
                    "in the bootstrap)"
                )
    if not cells:
        return []
    return [
        "A guaranteed rule's own risk measured on the other half exceeded epsilon more than "
        f"{allowed:g} times in: {'; '.join(cells)}. That is what the sampling noise of a finite "
        "half does to a true risk just below epsilon; the bootstrap, which measures the true "
        "risk, is the test of the promise."
    ]


def too_few_sentences(results: List[Dict]) -> List[str]:
    """The datasets whose halves are too small to certify some epsilon at all."""
    sentences = []
    for result in results:
        splits = result["models"][MAIN]["splits"]
        size, delta = min(splits["sizes"]), splits["delta"]
        short = [e for e in EPSILONS if minimum_instances(e, delta) > size]
        if short:
            points_text = " or ".join(f"{100 * e:g}" for e in short)
            needed = " / ".join(f"{minimum_instances(e, delta):,}" for e in short)
            sentences.append(
                f"{title(result['dataset'])}'s halves of {size:,} cannot certify {points_text} "
                f"point(s) ({needed} needed even with no loss): there the guaranteed rules keep "
                "the full model."
            )
    return sentences


def split_experiment(results: List[Dict]) -> List[str]:
    results = [r for r in results if "splits" in r["models"].get(MAIN, {})]
    if not results:
        return []
    lines = [
        "## Repeated splits: how often each threshold rule broke its promise",
        "",
        "For each dataset the evaluation split (data neither the model nor its temperatures saw) "
        f"is cut {NUM_SPLITS} times into seeded random halves (the library's `split_in_two`, "
        f"seeds {SEED} to {SEED + NUM_SPLITS - 1}); on each, every rule chooses a confidence "
        "threshold on the first half and is measured on the second. 'Broke' counts the splits "
        "where the second half's accuracy drop exceeded epsilon; 'own risk over' those where the "
        "rule's own risk did (the drop for the plain rule, the fraction of lost predictions for "
        "the accuracy risk, of disagreements with the full model for the consistency risk). The "
        "guaranteed rules claim that their true risk (on unlimited new data) exceeds epsilon with "
        f"probability at most {DELTA:g}; a half is finite, so a rule whose true risk sits just "
        "below epsilon still shows over it on some splits. 'True risk over' removes that noise "
        "(bootstrap): the evaluation split is taken as the population, each rule chooses on as "
        "many draws with replacement from it as a half has (seeds as above), and its risk on the "
        "whole split is its true risk. The plain rule claims nothing.",
        "",
        "| data | halves | epsilon | rule | broke (drop > epsilon) | own risk over epsilon | "
        "bootstrap: true risk over epsilon | claimed | full model chosen | mean points lost | "
        "mean compute |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        lines += split_rows(result)
    return lines + ["", split_verdict(results), ""]
