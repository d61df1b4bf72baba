"""
The `compute_budget` exit policy on the tiny trained model: the decisions simulated on every
head's outputs (`stream_exit_heads`) are the model's, from Python and through `allennlp predict`;
output lines carry the threshold; `allennlp evaluate` reports the budget's metrics; bad settings
are one error line.
"""

import json
import logging

import pytest
import torch
from allennlp.models.archival import load_archive
from allennlp.predictors import Predictor

from early_exit.commands.calibrate import calibrate_archive
from early_exit.models.head_outputs import collect_head_outputs
from early_exit.modules.exit_policies import (
    ComputeBudgetPolicy,
    scaled_probabilities,
    stream_exit_heads,
)
from early_exit.modules.exit_policies.compute_budget import MARGIN
from tests import run_allennlp
from tests.predictors.early_exit_classifier_test import _lines
from tests.sweep.trained_models import TEXT_DATA, TEXT_JSONL, trained_archive

POLICY = {"type": "compute_budget", "budget": 0.5, "window": 8, "start": 0.6}
BATCH_SIZE = 4


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "text")


@pytest.fixture(scope="module")
def simulated(archive):
    """The exits and thresholds of the 48 lines in batches of 4, simulated on every head."""
    predictor = Predictor.from_path(archive, "early_exit_classifier")
    model = predictor._model
    outputs = collect_head_outputs(model, _instances(predictor))
    probs = scaled_probabilities(outputs.logits, model.serving_temperatures)
    policy = ComputeBudgetPolicy(0.5, window=8, start=0.6)
    heads, thresholds = stream_exit_heads(policy, probs, model.engine.head_compute, BATCH_SIZE)
    assert len(set(heads.tolist())) > 1 and len(set(thresholds)) > 1  # mixed exits, it moved
    return heads.tolist(), thresholds


def _instances(predictor):
    instances = [predictor._json_to_instance(record) for record in _lines(TEXT_JSONL)]
    for instance in instances:
        predictor._dataset_reader.apply_token_indexers(instance)
    return instances


def test_collecting_every_head_leaves_an_adapting_policy_s_controller_as_it_was(archive):
    predictor = Predictor.from_path(archive, "early_exit_classifier")
    model, instances = predictor._model, _instances(predictor)
    fixed = collect_head_outputs(model, instances)
    policy = ComputeBudgetPolicy(0.5, window=8, start=0.6)
    model.exit_policy = policy
    threshold = policy.threshold
    outputs = collect_head_outputs(model, instances, batch_size=BATCH_SIZE)
    assert model.exit_policy is policy and policy.threshold == threshold
    assert policy.metrics()["threshold_min"] == policy.metrics()["threshold_max"] == threshold
    assert torch.allclose(outputs.logits, fixed.logits, atol=1e-5)  # batches padded otherwise


def test_without_start_the_policy_starts_where_the_archive_s_dev_curve_reaches_the_budget(
    archive, tmp_path
):
    calibrated = tmp_path / "calibrated.tar.gz"
    calibrate_archive(archive, TEXT_DATA, calibrated)
    curve = load_archive(str(calibrated)).model.compute_curves["max_probability"]
    target = 0.5 - MARGIN  # where the controller aims, under the budget
    expected = max((compute, threshold) for threshold, compute in curve if compute <= target)[1]
    policy = {"type": "compute_budget", "budget": 0.5, "window": 8}
    predictor = Predictor.from_path(calibrated, "early_exit_classifier", exit_policy=policy)
    first = predictor.predict_batch_json(_lines(TEXT_JSONL)[:BATCH_SIZE])
    assert 0.0 < expected < 1.0
    assert first[0]["exit_threshold"] == pytest.approx(expected, abs=1e-9)


def test_without_start_or_curve_the_policy_starts_cheapest_and_says_so(archive, caplog):
    policy = {"type": "compute_budget", "budget": 0.5, "window": 8}
    predictor = Predictor.from_path(archive, "early_exit_classifier", exit_policy=policy)
    lines = _lines(TEXT_JSONL)
    with caplog.at_level(logging.WARNING):
        outputs = predictor.predict_batch_json(lines[:4]) + predictor.predict_batch_json(lines[4:8])
    assert outputs[0]["exit_threshold"] == 0.0
    said = [record for record in caplog.records if "no dev compute curve" in record.getMessage()]
    assert len(said) == 1


def test_the_simulation_takes_the_model_s_decisions(archive, simulated):
    predictor = Predictor.from_path(archive, "early_exit_classifier", exit_policy=dict(POLICY))
    lines = _lines(TEXT_JSONL)
    outputs = []
    for start in range(0, len(lines), BATCH_SIZE):
        outputs += predictor.predict_batch_json(lines[start : start + BATCH_SIZE])
    assert [output["exit_head"] for output in outputs] == simulated[0]
    assert [output["exit_threshold"] for output in outputs] == simulated[1]
    metrics = predictor._model.get_metrics()
    assert "exit_policy_compute_budget_budget" not in metrics  # the predictor's own policy


def test_allennlp_predict_lines_carry_the_threshold_they_were_decided_with(
    archive, simulated, tmp_path
):
    input_file = tmp_path / "in.jsonl"
    input_file.write_text("".join(json.dumps(line) + "\n" for line in _lines(TEXT_JSONL)))
    output_file = tmp_path / "out.jsonl"
    arguments = ["--predictor-args", json.dumps({"exit_policy": POLICY})]
    arguments += ["--batch-size", str(BATCH_SIZE), "--silent"]
    result = run_allennlp("predict", archive, input_file, "--output-file", output_file, *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [json.loads(line) for line in output_file.read_text().splitlines()]
    assert [output["exit_head"] for output in outputs] == simulated[0]
    assert [output["exit_threshold"] for output in outputs] == simulated[1]


def test_allennlp_evaluate_reports_the_budget_s_metrics(archive, tmp_path):
    output_file = tmp_path / "metrics.json"
    overrides = json.dumps({"model.exit_policy": {**POLICY, "window": 4}})
    result = run_allennlp(
        "evaluate", archive, TEXT_DATA, "-o", overrides, "--output-file", output_file
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output_file.read_text())
    prefix = "exit_policy_compute_budget_"
    assert metrics[prefix + "budget"] == 0.5 and metrics[prefix + "window"] == 4
    low, high = metrics[prefix + "threshold_min"], metrics[prefix + "threshold_max"]
    assert 0.0 <= low <= 0.6 <= high <= 1.0  # from the start, then moved
    assert metrics[prefix + "max_window_compute"] >= 0.25  # at least the first head's compute
    assert 0.25 <= metrics["relative_compute"] <= 1.0


@pytest.mark.parametrize(
    "command, setting, message",
    [
        ("predict", {"budget": 0.2}, "budget 0.2 is below the relative compute of the model's"),
        ("predict", {"budget": 0.5, "window": 0}, "window must be an integer >= 1, got 0"),
        ("evaluate", {"budget": 1.5}, "budget must be in (0, 1], got 1.5"),
        ("evaluate", {"budget": 0.5, "policy": "patience"}, "compute_budget cannot adapt patience"),
    ],
)
def test_a_bad_setting_is_one_error_line(archive, tmp_path, command, setting, message):
    policy = {"type": "compute_budget", **setting}
    if command == "predict":
        option = ["--predictor-args", json.dumps({"exit_policy": policy})]
        data = TEXT_JSONL
    else:
        option, data = ["-o", json.dumps({"model.exit_policy": policy})], TEXT_DATA
    output = ["--output-file", str(tmp_path / "out")]
    result = run_allennlp(command, archive, data, *option, *output)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
