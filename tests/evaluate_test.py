"""
`allennlp evaluate` reports what early exit does at any threshold or exit policy given by override,
names the policy in its metrics, and the sweep takes exactly the same decisions.
"""

import json

import pytest
from allennlp.commands.evaluate import evaluate_from_archive

from early_exit.common.cli_errors import UserError
from early_exit.dataset_readers import DataFileNotFoundError, DataFormatError, NoInstancesError
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.models.head_outputs import collect_head_outputs
from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)
from early_exit.sweep import head_probabilities, single_head_points, sweep_policies, sweep_table
from tests import run_allennlp
from tests.sweep.trained_models import TEXT_DATA, mixed_thresholds, trained_archive

EXIT_LAYERS = [0, 1, 3]
EXIT_METRICS = ["accuracy", "ece", "mean_exit_layer", "relative_compute"] + [
    f"exit_fraction_layer_{layer}" for layer in EXIT_LAYERS
]


@pytest.fixture(scope="module")
def head_outputs(tmp_path_factory):
    """The trained archive, its model and every head's outputs on the data."""
    archive_file = trained_archive(tmp_path_factory, "text")
    archive = load_early_exit_archive(archive_file)
    instances = list(archive.validation_dataset_reader.read(str(TEXT_DATA)))
    return archive_file, archive.model, collect_head_outputs(archive.model, instances)


@pytest.fixture(scope="module")
def swept(head_outputs):
    """The trained archive, thresholds (0, some with mixed exits, 1) and the sweep's rows."""
    archive_file, model, outputs = head_outputs
    mixed = mixed_thresholds(head_probabilities(outputs.logits, model.temperatures), count=3)
    assert len(mixed) >= 2, "the tiny model should exit at different heads at some thresholds"
    thresholds = [0.0] + mixed + [1.0]
    rows = sweep_table(
        outputs.logits,
        outputs.labels,
        thresholds,
        EXIT_LAYERS,
        model.full_depth,
        model.temperatures,
    )
    heads = single_head_points(
        outputs.logits, outputs.labels, EXIT_LAYERS, model.full_depth, model.temperatures
    )
    return archive_file, rows, heads


def _evaluate(archive_file, threshold=None, overrides=None):
    overrides = overrides or {"model.confidence_threshold": threshold}
    return evaluate_from_archive(
        str(archive_file), str(TEXT_DATA), cmd_overrides=json.dumps(overrides)
    )


def _assert_row_equals_metrics(row, metrics):
    assert set(EXIT_METRICS) <= set(metrics)
    assert metrics["accuracy"] == row.accuracy, row.policy
    for layer in EXIT_LAYERS:
        assert metrics[f"exit_fraction_layer_{layer}"] == row.exit_fractions[layer], row.policy
    assert metrics["mean_exit_layer"] == row.mean_exit_layer
    assert metrics["relative_compute"] == row.relative_compute
    assert metrics["ece"] == pytest.approx(row.ece, abs=1e-5)


@pytest.fixture(scope="module")
def policies_swept(head_outputs):
    """The trained archive and the sweep's rows at a few settings of every policy."""
    archive_file, model, outputs = head_outputs
    head_probs = head_probabilities(outputs.logits, model.temperatures)
    confidences = mixed_thresholds(head_probs, count=2)
    entropies = mixed_thresholds(head_probs, count=2, policy_type=EntropyPolicy)
    assert len(confidences) == 2 and len(entropies) == 2
    policies = [MaxProbabilityPolicy(threshold) for threshold in confidences]
    policies += [EntropyPolicy(threshold) for threshold in entropies]
    policies += [PatiencePolicy(patience) for patience in range(1, len(EXIT_LAYERS) + 1)]
    policies += [ConfidentPatiencePolicy(confidences[0], patience) for patience in (1, 2)]
    rows = sweep_policies(
        outputs.logits, outputs.labels, policies, EXIT_LAYERS, model.full_depth, model.temperatures
    )
    return archive_file, rows


def test_sweep_equals_allennlp_evaluate_for_every_policy(policies_swept):
    archive_file, rows = policies_swept
    mixed = set()
    for index, row in enumerate(rows):
        policy = row.policy.to_json()
        # the override in allennlp's dot syntax and nested, in turn
        overrides = (
            {"model.exit_policy": policy} if index % 2 else {"model": {"exit_policy": policy}}
        )
        metrics = _evaluate(archive_file, overrides=overrides)
        _assert_row_equals_metrics(row, metrics)
        name = row.policy.registered_name()
        named = {key for key in metrics if key.startswith("exit_policy_")}
        assert named == {f"exit_policy_{name}_{key}" for key in row.policy.parameters()}
        for key, value in row.policy.parameters().items():
            assert metrics[f"exit_policy_{name}_{key}"] == value
        if sum(fraction > 0 for fraction in row.exit_fractions.values()) > 1:
            mixed.add(name)
    assert mixed == {"max_probability", "entropy", "patience", "confident_patience"}


def test_sweep_equals_allennlp_evaluate_at_every_threshold(swept):
    archive_file, rows, heads = swept
    mixed_rows = 0
    for row in rows:
        metrics = _evaluate(archive_file, row.threshold)
        _assert_row_equals_metrics(row, metrics)
        assert metrics["exit_policy_max_probability_threshold"] == row.threshold
        mixed_rows += sum(fraction > 0 for fraction in row.exit_fractions.values()) > 1
        if row.threshold == 1.0:
            # every head runs at 1.0, so evaluate also reports each head alone
            for head in heads:
                assert metrics[f"accuracy_layer_{head.layer}"] == head.accuracy
    assert mixed_rows >= 2
    assert rows[0].exit_fractions[0] == 1.0 and rows[-1].exit_fractions[3] == 1.0


def test_evaluate_command_prints_and_writes_the_exit_metrics(swept, tmp_path):
    archive_file, rows, _ = swept
    row = rows[1]  # a threshold with mixed exits
    output_file = tmp_path / "metrics.json"
    result = run_allennlp(
        "evaluate",
        archive_file,
        TEXT_DATA,
        "--output-file",
        output_file,
        "-o",  # the nested form; the test above uses the dot syntax
        json.dumps({"model": {"confidence_threshold": row.threshold}}),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output_file.read_text())
    assert set(EXIT_METRICS) <= set(metrics)
    assert metrics["accuracy"] == row.accuracy
    assert metrics["relative_compute"] == row.relative_compute
    printed = result.stdout + result.stderr
    assert "Metrics:" in printed
    for name in EXIT_METRICS:
        assert f'"{name}"' in printed


@pytest.mark.parametrize(
    "content, error_class, message",
    [
        ("", NoInstancesError, "{path} holds no instances (it is empty or has only blank lines)"),
        (" \n\t\n", NoInstancesError, "{path} holds no instances"),
        ("label\ttext\npositive\tgood\n", DataFormatError, "{path}, line 1: a header line"),
        (None, DataFileNotFoundError, "{path}: data file not found"),
        ("directory", DataFileNotFoundError, "{path}: a directory, not a data file"),
    ],
    ids=["empty", "blank", "header", "missing", "directory"],
)
def test_evaluate_refuses_data_without_instances_or_with_a_header(
    swept, tmp_path, content, error_class, message
):
    """Never an accuracy of 0.0 on nothing, nor a header as an example (one error line each)."""
    path = tmp_path / "data.tsv"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(error_class) as info:
        evaluate_from_archive(str(swept[0]), str(path))
    assert isinstance(info.value, UserError)
    assert str(info.value).startswith(message.format(path=path))
