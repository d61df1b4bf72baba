import json

import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.sweep import (
    SweepRow,
    check_thresholds,
    default_threshold_grid,
    measure_inference_time,
    oracle_point,
    parse_thresholds,
    pick_timing_thresholds,
    recommend_threshold,
    single_head_points,
    sweep_model,
    sweep_table,
)
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
            sweep_table(logits, None, [0.5], EXIT_LAYERS, FULL_DEPTH)


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

    def test_exactly_one_goal(self, rows):
        with pytest.raises(ConfigurationError, match="exactly one"):
            recommend_threshold(rows, 0.9)
        with pytest.raises(ConfigurationError, match="exactly one"):
            recommend_threshold(rows, 0.9, max_accuracy_drop=0.01, compute_budget=0.5)
        with pytest.raises(ConfigurationError, match="compute budget"):
            recommend_threshold(rows, 0.9, compute_budget=1.5)

    def test_timing_thresholds_spread_over_the_curve(self, rows):
        # compute targets 0.25, 0.525 and 0.8: thresholds 0.0, 0.8 (the higher of two at 0.55), 0.95
        assert pick_timing_thresholds(rows, count=3) == [0.0, 0.8, 0.95, 1.0]
        assert pick_timing_thresholds(rows, count=2, include=[0.5]) == [0.0, 0.5, 0.95, 1.0]
        assert pick_timing_thresholds(rows, count=0) == [1.0]


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
