"""
The report's sections on thresholds users can trust: the plain and guaranteed thresholds of each
dataset, and the repeated-split experiment with its bootstrap.
"""

from typing import Dict, List

from scipy import stats

from early_exit.sweep.risk_control import minimum_instances
from scripts.results.formatting import pct, title
from scripts.results.guarantees import PLAIN, RULES
from scripts.results.settings import DELTA, EPSILONS, MAIN, NUM_SPLITS, SEED

# A count of broken promises is flagged only when a rule that breaks its promise exactly `delta` of
# the time would reach it with probability below this: 100 splits at delta 0.05 give 6 or more with
# probability 0.38, so a count just above 5 is sampling noise, not a broken guarantee.
FLAG_PROBABILITY = 0.01

RULE_NAMES = {
    PLAIN: "plain (`--risk none`)",
    "accuracy": "guaranteed, accuracy risk",
    "consistency": "guaranteed, consistency risk",
}


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
    text = (
        f"Most broken promises in a cell of {NUM_SPLITS}: plain {worst[PLAIN]} (accuracy drop on "
        f"the other half); guaranteed accuracy {worst['accuracy']}, guaranteed consistency "
        f"{worst['consistency']} (accuracy drop on the other half, or true risk in the "
        f"bootstrap), against the at most {allowed:g} they claim."
    )
    most = max(worst[rule] for rule in RULES if rule != PLAIN)
    if most > allowed:
        chance = binomial_tail(most, NUM_SPLITS, allowed / NUM_SPLITS)
        text += (
            f" A rule that breaks its promise exactly {allowed:g} times in {NUM_SPLITS} on average "
            f"reaches {most} or more with probability {chance:.2g}"
        )
        if chance < FLAG_PROBABILITY:
            text += ": **a guaranteed rule broke its promise more often than its delta claims.**"
        else:
            text += ": sampling noise of the count, not a broken guarantee."
    return " ".join([text, *own_risk_sentences(results, allowed), *too_few_sentences(results)])


def binomial_tail(count: int, trials: int, probability: float) -> float:
    """P(X >= count) for X ~ Binomial(trials, probability) (scipy's, as `risk_control` uses)."""
    return float(stats.binom.sf(count - 1, trials, probability))


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
