import json
import math

import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.models.head_outputs import collect_head_outputs
from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)
from early_exit.sweep import (
    FULL_MODEL,
    SweepRow,
    check_thresholds,
    default_threshold_grid,
    head_probabilities,
    measure_inference_time,
    oracle_point,
    parse_thresholds,
    pick_timing_policies,
    policy_grid,
    recommend_threshold,
    single_head_points,
    sweep_grid,
    sweep_model,
    sweep_policies,
    sweep_table,
)
from early_exit.sweep.recommendation import choose_on_dev
from early_exit.sweep.reference_points import oracle_compute_at_accuracy
from tests.sweep.trained_models import TEXT_DATA, trained_archive

EXIT_LAYERS = [0, 1, 3]
FULL_DEPTH = 4


@pytest.fixture
def constructed():
    """Four instances, three heads (layers 0, 1 and 3 of a 4-layer encoder), two labels."""
    probs = torch.tensor(
        [
            [[0.9, 0.1], [0.95, 0.05], [0.99, 0.01]],  # label 0: head 0 is right
            [[0.6, 0.4], [0.2, 0.8], [0.1, 0.9]],  # label 1: head 1 is the first right one
            [[0.7, 0.3], [0.55, 0.45], [0.3, 0.7]],  # label 1: only head 2 is right
            [[0.8, 0.2], [0.9, 0.1], [0.6, 0.4]],  # label 1: no head is right
        ]
    )
    labels = torch.tensor([0, 1, 1, 1])
    return probs.log(), labels  # softmax(log p) = p


class TestThresholds:
    def test_default_grid_is_fine_and_has_points_near_one(self):
        grid = default_threshold_grid()
        assert grid[0] == 0.0 and grid[-1] == 1.0
        assert 0.07 in grid and 0.3 in grid  # no float noise such as 0.30000000000000004
        assert {0.995, 0.999}.issubset(grid)
        assert grid == sorted(set(grid))
        assert len(default_threshold_grid(0.25)) == 5 + 5

    def test_parse_sorts_and_deduplicates(self):
        assert parse_thresholds("0.9, 0.5,0.9,1") == [0.5, 0.9, 1.0]

    @pytest.mark.parametrize("text", ["0.5,1.2", "-0.1", "0.5,abc", ""])
    def test_bad_thresholds_are_configuration_errors(self, text):
        with pytest.raises(ConfigurationError, match=r"\[0, 1\]|no thresholds"):
            parse_thresholds(text)

    @pytest.mark.parametrize("step", [0, -0.1, 1.5])
    def test_bad_grid_step(self, step):
        with pytest.raises(ConfigurationError, match="grid step"):
            default_threshold_grid(step)

    def test_check_rejects_booleans(self):
        with pytest.raises(ConfigurationError):
            check_thresholds([True])


class TestSweepTable:
    def test_rows_on_constructed_probabilities(self, constructed):
        logits, labels = constructed
        rows = sweep_table(logits, labels, [0.0, 0.75, 0.85, 1.0], EXIT_LAYERS, FULL_DEPTH)
        by_threshold = {row.threshold: row for row in rows}

        assert by_threshold[0.0].accuracy == 0.25
        assert by_threshold[0.0].exit_fractions == {0: 1.0, 1: 0.0, 3: 0.0}
        assert by_threshold[0.0].relative_compute == 0.25

        # exits at heads 0, 1, 2, 0: layers 0, 1, 3, 0
        row = by_threshold[0.75]
        assert row.accuracy == 0.75
        assert row.exit_fractions == {0: 0.5, 1: 0.25, 3: 0.25}
        assert row.mean_exit_layer == pytest.approx(1.0)
        assert row.relative_compute == pytest.approx((1 + 2 + 4 + 1) / 16)

        # exits at heads 0, 2, 2, 1: layers 0, 3, 3, 1
        row = by_threshold[0.85]
        assert row.accuracy == 0.75
        assert row.exit_fractions == {0: 0.25, 1: 0.25, 3: 0.5}
        assert row.relative_compute == pytest.approx((1 + 4 + 4 + 2) / 16)

        assert by_threshold[1.0].exit_fractions == {0: 0.0, 1: 0.0, 3: 1.0}
        assert by_threshold[1.0].accuracy == 0.75
        assert by_threshold[1.0].relative_compute == 1.0

    def test_temperatures_change_exits(self, constructed):
        logits, labels = constructed
        sharp = sweep_table(logits, labels, [0.75], EXIT_LAYERS, FULL_DEPTH, [0.01, 0.01, 1.0])
        assert sharp[0].exit_fractions[0] == 1.0  # head 0 becomes fully confident everywhere

    def test_mismatched_inputs_are_clear_errors(self, constructed):
        logits, labels = constructed
        with pytest.raises(ConfigurationError, match="exit layers"):
            sweep_table(logits, labels, [0.5], [0, 3], FULL_DEPTH)
        with pytest.raises(ConfigurationError, match="gold label"):
            sweep_table(logits, labels[:-1], [0.5], EXIT_LAYERS, FULL_DEPTH)

    def test_without_labels_rows_have_compute_and_disagreement_but_no_accuracy(self, constructed):
        logits, labels = constructed
        thresholds = [0.0, 0.75, 1.0]
        labelled = sweep_table(logits, labels, thresholds, EXIT_LAYERS, FULL_DEPTH)
        unlabelled = sweep_table(logits, None, thresholds, EXIT_LAYERS, FULL_DEPTH)
        probs = head_probabilities(logits.float())
        full = probs[:, -1].argmax(-1)
        for with_labels, row in zip(labelled, unlabelled):
            assert row.accuracy is None and row.ece is None
            assert row.relative_compute == with_labels.relative_compute
            assert row.exit_fractions == with_labels.exit_fractions
            exits = row.policy.exit_heads(probs)
            early = probs[torch.arange(len(exits)), exits].argmax(-1)
            assert row.disagreement == pytest.approx((early != full).float().mean().item())
        assert unlabelled[-1].disagreement == 0.0  # the full model agrees with itself


class TestPolicySweep:
    def test_patience_rows_on_constructed_probabilities(self, constructed):
        logits, labels = constructed
        (row,) = sweep_policies(logits, labels, [PatiencePolicy(2)], EXIT_LAYERS, FULL_DEPTH)
        # predicted labels per head: 0 0 0 | 0 1 1 | 0 0 1 | 0 0 0: the same label at heads 0 and
        # 1 exits instances 0, 2 and 3 at head 1 (layer 1); instance 1 answers at the last head
        assert row.policy == PatiencePolicy(2) and row.threshold is None
        assert row.exit_fractions == {0: 0.0, 1: 0.75, 3: 0.25}
        assert row.accuracy == 0.5  # instances 0 (label 0 at head 1) and 1 (label 1 at head 2)
        assert row.relative_compute == pytest.approx((2 + 4 + 2 + 2) / 16)
        assert row.to_json()["policy"] == {"type": "patience", "patience": 2}

    def test_max_probability_rows_equal_the_threshold_table(self, constructed):
        logits, labels = constructed
        policies = [MaxProbabilityPolicy(threshold) for threshold in (0.0, 0.75, 1.0)]
        by_policy = sweep_policies(logits, labels, policies, EXIT_LAYERS, FULL_DEPTH)
        by_threshold = sweep_table(logits, labels, [0.0, 0.75, 1.0], EXIT_LAYERS, FULL_DEPTH)
        assert by_policy == by_threshold

    @pytest.mark.parametrize("name", ["max_probability", "entropy", "patience"])
    def test_each_grid_goes_from_the_first_head_to_the_full_model(self, constructed, name):
        logits, labels = constructed
        grid = policy_grid(name, len(EXIT_LAYERS))
        rows = sweep_policies(logits, labels, grid, EXIT_LAYERS, FULL_DEPTH)
        computes = [row.relative_compute for row in rows]
        assert computes == sorted(computes)  # from the most aggressive to the most conservative
        assert computes[0] == 0.25 and computes[-1] == 1.0
        assert grid[-1].never_exits_early(len(EXIT_LAYERS))

    def test_user_thresholds_per_policy(self):
        assert policy_grid("max_probability", 3, [0.9, 0.5]) == [
            MaxProbabilityPolicy(0.5),
            MaxProbabilityPolicy(0.9),
            MaxProbabilityPolicy(1.0),
        ]
        assert policy_grid("entropy", 3, [0.5, 0.1]) == [
            EntropyPolicy(0.5),
            EntropyPolicy(0.1),
            EntropyPolicy(0.0),
        ]
        assert policy_grid("confident_patience", 3, [0.9]) == [
            ConfidentPatiencePolicy(0.9, 1),
            ConfidentPatiencePolicy(0.9, 2),
        ]
        assert policy_grid("patience", 3, [0.9]) == policy_grid("patience", 3)
        assert [p.threshold for p in policy_grid("entropy", 3, grid_step=0.5)][:3] == [
            1,
            0.5,
            0.005,
        ]

    def test_all_sweeps_every_policy_type_in_order(self):
        names = [policy.registered_name() for policy in sweep_grid("all", 3)]
        assert list(dict.fromkeys(names)) == [
            "max_probability",
            "entropy",
            "patience",
            "confident_patience",
        ]

    @pytest.mark.parametrize(
        "policy, kwargs, message",
        [
            ("fastest", {}, "unknown exit policy 'fastest'; choose one of max_probability"),
            ("patience", {"thresholds": [0.5]}, "thresholds do not apply to patience"),
            ("confident_patience", {"grid_step": 0.1}, "grid step applies to"),
            ("entropy", {"thresholds": [1.5]}, r"\[0, 1\]"),
        ],
    )
    def test_bad_sweeps_are_configuration_errors(self, policy, kwargs, message):
        with pytest.raises(ConfigurationError, match=message):
            sweep_grid(policy, 3, **kwargs)


class TestReferencePoints:
    def test_oracle_on_constructed_probabilities(self, constructed):
        logits, labels = constructed
        oracle = oracle_point(logits, labels, EXIT_LAYERS, FULL_DEPTH)
        assert oracle.accuracy == 0.75
        assert oracle.unsolved_fraction == 0.25
        # earliest right heads: layers 0, 1, 3; the unsolved instance at layer 0 or at layer 3
        assert oracle.relative_compute_unsolved_at_first == pytest.approx((1 + 2 + 4 + 1) / 16)
        assert oracle.relative_compute_unsolved_at_last == pytest.approx((1 + 2 + 4 + 4) / 16)
        assert oracle.mean_exit_layer_unsolved_at_first == pytest.approx(1.0)
        assert oracle.mean_exit_layer_unsolved_at_last == pytest.approx(7 / 4)

    def test_single_heads(self, constructed):
        logits, labels = constructed
        points = single_head_points(logits, labels, EXIT_LAYERS, FULL_DEPTH)
        assert [point.layer for point in points] == EXIT_LAYERS
        assert [point.accuracy for point in points] == [0.25, 0.5, 0.75]
        assert [point.relative_compute for point in points] == [0.25, 0.5, 1.0]

    @pytest.mark.parametrize(
        "accuracy, layers_run",
        # earliest right heads cost 1, 2 and 4 layers; the others exit at the first head (1)
        [(0.0, 4), (0.25, 1 + 3), (0.5, 1 + 2 + 2), (0.75, 1 + 2 + 4 + 1)],
    )
    def test_oracle_compute_at_accuracy(self, constructed, accuracy, layers_run):
        logits, labels = constructed
        compute = oracle_compute_at_accuracy(logits, labels, EXIT_LAYERS, FULL_DEPTH, accuracy)
        assert compute == pytest.approx(layers_run / 4 / FULL_DEPTH)

    def test_oracle_compute_beyond_what_any_head_gets_right(self, constructed):
        logits, labels = constructed
        assert math.isnan(oracle_compute_at_accuracy(logits, labels, EXIT_LAYERS, FULL_DEPTH, 1.0))


def _row(threshold, accuracy, compute):
    return SweepRow(threshold, accuracy, 0.0, compute, 0.0, {})


class TestRecommendation:
    @pytest.fixture
    def rows(self):
        return [
            _row(0.0, 0.80, 0.25),
            _row(0.5, 0.85, 0.40),
            _row(0.7, 0.895, 0.55),
            _row(0.8, 0.90, 0.55),
            _row(0.9, 0.905, 0.70),
            _row(0.95, 0.90, 0.80),
            _row(1.0, 0.90, 1.00),
        ]

    @pytest.mark.parametrize(
        "drop, expected",
        [(0.0, 0.8), (0.01, 0.8), (0.05, 0.5), (0.1, 0.0)],  # 0.05: 0.85 is exactly on the floor
    )
    def test_cheapest_within_accuracy_drop(self, rows, drop, expected):
        recommendation = recommend_threshold(rows, 0.90, max_accuracy_drop=drop)
        assert recommendation.threshold == expected
        assert f"threshold {expected:g}" in recommendation.message

    @pytest.mark.parametrize(
        "budget, expected", [(0.25, 0.0), (0.5, 0.5), (0.6, 0.8), (0.75, 0.9), (1.0, 0.9)]
    )
    def test_most_accurate_within_compute_budget(self, rows, budget, expected):
        assert recommend_threshold(rows, 0.90, compute_budget=budget).threshold == expected

    def test_no_threshold_meets_the_goal(self, rows):
        recommendation = recommend_threshold(rows, 0.90, compute_budget=0.2)
        assert recommendation.threshold is None
        assert "cheapest" in recommendation.message
        recommendation = recommend_threshold(rows[:2], 0.90, max_accuracy_drop=0.01)
        assert recommendation.threshold is None

    def test_chosen_on_dev_reported_on_evaluation(self, rows):
        evaluation = [
            _row(row.threshold, row.accuracy - 0.01, row.relative_compute) for row in rows
        ]
        choices = choose_on_dev(rows, 0.90, evaluation, [0.01, 0.05])
        assert [choice.max_accuracy_drop for choice in choices] == [0.01, 0.05]
        assert [choice.policy for choice in choices] == [
            MaxProbabilityPolicy(t) for t in (0.8, 0.5)
        ]
        assert [choice.on_dev.row.accuracy for choice in choices] == [0.90, 0.85]
        assert [choice.on_eval.accuracy for choice in choices] == pytest.approx([0.89, 0.84])

    def test_nothing_chosen_on_dev_falls_back_to_the_full_model(self, rows):
        (choice,) = choose_on_dev(rows[:2], 0.90, rows, [0.01])
        assert choice.on_dev.row is None and choice.policy == FULL_MODEL
        assert choice.on_eval is rows[-1]
        with pytest.raises(ConfigurationError, match="same grid"):
            choose_on_dev(rows, 0.90, rows[:2], [0.01])

    def test_exactly_one_goal(self, rows):
        with pytest.raises(ConfigurationError, match="exactly one"):
            recommend_threshold(rows, 0.9)
        with pytest.raises(ConfigurationError, match="exactly one"):
            recommend_threshold(rows, 0.9, max_accuracy_drop=0.01, compute_budget=0.5)
        with pytest.raises(ConfigurationError, match="compute budget"):
            recommend_threshold(rows, 0.9, compute_budget=1.5)

    def test_timing_thresholds_spread_over_the_curve(self, rows):
        # compute targets 0.25, 0.525 and 0.8: thresholds 0.0, 0.8 (the higher of two at 0.55), 0.95
        def thresholds(count, include=()):
            include = [MaxProbabilityPolicy(value) for value in include]
            return [each.threshold for each in pick_timing_policies(rows, count, include)]

        assert thresholds(3) == [0.0, 0.8, 0.95, 1.0]
        assert thresholds(2, include=[0.5]) == [0.0, 0.5, 0.95, 1.0]  # in the table's order
        assert thresholds(0) == [1.0]


THREE_HEADS = {0: 0.0, 1: 0.0, 3: 1.0}  # exit fractions: what matters is the number of heads


class TestRecommendationAcrossPolicies:
    @pytest.fixture
    def rows(self):
        return [
            SweepRow(0.5, 0.85, 0.0, 0.40, 0.0, THREE_HEADS),
            SweepRow(0.8, 0.90, 0.0, 0.55, 0.0, THREE_HEADS),
            SweepRow(1.0, 0.90, 0.0, 1.00, 0.0, THREE_HEADS),
            SweepRow(0.3, 0.90, 0.0, 0.55, 0.0, THREE_HEADS, EntropyPolicy(0.3)),
            SweepRow(None, 0.89, 0.0, 0.45, 0.0, THREE_HEADS, PatiencePolicy(2)),
            SweepRow(None, 0.91, 0.0, 0.70, 0.0, THREE_HEADS, PatiencePolicy(3)),
        ]

    def test_the_cheapest_of_every_policy_is_named(self, rows):
        recommendation = recommend_threshold(rows, 0.90, max_accuracy_drop=0.01)
        assert recommendation.policy == PatiencePolicy(2) and recommendation.threshold is None
        assert recommendation.message.startswith("patience(patience=2): the cheapest")

    def test_ties_go_to_the_policy_listed_first(self, rows):
        # max_probability 0.8 and entropy 0.3 are equally accurate and cheap
        recommendation = recommend_threshold(rows, 0.90, max_accuracy_drop=0.0)
        assert recommendation.policy == MaxProbabilityPolicy(0.8)
        assert "max_probability(threshold=0.8)" in recommendation.message
        recommendation = recommend_threshold(rows[3:], 0.90, max_accuracy_drop=0.0)
        assert recommendation.policy == EntropyPolicy(0.3)

    def test_most_accurate_within_budget(self, rows):
        recommendation = recommend_threshold(rows, 0.90, compute_budget=0.75)
        assert recommendation.policy == PatiencePolicy(3)
        assert "patience(patience=3): the most accurate" in recommendation.message

    def test_timing_policies_spread_over_each_policy(self, rows):
        picked = pick_timing_policies(rows, count=2)
        assert picked == [
            MaxProbabilityPolicy(0.5),
            MaxProbabilityPolicy(0.8),
            EntropyPolicy(0.3),
            PatiencePolicy(2),
            FULL_MODEL,
        ]  # patience 3 of 3 heads and threshold 1.0 never exit early: the full model stands for them


class TestOnTrainedModel:
    @pytest.fixture(scope="class")
    def loaded(self, tmp_path_factory):
        archive = load_early_exit_archive(trained_archive(tmp_path_factory, "text"))
        instances = list(archive.validation_dataset_reader.read(str(TEXT_DATA)))
        return archive.model, instances

    def test_timing_restores_the_model_and_uses_the_full_model_as_reference(self, loaded):
        model, instances = loaded
        model.train()
        model.confidence_threshold = 0.3
        results = measure_inference_time(
            model, instances[:6], [0.0, 0.6], batch_size=4, repeats=2, progress=False
        )
        assert [result.threshold for result in results] == [0.0, 0.6, 1.0]
        full = results[-1]
        assert full.speedup == 1.0 and full.relative_compute == 1.0
        assert results[0].relative_compute == 0.25  # threshold 0: every instance exits at layer 0
        assert all(len(result.repeat_seconds) == 2 and result.seconds > 0 for result in results)
        assert model.training and model.confidence_threshold == 0.3 and not model.run_all_heads
        model.eval()
        model.confidence_threshold = 1.0

    def test_timing_sets_each_policy_and_restores_the_models(self, loaded):
        model, instances = loaded
        model.exit_policy = EntropyPolicy(0.2)
        results = measure_inference_time(
            model, instances[:6], [PatiencePolicy(1)], batch_size=4, repeats=1, progress=False
        )
        assert [result.policy for result in results] == [PatiencePolicy(1), FULL_MODEL]
        assert results[0].relative_compute == 0.25  # patience 1: every instance at the first head
        assert results[0].threshold is None and results[0].to_json()["policy"]["patience"] == 1
        assert model.exit_policy == EntropyPolicy(0.2)
        model.confidence_threshold = 1.0

    def test_sweep_of_all_policies(self, loaded):
        model, instances = loaded
        result = sweep_model(model, instances, policy="all", timing=False, compute_budget=0.6)
        assert result.policies == ["max_probability", "entropy", "patience", "confident_patience"]
        expected = recommend_threshold(result.rows, result.full_model.accuracy, compute_budget=0.6)
        assert result.recommendations[0].policy == expected.policy
        summary = json.loads(json.dumps(result.to_json()))
        assert summary["policy"] == "all"
        assert {row["policy"]["type"] for row in summary["rows"]} == set(result.policies)
        assert summary["recommendations"][0]["description"] == expected.policy.describe()

    def test_sweep_of_given_head_outputs_runs_no_head(self, loaded, monkeypatch):
        model, instances = loaded
        outputs = collect_head_outputs(model, instances)
        expected = sweep_model(model, instances, policy="all", timing=False).to_json()

        def forbidden(*args, **kwargs):
            raise AssertionError("the heads were run again")

        monkeypatch.setattr(model, "forward", forbidden)
        given = sweep_model(model, instances, policy="all", timing=False, head_outputs=outputs)
        assert given.to_json() == expected
        with pytest.raises(ConfigurationError, match="head outputs of"):
            sweep_model(model, instances[:-1], timing=False, head_outputs=outputs)

    def test_sweep_of_another_policy_keeps_the_full_model_as_reference(self, loaded):
        model, instances = loaded
        result = sweep_model(model, instances, policy="patience", timing=False)
        assert [row.policy for row in result.rows] == [PatiencePolicy(p) for p in (1, 2, 3)]
        assert result.full_model.policy == FULL_MODEL and result.full_model.relative_compute == 1
        assert result.rows[-1].accuracy == result.full_model.accuracy  # patience 3: no early exit

    @pytest.mark.parametrize("carry_rows", [True, False])
    def test_timing_streams_batches_as_allennlp_predict_does(self, loaded, carry_rows):
        model, instances = loaded
        streams = []
        forward_stream = model.forward_stream

        def counting(batches, *args, **kwargs):
            streams.append(len(batches))
            return forward_stream(batches, *args, **kwargs)

        model.forward_stream = counting
        try:
            results = {
                size: measure_inference_time(
                    model,
                    instances[:8],
                    [0.6],
                    batch_size=size,
                    repeats=1,
                    warmup=False,
                    progress=False,
                    carry_rows=carry_rows,
                )
                for size in (1, 4)
            }
        finally:
            del model.forward_stream
        # One stream of the two batches of 4 per timed threshold (0.6 and 1.0), none at size 1.
        assert streams == ([2, 2] if carry_rows else [])
        assert results[1][0].relative_compute == pytest.approx(results[4][0].relative_compute)

    def test_sweep_model_recommends_from_its_own_table(self, loaded):
        model, instances = loaded
        result = sweep_model(
            model,
            instances,
            compute_budget=0.6,
            timing_batch_sizes=(1, 4),
            repeats=1,
            timing_instances=4,
        )
        assert result.rows[-1].threshold == 1.0 and result.full_model == result.rows[-1]
        expected = recommend_threshold(result.rows, result.full_model.accuracy, compute_budget=0.6)
        assert result.recommendations[0].threshold == expected.threshold
        assert {timing.batch_size for timing in result.timings} == {1, 4}
        assert expected.threshold is None or expected.threshold in {
            timing.threshold for timing in result.timings
        }
        json.dumps(result.to_json())
