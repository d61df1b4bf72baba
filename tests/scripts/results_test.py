"""
The pure parts of `scripts/results` (the package behind `scripts/reproduce_results.py`): choosing
each policy's setting, the plain and guaranteed rules on constructed head outputs, the counting of
the repeated-split experiment, and the report written from a small synthetic results dict.
"""

import copy

import pytest
import torch

from early_exit.models.head_outputs import HeadOutputs
from early_exit.modules.exit_policies import MaxProbabilityPolicy
from early_exit.sweep import FULL_MODEL, SweepRow
from scripts.results import guarantees, policies, report, report_guarantees, report_sections
from scripts.results.guarantees import PLAIN, Heads, choose, repeated_splits, summarize_splits
from scripts.results.settings import MAIN


def constructed_heads(num_instances: int, seed: int = 0) -> Heads:
    """Three heads, two labels: the last always right and sure, the first right on about 85%."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (num_instances,), generator=generator)
    logits = torch.zeros(num_instances, 3, 2)
    rows = torch.arange(num_instances)
    for head, right in enumerate((0.85, 0.92, 1.0)):
        correct = torch.rand(num_instances, generator=generator) < right
        predicted = torch.where(correct, labels, 1 - labels)
        margin = 0.2 + 4 * torch.rand(num_instances, generator=generator)
        logits[rows, head, predicted] = margin
    return Heads(logits, labels, [1.0, 1.0, 1.0], [0, 1, 2], 3)


class TestRules:
    def test_each_rule_keeps_its_promise_on_the_data_it_chose_on(self):
        heads = constructed_heads(2000)
        chosen = choose(heads, [0.01, 0.02], 0.05)
        assert set(chosen) == {(e, r) for e in (0.01, 0.02) for r in guarantees.RULES}
        for (epsilon, rule), recommendation in chosen.items():
            assert heads.risk(recommendation.policy, rule) <= epsilon + 1e-9
        # Certified risks are tested at level delta: the guaranteed picks are no cheaper than plain.
        for epsilon in (0.01, 0.02):
            plain = chosen[epsilon, PLAIN].row.relative_compute
            assert chosen[epsilon, "accuracy"].row.relative_compute >= plain - 1e-9

    def test_too_few_instances_keep_the_full_model(self):
        heads = constructed_heads(100)  # 299 are needed at epsilon 0.01 even with no loss
        chosen = choose(heads, [0.01], 0.05)
        assert chosen[0.01, "accuracy"].policy == FULL_MODEL
        assert chosen[0.01, "consistency"].policy == FULL_MODEL

    def test_repeated_splits_are_seeded_and_complete(self):
        heads = constructed_heads(600)
        records = repeated_splits(heads, [0.01, 0.02], 0.05, num_splits=3, seed=5)
        assert len(records) == 3 * 2 * len(guarantees.RULES)
        assert records == repeated_splits(heads, [0.01, 0.02], 0.05, num_splits=3, seed=5)
        assert {record["split"] for record in records} == {0, 1, 2}
        for record in records:
            assert 0 < record["relative_compute"] <= 1
            if not record["exits_early"]:
                assert record["drop"] == 0 and record["relative_compute"] == 1


def test_bootstrap_chooses_on_draws_and_measures_on_the_whole_population():
    draws, everything = guarantees.bootstrap(101, seed=3)
    assert draws.shape == (51,) and 0 <= int(draws.min()) and int(draws.max()) < 101
    assert torch.equal(everything, torch.arange(101))
    assert torch.equal(draws, guarantees.bootstrap(101, seed=3)[0])
    heads = constructed_heads(400)
    # 200 draws cannot certify 1 point (299 needed): the guaranteed rules keep the full model,
    # measured on every instance, so at the population's own full-model accuracy.
    records = repeated_splits(heads, [0.01], 0.05, 2, 0, guarantees.bootstrap)
    guaranteed = [record for record in records if record["rule"] != PLAIN]
    assert len(guaranteed) == 4 and not any(record["exits_early"] for record in guaranteed)
    assert {record["accuracy"] for record in guaranteed} == {heads.row(FULL_MODEL).accuracy}


def _record(epsilon, rule, drop, risk=None, exits_early=True, compute=0.5):
    return {
        "epsilon": epsilon,
        "rule": rule,
        "drop": drop,
        "risk": drop if risk is None else risk,
        "exits_early": exits_early,
        "relative_compute": compute,
    }


class TestSummarizeSplits:
    def test_counts_per_epsilon_and_rule(self):
        records = [
            _record(0.01, PLAIN, 0.02),
            _record(0.01, PLAIN, 0.01 + 1e-12),  # at epsilon up to float noise: kept
            _record(0.01, PLAIN, -0.01),
            _record(0.01, "accuracy", 0.0, risk=0.0, exits_early=False, compute=1.0),
            _record(0.01, "accuracy", 0.015, risk=0.005),
            _record(0.02, PLAIN, 0.03),
        ]
        summary = {(s["epsilon"], s["rule"]): s for s in summarize_splits(records)}
        assert list(summary) == [(0.01, PLAIN), (0.01, "accuracy"), (0.02, PLAIN)]
        plain = summary[0.01, PLAIN]
        assert (plain["splits"], plain["broken"], plain["risk_broken"]) == (3, 1, 1)
        assert plain["mean_drop"] == pytest.approx((0.02 + 0.01 - 0.01) / 3)
        accuracy = summary[0.01, "accuracy"]
        assert (accuracy["broken"], accuracy["risk_broken"], accuracy["full_model"]) == (1, 0, 1)
        assert accuracy["mean_compute"] == pytest.approx(0.75)
        assert summary[0.02, PLAIN]["broken"] == 1


class TestChoosePerPolicy:
    def test_the_cheapest_of_each_type_within_each_drop_and_the_oracle_below_it(self):
        dev, evaluation = constructed_heads(500, seed=1), constructed_heads(400, seed=2)
        dev_rows, eval_rows = dev.sweep("all"), evaluation.sweep("all")
        full = next(row for row in dev_rows if row.policy == FULL_MODEL).accuracy
        choices = policies.choose_per_policy(dev_rows, full, eval_rows, [0.005, 0.02])
        assert [c["choice"].max_accuracy_drop for c in choices] == [0.005] * 4 + [0.02] * 4
        for record in choices:
            choice = record["choice"]
            own = policies.of_type(dev_rows, record["policy_type"])
            within = [r for r in own if r.accuracy >= full - choice.max_accuracy_drop - 1e-9]
            assert choice.on_dev.row in within
            assert choice.on_dev.row.relative_compute == min(r.relative_compute for r in within)
            assert choice.on_eval in eval_rows and choice.on_eval.policy == choice.policy
        outputs = HeadOutputs(evaluation.logits, evaluation.labels)
        for record in policies.choice_records(choices, outputs, [0, 1, 2], 3):
            # No policy over these heads reaches that accuracy for less than the oracle.
            assert record["oracle_compute"] <= record["eval"]["relative_compute"] + 1e-9


def _row(policy, accuracy, compute, first_exit):
    row = SweepRow(None, accuracy, 0.0, compute, 0.0, {0: first_exit, 5: 1 - first_exit}, policy)
    return row.to_json()


def _timing(policy, batch_size, speedup, compute, seconds=(1.0, 1.0)):
    return {
        "policy": policy,
        "batch_size": batch_size,
        "speedup": speedup,
        "relative_compute": compute,
        "repeat_seconds": list(seconds),
    }


def synthetic_main():
    """A small results entry of an early-exit model, as `evaluation.evaluate_main` writes it."""
    threshold = {"type": "max_probability", "threshold": 0.8}
    patience = {"type": "patience", "patience": 2}
    choices = []
    for drop in ("0.005", "0.01"):
        for policy, compute, accuracy in ((threshold, 0.4, 0.86), (patience, 0.5, 0.84)):
            row = _row(MaxProbabilityPolicy(0.8), accuracy, compute, 0.3)
            choices.append(
                {"policy_type": policy["type"], "drop": drop, "policy": policy, "dev": row,
                 "eval": row, "oracle_compute": 0.2}
            )  # fmt: skip
    full = _row(FULL_MODEL, 0.86, 1.0, 0.0)
    head = {"layer": 0, "accuracy": 0.8, "relative_compute": 1 / 6}
    guarantee = {"delta": 0.05, "dev_size": 400, "records": []}
    for epsilon in (0.005, 0.01, 0.02):
        for rule, drop in ((PLAIN, 0.03), ("accuracy", 0.0), ("consistency", 0.0)):
            outcome = {"drop": drop, "relative_compute": 0.5, "accuracy": 0.8, "risk": drop}
            guarantee["records"].append(
                {"epsilon": epsilon, "rule": rule, "policy": threshold, "dev": outcome,
                 "eval": outcome}
            )  # fmt: skip
    summary = summarize_splits(
        [_record(0.01, PLAIN, 0.02)] * 30
        + [_record(0.01, PLAIN, 0.0)] * 70
        + [_record(0.01, "accuracy", 0.02)] * 9
        + [_record(0.01, "accuracy", 0.0)] * 91
    )
    return {
        "exit_layers": [0, 1, 2, 3, 4, 5],
        "num_labels": 2,
        "temperatures": [1.0] * 6,
        "encoder_lr": 1e-4,
        "distillation_temperature": 2.0,
        "eval_full": full,
        "chosen_thresholds": {"0.005": 0.8, "0.01": 0.8},
        "eval_at_chosen": {"0.005": choices[0]["eval"], "0.01": choices[2]["eval"]},
        "single_heads": [head],
        "oracle": {
            "accuracy": 0.9,
            "relative_compute_unsolved_at_first": 0.2,
            "relative_compute_unsolved_at_last": 0.3,
        },
        "policy_choices": choices,
        "timings": [
            _timing(threshold, 1, 2.5, 0.4),
            _timing(threshold, 32, 2.25, 0.4),
            _timing({"type": "max_probability", "threshold": 1.0}, 1, 1.0, 1.0, [3.0, 4.5]),
        ],
        "guarantees": guarantee,
        "splits": {
            "pool": "evaluation split",
            "num_splits": 100,
            "sizes": [200, 200],
            "delta": 0.05,
            "summary": summary,
            "bootstrap": summarize_splits([_record(0.01, "accuracy", 0.0)] * 100),
        },
    }


class TestReport:
    @pytest.fixture
    def results(self):
        return [{"dataset": "sst2", "models": {MAIN: synthetic_main()}}]

    def test_policy_comparison_names_the_cheapest_and_its_speed(self, results):
        text = report.write_report(results, "a test machine", 60.0, trained=False)
        assert "## SST-2" in text and "### Exit policies at equal accuracy" in text
        assert "Cheapest within 1 point on dev: max_probability threshold 0.8" in text
        assert "measured 2.50x at batch 1, 2.25x at batch 32" in text
        assert "patience 2 lets no instance leave before its head 2 (layer 1)" in text
        assert "Within 0.5 points on dev every policy chose the same setting." in text
        assert "With two labels" in text
        # patience lost 2 points against full depth: beyond both allowed drops.
        assert "Lost more than the allowed 1 point on the evaluation split: patience (-2.0)" in text
        assert "results/sst2_policies.png" in text and "machine: a test machine" in text.lower()

    def test_a_patience_that_never_exits_early_is_named_so(self, results):
        main = results[0]["models"][MAIN]
        for choice in main["policy_choices"]:
            if choice["policy_type"] == "patience":
                choice["policy"] = {"type": "patience", "patience": 6}
        text = " ".join(report_sections.reason_sentences(main))
        assert "patience 6 never exits early (6 heads)" in text
        assert "lets no instance leave" not in text

    def test_policies_with_the_same_exits_tie_and_show_the_timing_noise(self, results):
        main = results[0]["models"][MAIN]
        threshold = main["policy_choices"][0]
        for choice in main["policy_choices"]:
            if choice["policy_type"] == "patience":
                choice["eval"] = threshold["eval"]  # the same exits as the threshold's
        main["timings"] += [
            _timing({"type": "patience", "patience": 2}, 1, 3.0, 0.4),
            _timing({"type": "patience", "patience": 2}, 32, 2.0, 0.4),
        ]
        findings = " ".join(report_sections.ranking_sentences(main, "0.01"))
        assert "; patience ties with it." in findings
        assert report_sections.cheapest_policy(main, "0.01") == "max_probability / patience: 0.40"
        noise = " ".join(report_sections.noise_sentence(main))
        assert "measured at 2.50x to 3.00x at batch 1 and 2.00x to 2.25x at batch 32" in noise
        trust = " ".join(report_sections.beyond_ideal_sentence(main))
        assert "The full model's timed repeats took 3.00 to 4.50 s at batch 1." in trust
        # 3.0x at a relative compute of 0.4 is beyond the ideal 2.5x; 2.5x is not.
        assert "patience 2 at batch 1, 3.00x against 2.5x" in trust
        assert "threshold 0.8 at batch 1" not in trust

    def test_guarantees_and_splits(self, results):
        text = report.write_report(results, "m", 60.0)
        assert text.count("| plain (`--risk none`) | 0.8 |") == 3
        assert "| **no** |" in text  # the plain rule lost 3 points on evaluation
        assert "598 / 299 / 149 instances" in text
        assert "| SST-2 | 200 / 200 | 1 pt | guaranteed, accuracy risk | 9 | 9 | 0 | <= 5 |" in text
        # 9 of 100 against at most 5: a count a rule true to its delta reaches 6% of the time.
        assert "reaches 9 or more with probability 0.063: sampling noise of the count" in text
        assert "more often than its delta" not in text
        assert "SST-2's halves of 200 cannot certify 0.5 or 1 point(s)" in text
        assert "SST-2, accuracy risk at 1 pt (9 on the half, 0 in the bootstrap)" in text

    def test_a_count_too_high_for_its_delta_is_flagged(self, results):
        splits = results[0]["models"][MAIN]["splits"]
        guaranteed = next(entry for entry in splits["summary"] if entry["rule"] != PLAIN)
        guaranteed["broken"] = 15
        verdict = report_guarantees.split_verdict(results)
        assert "reaches 15 or more with probability 0.0001" in verdict
        assert (
            "**a guaranteed rule broke its promise more often than its delta claims.**" in verdict
        )

    def test_binomial_tail(self):
        assert report_guarantees.binomial_tail(0, 100, 0.05) == pytest.approx(1.0)
        assert report_guarantees.binomial_tail(6, 100, 0.05) == pytest.approx(0.384, abs=1e-3)
        assert report_guarantees.binomial_tail(3, 3, 0.5) == pytest.approx(0.125)

    def test_a_guaranteed_rule_within_delta_is_not_flagged(self, results):
        main = results[0]["models"][MAIN]
        main["splits"]["summary"] = [s for s in main["splits"]["summary"] if s["rule"] == PLAIN]
        assert "more often than" not in report_guarantees.split_experiment(results)[-2]

    def test_missing_variants_and_readme_summary(self, results):
        text = report.write_report(results, "m", 60.0)
        assert "Not trained for this report: baseline, early_exit_no_head_lr" in text
        summary = report.readme_summary(results + copy.deepcopy(results))
        assert summary.count("| SST-2 (") == 2
        assert "| max_probability: 0.40 |" in summary
