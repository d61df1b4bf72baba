import argparse
import csv
import errno
import json
import os
import re

import pytest

from early_exit.commands.sweep_thresholds import TIMING_OPTIONS, SweepThresholds
from early_exit.sweep import default_threshold_grid
from tests import FIXTURES_ROOT, run_allennlp
from tests.sweep.trained_models import TEXT_DATA, other_model_archive, trained_archive

FAST_TIMING = ["--repeats", "1", "--timing-instances", "6", "--timing-batch-size", "4"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "text")


def _sweep(*argv):
    """Runs `allennlp sweep-thresholds` in this process."""
    parser = argparse.ArgumentParser()
    SweepThresholds().add_subparser(parser.add_subparsers())
    args = parser.parse_args(["sweep-thresholds", *map(str, argv)])
    return args.func(args)


def test_writes_csv_markdown_png_json_and_prints_the_table(archive, tmp_path, capsys):
    output_dir = tmp_path / "sweep"
    result = _sweep(
        archive, TEXT_DATA, "--output-dir", output_dir, "--compute-budget", 0.6, *FAST_TIMING
    )
    printed = capsys.readouterr().out

    grid = default_threshold_grid()
    with open(output_dir / "sweep.csv") as csv_file:
        records = list(csv.DictReader(csv_file))
    assert [float(record["threshold"]) for record in records] == grid
    for column in [
        "accuracy",
        "ece",
        "relative_compute",
        "mean_exit_layer",
        "exit_fraction_layer_0",
        "exit_fraction_layer_1",
        "exit_fraction_layer_3",
        "seconds_per_instance_bs1",
        "speedup_bs1",
        "speedup_bs4",
    ]:
        assert column in records[0]
    assert float(records[-1]["speedup_bs1"]) == 1.0  # the full model is the reference

    summary = json.loads((output_dir / "sweep.json").read_text())
    assert len(summary["rows"]) == len(grid)
    assert summary["exit_layers"] == [0, 1, 3] and summary["full_depth"] == 4
    assert [goal["goal"] for goal in summary["recommendations"]] == ["compute_budget"]
    assert summary["recommendations"][0]["threshold"] == result.recommendations[0].threshold
    assert {point["layer"] for point in summary["single_heads"]} == {0, 1, 3}
    assert "relative_compute_unsolved_at_last" in summary["oracle"]
    assert {timing["batch_size"] for timing in summary["timings"]} == {1, 4}

    assert (output_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (output_dir / "sweep.md").read_text()
    assert "# Confidence threshold sweep" in markdown and "## Reference points" in markdown
    assert markdown.count("\n| ") > len(grid)  # the full table

    assert "Recommended threshold" in printed
    assert "| threshold | accuracy |" in printed
    assert f"of {len(grid)} thresholds" in printed  # a compact subset on the console
    assert "oracle, unsolved at first head" in printed and "layer 1 alone" in printed
    assert "sweep.png" in printed


def _run_command(archive, output_dir, *argv):
    """Runs `allennlp sweep-thresholds` in a subprocess, without timing."""
    return run_allennlp(
        "sweep-thresholds", archive, TEXT_DATA, "--output-dir", output_dir, *argv, "--no-timing"
    )


def test_command_line_with_explicit_thresholds_and_no_timing(archive, tmp_path):
    output_dir = tmp_path / "cli"
    result = _run_command(archive, output_dir, "--thresholds", "0.5,0.9")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output_dir / "sweep.json").read_text())
    assert [row["threshold"] for row in summary["rows"]] == [0.5, 0.9, 1.0]
    assert summary["timings"] == []
    assert "Recommended threshold" in result.stdout  # the default goal: at most 0.01 lower
    assert "| 0.9 |" in result.stdout


def test_all_policies_in_one_table_and_plot(archive, tmp_path, capsys):
    output_dir = tmp_path / "all"
    result = _sweep(
        archive,
        TEXT_DATA,
        *("--output-dir", output_dir, "--policy", "all", "--no-timing", "--risk", "none"),
    )
    printed = capsys.readouterr().out
    names = ["max_probability", "entropy", "patience", "confident_patience"]

    with open(output_dir / "sweep.csv") as csv_file:
        records = list(csv.DictReader(csv_file))
    assert list(dict.fromkeys(record["policy"] for record in records)) == names
    assert {"threshold", "patience"} <= set(records[0])
    assert [int(r["patience"]) for r in records if r["policy"] == "patience"] == [1, 2, 3]

    summary = json.loads((output_dir / "sweep.json").read_text())
    assert summary["policy"] == "all" and summary["policies"] == names
    assert len(summary["rows"]) == len(records)
    assert all(row["policy"]["type"] in names for row in summary["rows"])
    (recommendation,) = summary["recommendations"]
    chosen = result.recommendations[0].policy
    assert recommendation["policy"] == chosen.to_json()
    assert recommendation["description"] == chosen.describe()

    assert (output_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (output_dir / "sweep.md").read_text()
    assert "# Exit policy sweep" in markdown and "## All rows" in markdown
    assert f"Recommended {chosen.describe()}: the cheapest" in printed
    assert "| policy | threshold | patience | accuracy |" in printed
    assert "oracle, unsolved at first head" in printed


def test_the_guarantee_walks_every_policy_type_of_an_all_sweep(archive, tmp_path):
    result = _sweep(archive, TEXT_DATA, "--output-dir", tmp_path, "--policy", "all", "--no-timing")
    guaranteed, plain = result.recommendations
    assert guaranteed.guarantee is not None and plain.guarantee is None
    # 16 instances certify no early exit at any policy: the full model, and the message says why
    assert guaranteed.row.relative_compute == 1.0
    assert "cannot certify" in guaranteed.message


def test_one_policy_with_its_own_thresholds(archive, tmp_path):
    output_dir = tmp_path / "entropy"
    result = _run_command(archive, output_dir, "--policy", "entropy", "--thresholds", "0.5,0.9")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output_dir / "sweep.json").read_text())
    assert summary["policy"] == "entropy"
    assert [row["policy"] for row in summary["rows"]] == [
        {"type": "entropy", "threshold": threshold} for threshold in (0.9, 0.5, 0.0)
    ]
    assert summary["full_model"]["policy"] == {"type": "max_probability", "threshold": 1.0}
    assert "Recommended entropy(threshold=" in result.stdout
    assert "Exit policy: entropy" in result.stdout


def test_command_line_error_has_no_traceback(tmp_path):
    result = run_allennlp(
        "sweep-thresholds", tmp_path / "missing.tar.gz", TEXT_DATA, "--output-dir", tmp_path
    )
    assert result.returncode == 1
    assert "error: archive not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def bad_inputs(archive, tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad_inputs")
    unlabelled = directory / "unlabelled.jsonl"
    unlabelled.write_text('{"text": "no label here"}\n')
    unknown = directory / "unknown.tsv"
    unknown.write_text("positive\tgood\n\nneutral\tmeh\n")
    blank = directory / "blank.tsv"
    blank.write_text(" \n")
    truncated = directory / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:20000])
    return {
        "archive": archive,
        "unknown": unknown,
        "blank": blank,
        "truncated": truncated,
        "other": other_model_archive(directory / "other"),
        "unlabelled": unlabelled,
        "missing": directory / "missing",
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}.tar.gz", "{data}"], "archive not found"),
        (["{archive}", "{missing}.tsv"], "data file not found"),
        (["{other}", "{data}"], "not an early_exit_classifier"),
        (["{archive}", "{unknown}"], r"does not know: neutral \(first on line 3\); it knows"),
        (["{archive}", "{blank}"], r"blank.tsv holds no instances"),
        (["{truncated}", "{data}"], "truncated.tar.gz: not a readable model archive"),
        (["{archive}", "{unlabelled}", "--risk", "none"], 'missing key "label"'),
        (["{archive}", "{unlabelled}", "--risk", "accuracy"], "accuracy risk needs labelled"),
        (["{archive}", "{unlabelled}", "--compute-budget", "0.5"], "compute budget .* labels"),
        (["{archive}", "{data}", "--delta", "0"], r"--delta must be in \(0, 1\)"),
        (["{archive}", "{data}", "--delta", "1.5"], r"--delta must be in \(0, 1\)"),
        (["{archive}", "{data}", "--max-accuracy-drop", "0"], r"--max-accuracy-drop must be in"),
        (["{archive}", "{data}", "--thresholds", "0.5,1.2"], r"\[0, 1\]"),
        (["{archive}", "{data}", "--thresholds", "0.5,high"], "comma-separated numbers"),
        (["{archive}", "{data}", "--grid-step", "0"], "grid step"),
        (["{archive}", "{data}", "--timing-thresholds", "2"], r"timing thresholds must be in"),
        (["{archive}", "{data}", "--compute-budget", "1.5"], "compute budget"),
        (["{archive}", "{data}", "--max-accuracy-drop", "-0.1"], "accuracy drop"),
        (["{archive}", "{data}", "--repeats", "0"], "repeats"),
        (["{archive}", "{data}", "--policy", "fastest"], "unknown exit policy 'fastest'"),
        (["{missing}.tar.gz", "{data}", "--policy", "fastest"], "unknown exit policy"),
        (["{archive}", "{data}", "--policy", "patience", "--thresholds", "0.5"], "do not apply"),
        (["{archive}", "{data}", "--policy", "all", "--timing-thresholds", "0.5"], "apply to a"),
        # Options that would do nothing.
        (
            ["{archive}", "{data}", "--risk", "none", "--delta", "0.1"],
            "--delta applies only with a",
        ),
        (
            ["{archive}", "{data}", "--no-timing", "--repeats", "5"],
            "--repeats applies only without --no-timing",
        ),
        (
            [
                "{archive}",
                "{data}",
                "--no-timing",
                "--timing-instances",
                "9",
                "--timing-batch-size",
                "2",
            ],
            "--timing-batch-size and --timing-instances apply only without --no-timing",
        ),
    ],
)
def test_bad_inputs_are_one_error_line(bad_inputs, tmp_path, capsys, argv, message):
    paths = {**bad_inputs, "data": TEXT_DATA}
    argv = [arg.format(**paths) for arg in argv] + ["--output-dir", tmp_path / "out"]
    if not set(argv) & set(TIMING_OPTIONS):  # checked before any timing, and refused with it
        argv.append("--no-timing")
    with pytest.raises(SystemExit) as exit_info:
        _sweep(*argv)
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    last_line = stderr.strip().splitlines()[-1]  # progress bars may come before it
    assert last_line.startswith("error: ")
    assert sum(line.startswith("error: ") for line in stderr.splitlines()) == 1
    assert re.search(message, last_line), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_loading(monkeypatch):
    """Makes running the sweep fail the test: the output checks must come before any work."""

    def fail(*args, **kwargs):
        raise AssertionError("the sweep ran before the outputs were checked")

    monkeypatch.setattr("early_exit.commands.sweep_thresholds.run_sweep", fail)


@pytest.mark.parametrize(
    "output_dir, message",
    [
        ("{directory}", "sweep.csv is the data file"),
        ("{directory}/sweep.csv", "is a file, not a folder"),
    ],
)
def test_outputs_that_would_overwrite_the_data_are_refused_before_the_sweep(
    archive, tmp_path, capsys, no_loading, output_dir, message
):
    data = tmp_path / "sweep.csv"  # labelled data that happens to have an output's name
    data.write_bytes(TEXT_DATA.read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        _sweep(archive, data, "--output-dir", output_dir.format(directory=tmp_path), "--no-timing")
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert data.read_bytes() == TEXT_DATA.read_bytes()


def test_a_failure_while_writing_leaves_the_earlier_files(archive, tmp_path, monkeypatch, capsys):
    output_dir = tmp_path / "sweep"
    output_dir.mkdir()
    for name in ("sweep.csv", "sweep.md", "sweep.png", "sweep.json"):
        (output_dir / name).write_text(f"earlier {name}")

    def plot_sweep(result, path):
        with open(path, "wb") as half:
            half.write(b"\x89PNG")
        raise OSError("No space left on device")

    monkeypatch.setattr("early_exit.sweep.report.plot_sweep", plot_sweep)
    with pytest.raises(SystemExit):
        _sweep(archive, TEXT_DATA, "--output-dir", output_dir, "--thresholds", "0.5", "--no-timing")
    assert "error: No space left on device" in capsys.readouterr().err
    for name in ("sweep.csv", "sweep.md", "sweep.png", "sweep.json"):
        assert (output_dir / name).read_text() == f"earlier {name}"
    assert sorted(path.name for path in output_dir.iterdir()) == sorted(
        ["sweep.csv", "sweep.md", "sweep.png", "sweep.json"]
    )


def test_labelled_data_gets_the_guaranteed_threshold_first_and_the_plain_pick_with_its_bound(
    archive, tmp_path, capsys
):
    result = _sweep(archive, TEXT_DATA, "--output-dir", tmp_path, "--no-timing")
    printed = capsys.readouterr().out
    guaranteed, plain = result.recommendations
    assert guaranteed.guarantee.risk == "accuracy" and plain.guarantee is None
    assert guaranteed.guarantee.num_instances == 16
    # 16 instances cannot certify 1 point at probability 0.95: the full model, and why.
    assert guaranteed.threshold == 1.0
    assert "16 inputs cannot certify any early exit" in guaranteed.message
    assert "not guaranteed on new data" in plain.message
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert summary["recommendations"][0]["guarantee"]["delta"] == 0.05
    assert summary["recommendations"][1]["guarantee"] is None
    assert "Recommended threshold 1 (the full model" in printed
    assert "Plain pick (no guarantee): threshold" in printed


def test_data_without_labels_gets_the_consistency_guarantee(archive, tmp_path, capsys):
    sentences = FIXTURES_ROOT / "predictors" / "sentences.jsonl"  # the predictor's input lines
    argv = ["--output-dir", tmp_path, "--max-accuracy-drop", "0.3", "--delta", "0.2"]
    result = _sweep(archive, sentences, *argv, "--thresholds", "0.4,0.6,0.9")
    printed = capsys.readouterr().out
    guarantee = result.guarantee
    assert guarantee.risk == "consistency" and guarantee.num_instances == 5
    assert [test.policy.threshold for test in guarantee.tests][:2] == [1.0, 0.9]
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert summary["labels"] is False
    assert [row["policy"]["threshold"] for row in summary["rows"]] == [1.0, 0.9, 0.6, 0.4]
    assert all("accuracy" not in row for row in summary["rows"])
    assert summary["guarantee"]["message"] == guarantee.message
    assert "labels not used" in printed and guarantee.message in printed
    with open(tmp_path / "sweep.csv") as csv_file:
        assert "accuracy" not in csv_file.readline()


def test_a_sweep_under_a_layer_runner_names_it_and_uses_its_temperatures(archive, tmp_path):
    runner = {"type": "onnxruntime", "precision": "int8"}
    int8 = [0.5, 0.7, 0.9]
    overrides = json.dumps(
        {"model.layer_runner": runner, "model.runner_temperatures": {"onnxruntime_int8": int8}}
    )
    _sweep(
        archive,
        TEXT_DATA,
        "--output-dir",
        tmp_path / "int8",
        "--risk",
        "none",
        "--no-timing",
        "-o",
        overrides,
    )
    page = (tmp_path / "int8" / "sweep.md").read_text()
    assert f"temperatures {int8} (layer runner onnxruntime int8)" in page
    _sweep(archive, TEXT_DATA, "--output-dir", tmp_path / "torch", "--risk", "none", "--no-timing")
    assert "layer runner" not in (tmp_path / "torch" / "sweep.md").read_text()


def test_a_full_disk_names_the_file_it_could_not_write(archive, tmp_path, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", full_disk)
    output_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        _sweep(archive, TEXT_DATA, "--output-dir", output_dir, "--no-timing")
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: cannot write {output_dir / 'sweep.png'}: No space left on device"
    assert not output_dir.exists() or not os.listdir(output_dir)  # none of the four, no temporary
