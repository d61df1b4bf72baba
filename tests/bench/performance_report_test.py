"""
The benchmark's report, Markdown file and plots from a small synthetic results dict (nothing is
timed here): every part has its section, the targets are judged, and only the generated part of
docs/performance.md is replaced.
"""

import types

import pytest

from bench.performance.plots import plots
from bench.performance.report import BEGIN_MARKER, END_MARKER, report, write_markdown
from bench.performance.settings import LARGE_BATCH, PLANS

THRESHOLDS = [1.0, 0.9]


def model_time_rows():
    rows = []
    for batch_size, batching in PLANS:
        for threshold in THRESHOLDS:
            full = threshold == 1.0
            rows.append(
                {
                    "batch_size": batch_size,
                    "batching": batching,
                    "forward_passes": 3 if batch_size == LARGE_BATCH else 96,
                    "padded_tokens_per_token": 1.25,
                    "threshold": threshold,
                    "ms_per_instance": 4.0 if full else 2.0,
                    "relative_compute": 1.0 if full else 0.5,
                    "ideal_speedup": 1.0 if full else 2.0,
                    "speedup": 1.0 if full else 1.9,
                    "efficiency": 1.0 if full else 0.95,
                    "token_weighted_ideal_speedup": 1.0 if full else 1.8,
                    "timed_parts": 1,
                    "overhead_vs_transformers": 0.8,
                    "transformers_ms_per_instance": 5.0,
                    "repeat_seconds": [0.4],
                }
            )
    return rows


def e2e_runs():
    return [
        {
            "batch_size": batch_size,
            "threshold": threshold,
            "instances": 64,
            "distinct_instances": 16,
            "seconds": 9.0,
            "ms_per_instance_with_startup": 140.0,
            "ms_per_instance": 5.0 if threshold == 1.0 else 3.0,
            "speedup": 1.0 if threshold == 1.0 else 1.5,
            "model_ms_per_instance": 4.0,
            "model_speedup": 1.0 if threshold == 1.0 else 1.8,
            "speedup_with_startup": 1.0,
            "relative_compute": 1.0 if threshold == 1.0 else 0.5,
        }
        for batch_size in (1, LARGE_BATCH)
        for threshold in THRESHOLDS
    ]


@pytest.fixture
def result():
    chosen = {
        "threshold": 0.9,
        "dev_accuracy": 0.9,
        "eval_accuracy": 0.89,
        "eval_relative_compute": 0.5,
        "oracle_relative_compute": 0.25,
    }
    return {
        "name": "tiny",
        "archive": "model.tar.gz",
        "dev": "dev.tsv",
        "eval": "eval.tsv",
        "encoder": "tiny_bert",
        "mean_tokens_eval": 12.5,
        "transformers_class": "BertForSequenceClassification",
        "attention": {"early_exit": "eager", "transformers": "sdpa"},
        "model_time_instances": 96,
        "accuracy": {
            "exit_layers": [0, 1, 3],
            "full_depth": 4,
            "dev_instances": 100,
            "eval_instances": 100,
            "eval_full_accuracy": 0.9,
            "chosen": {"0.005": dict(chosen), "0.01": dict(chosen)},
            "oracle": {"accuracy": 0.95, "relative_compute": 0.3, "unsolved_fraction": 0.05},
            "single_heads": [{"layer": 0, "accuracy": 0.8, "relative_compute": 0.25}],
            "curve": [
                {"threshold": 0.9, "accuracy": 0.89, "relative_compute": 0.5,
                 "oracle_relative_compute": 0.25},
                {"threshold": 1.0, "accuracy": 0.9, "relative_compute": 1.0,
                 "oracle_relative_compute": float("nan")},
            ],  # fmt: skip
        },
        "model_time": model_time_rows(),
        "e2e": {
            "startup_seconds": 6.5,
            "runs": e2e_runs(),
            "lines_differing_between_batch_sizes": {"1": 0, "0.9": 0},
        },
        "memory": [
            {"model": "transformers", "threshold": None, "instances": 64, "rss_before_mib": 500.0,
             "peak_rss_mib": 600.0, "inference_increase_mib": 100.0, "process_max_rss_mib": 700.0},
            {"model": "early exit", "threshold": 0.9, "instances": 64, "rss_before_mib": 500.0,
             "peak_rss_mib": 550.0, "inference_increase_mib": None, "process_max_rss_mib": 700.0},
        ],  # fmt: skip
    }


MACHINE = {
    "cpu": "a CPU",
    "cores": 2,
    "usable_cores": 2,
    "torch_threads": 2,
    "torch_interop_threads": 2,
    "python": "3.11",
    "torch": "2",
    "transformers": "4",
    "allennlp": "2.10.1",
    "commit": "abc1234",
    "date": "today",
    "load_average_at_start": [0.1],
    "load_average_at_end": [0.2],
}
ARGS = types.SimpleNamespace(
    repeats=5, time_instances=96, e2e_repeats=3, e2e_instances=64, memory_instances=64
)


def test_report_has_every_section_and_judges_the_targets(result):
    text = report([result], MACHINE, ARGS, 120.0, "performance")
    for heading in (
        "## Machine and settings",
        "## Targets",
        "## tiny",
        "### Thresholds, accuracy and the oracle (evaluation file)",
        "### Model time",
        "### End to end (`allennlp predict`)",
        "### Peak memory at batch size 32",
        "## Plots",
    ):
        assert f"\n{heading}\n" in f"\n{text}\n"
    assert ".venv/bin/python -m bench.performance" in text
    assert (
        "| tiny | overhead at threshold 1.0, batch size 1, packed | 0.800x | <= 1.10x | **met** |"
        in text
    )
    assert "95% (1.90x of 2.00x)" in text  # model speedup against the ideal, met at 85% and 90%
    assert "| 83% (1.50x of 1.80x) | >= 75% | **met** |" in text  # end to end against the model
    assert (
        "| within 0.5 pt on dev | 0.9 | 0.9000 | 0.8900 | -1.00 pt | 0.500 | 0.250 | 2.00x (+0.250) |"
        in text
    )
    assert "(its 16 records, repeated)" in text
    assert "![speedup](performance/speedup.png)" in text
    assert "| early exit | 0.9 | 500 | 550 | - | 700 |" in text


def test_only_the_generated_part_is_replaced(tmp_path):
    path = tmp_path / "performance.md"
    write_markdown(path, "first")
    assert path.read_text().startswith(f"# Performance\n\n{BEGIN_MARKER}\n\nfirst\n\n{END_MARKER}")
    path.write_text(path.read_text() + "\nkept by hand\n")
    write_markdown(path, "second")
    text = path.read_text()
    assert "second" in text and "first" not in text and text.endswith("kept by hand\n")
    path.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        write_markdown(path, "third")


def test_plots_are_written(result, tmp_path):
    plots([result, dict(result, name="other")], tmp_path / "plots")
    names = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert names == ["accuracy_compute.png", "speedup.png", "time_per_instance.png"]
