"""The plots of docs/performance.md: speedups, accuracy against compute, time per instance."""

from pathlib import Path
from typing import Any, Callable, Dict, List

from bench.performance.settings import CARRIED, LARGE_BATCH, PACKED, PLANS
from bench.performance.tables import e2e_run, model_row, thresholds_of


def plots(results: List[Dict[str, Any]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _figure(results, directory / "speedup.png", speedup_axis)
    _figure(results, directory / "accuracy_compute.png", accuracy_compute_axis)
    _figure(results, directory / "time_per_instance.png", time_per_instance_axis)


def _figure(results, path: Path, draw: Callable[[Any, Dict[str, Any]], None]) -> None:
    """A panel per dataset, each drawn by `draw(axis, result)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for axis, result in zip(axes[0], results):
        draw(axis, result)
        axis.set_title(result["name"])
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def speedup_axis(axis, result: Dict[str, Any]) -> None:
    """Speedup: ideal, model time (packed, carried), end to end."""
    labels = []
    series: Dict[str, List[float]] = {
        "ideal": [],
        "model (packed)": [],
        "model, carried": [],
        "end to end": [],
    }
    nan = float("nan")
    for threshold in thresholds_of(result)[1:]:
        for batch_size in (1, LARGE_BATCH):
            labels.append(f"{threshold:g}\nbatch {batch_size}")
            row = model_row(result, batch_size, PACKED, threshold)
            series["ideal"].append(row["ideal_speedup"])
            series["model (packed)"].append(row["speedup"])
            series["model, carried"].append(
                model_row(result, batch_size, CARRIED, threshold)["speedup"]
                if batch_size > 1
                else nan
            )
            series["end to end"].append(
                e2e_run(result, batch_size, threshold)["speedup"] if "e2e" in result else nan
            )
    width = 0.16
    for index, (name, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        axis.bar(positions, values, width, label=name)
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xticks(range(len(labels)))
    axis.set_xticklabels(labels)
    axis.set_ylabel("speedup over threshold 1.0")


def accuracy_compute_axis(axis, result: Dict[str, Any]) -> None:
    """Accuracy against compute: threshold policy, oracle at the same accuracy, single heads."""
    accuracy = result["accuracy"]
    curve = sorted(accuracy["curve"], key=lambda point: point["relative_compute"])
    axis.plot(
        [p["relative_compute"] for p in curve],
        [p["accuracy"] for p in curve],
        label="confidence threshold",
    )
    oracle = sorted(
        (p for p in curve if p["oracle_relative_compute"] == p["oracle_relative_compute"]),
        key=lambda point: point["oracle_relative_compute"],
    )
    axis.plot(
        [p["oracle_relative_compute"] for p in oracle],
        [p["accuracy"] for p in oracle],
        linestyle="--",
        label="oracle at the same accuracy",
    )
    axis.scatter(
        [p["relative_compute"] for p in accuracy["single_heads"]],
        [p["accuracy"] for p in accuracy["single_heads"]],
        marker="s",
        color="grey",
        label="one head alone",
    )
    for drop, entry in accuracy["chosen"].items():
        axis.scatter(
            [entry["eval_relative_compute"]],
            [entry["eval_accuracy"]],
            zorder=3,
            label=f"threshold {entry['threshold']:g} (within {float(drop) * 100:g} pt on dev)",
        )
    axis.set_xlabel("relative compute")
    axis.set_ylabel("accuracy (evaluation file)")


def time_per_instance_axis(axis, result: Dict[str, Any]) -> None:
    """Model time per instance of the transformers reference and each threshold, by plan."""
    names = ["transformers"] + [f"threshold {t:g}" for t in thresholds_of(result)]
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        values = []
        for batch_size, batching in PLANS:
            if name == "transformers":
                row = model_row(result, batch_size, batching, 1.0)
                values.append(row["transformers_ms_per_instance"])
            else:
                threshold = float(name.split()[1])
                values.append(model_row(result, batch_size, batching, threshold)["ms_per_instance"])
        positions = [i + (index - (len(names) - 1) / 2) * width for i in range(len(PLANS))]
        axis.bar(positions, values, width, label=name)
    axis.set_xticks(range(len(PLANS)))
    axis.set_xticklabels([f"batch {b}\n{batching}" for b, batching in PLANS])
    axis.set_ylabel("model time, ms per instance")
