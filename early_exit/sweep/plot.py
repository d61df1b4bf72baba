"""
The plot of a sweep (`sweep.png`): accuracy against relative compute and against speedup.
"""

from typing import Any, Dict, List, Sequence

from early_exit.sweep.result import SweepResult
from early_exit.sweep.sweep_table import SweepRow
from early_exit.sweep.thresholds import policy_label


def _curves(rows: Sequence[SweepRow]) -> Dict[str, List[SweepRow]]:
    """Each policy type's rows by name, sorted by relative compute (ties in the table's order)."""
    curves: Dict[str, List[SweepRow]] = {}
    for row in rows:
        curves.setdefault(row.policy.registered_name(), []).append(row)
    return {
        name: sorted(curve, key=lambda row: row.relative_compute)  # stable
        for name, curve in curves.items()
    }


def _plot_measured(
    axes: Any, result: SweepResult, thresholds: bool, colors: Dict[str, str]
) -> None:
    """
    Measured speedups against accuracy: one line per batch size through the timed thresholds, each
    annotated, in a sweep of thresholds only; otherwise one line per policy (in its curve's colour)
    and batch size (a marker each), without annotations, which would overlap.
    """
    full = result.full_model
    accuracy_at = {row.policy: row.accuracy for row in [full, *result.rows]}
    markers = "o^sv<>"
    for index, size in enumerate(result.timing_batch_sizes):
        timings = sorted(
            (timing for timing in result.timings if timing.batch_size == size),
            key=lambda timing: timing.speedup,
        )
        timings = [timing for timing in timings if timing.policy in accuracy_at]
        if thresholds:
            axes.plot(
                [timing.speedup for timing in timings],
                [accuracy_at[timing.policy] for timing in timings],
                "-o",
                label=f"measured, batch size {size}",
            )
            for timing in timings:
                axes.annotate(
                    policy_label(timing.policy, thresholds, "cell"),
                    (timing.speedup, accuracy_at[timing.policy]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
            continue
        marker = markers[index % len(markers)]
        axes.plot([], [], marker, color="black", label=f"measured, batch size {size}")
        for name, color in colors.items():
            own = [timing for timing in timings if timing.policy.registered_name() == name]
            axes.plot(
                [timing.speedup for timing in own],
                [accuracy_at[timing.policy] for timing in own],
                "-" + marker,
                color=color,
            )


def _plot_reference_points(axes: Any, result: SweepResult, speed: bool) -> None:
    """Each head alone and the oracle, at their relative compute or its speedup (hollow)."""
    full = result.full_model.relative_compute
    x = (lambda compute: full / compute) if speed else (lambda compute: compute)  # noqa: E731
    hollow = {"markerfacecolor": "none"} if speed else {}
    heads, oracle = result.single_heads, result.oracle
    axes.plot(
        [x(point.relative_compute) for point in heads],
        [point.accuracy for point in heads],
        "s",
        markersize=8,
        label="each head alone (compute-based)" if speed else "each head alone",
        **hollow,
    )
    for point in [] if speed else heads:
        axes.annotate(
            f"layer {point.layer}",
            (point.relative_compute, point.accuracy),
            textcoords="offset points",
            xytext=(5, -12),
            fontsize=8,
        )
    axes.plot(
        [
            x(oracle.relative_compute_unsolved_at_first),
            x(oracle.relative_compute_unsolved_at_last),
        ],
        [oracle.accuracy, oracle.accuracy],
        "*--",
        markersize=12,
        label="oracle (compute-based)" if speed else "oracle (unsolved at first / last head)",
        **hollow,
    )


def plot_sweep(result: SweepResult, path: str) -> None:
    """
    Writes a PNG with two panels: accuracy against relative compute (one curve per swept exit
    policy, each head alone, the oracle and the recommendation), and accuracy against speedup over
    the full model (measured at the timed policies for each batch size, and the compute-based
    speedup of the curves, the heads and the oracle for comparison). Uses matplotlib's Agg canvas
    directly, so no display and no global backend are touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    full = result.full_model
    thresholds = result.thresholds_only
    curves = _curves(result.rows)
    figure = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(figure)
    compute_axes, speed_axes = figure.subplots(1, 2)

    colors = {}
    for name, curve in curves.items():
        (line,) = compute_axes.plot(
            [row.relative_compute for row in curve],
            [row.accuracy for row in curve],
            "-o",
            markersize=3,
            label="early exit (threshold sweep)" if thresholds else f"early exit: {name}",
        )
        colors[name] = line.get_color()
    _plot_reference_points(compute_axes, result, speed=False)
    for recommendation in result.recommendations:
        if recommendation.row is not None:
            row = recommendation.row
            label = policy_label(row.policy, thresholds, "cell")
            compute_axes.plot(
                [row.relative_compute],
                [row.accuracy],
                "o",
                markersize=12,
                markerfacecolor="none",
                markeredgewidth=2,
                label=f"recommended: {label} ({recommendation.goal}"
                + (", guaranteed)" if recommendation.guarantee else ")"),
            )
    for index, (name, curve) in enumerate(curves.items()):
        speed_axes.plot(
            [full.relative_compute / row.relative_compute for row in curve],
            [row.accuracy for row in curve],
            ":",
            color="gray" if thresholds else colors[name],
            label="compute-based speedup (ideal)" if index == 0 else None,
        )
    _plot_reference_points(speed_axes, result, speed=True)
    _plot_measured(speed_axes, result, thresholds, colors)
    speed_title = "accuracy vs speedup over the full model"
    if not result.timings:
        speed_title += " (timing skipped)"
    for axes, xlabel, title, where in (
        (
            compute_axes,
            "relative compute (fraction of the encoder's layers)",
            "accuracy vs compute",
            "lower right",
        ),
        (speed_axes, "speedup over threshold 1.0 (x)", speed_title, "lower left"),
    ):
        axes.set_xlabel(xlabel)
        axes.set_ylabel("accuracy")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc=where if thresholds else "best")

    figure.tight_layout()
    figure.savefig(path, format="png")
