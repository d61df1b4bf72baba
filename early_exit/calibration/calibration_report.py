"""
The per-head calibration report: a table for the log and `calibration.json`.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from early_exit.calibration.temperature_scaling import TemperatureFit

CALIBRATION_REPORT_NAME = "calibration.json"


def calibration_report(
    fits: Sequence[TemperatureFit],
    exit_layers: Sequence[int],
    data: Optional[str] = None,
    temperature_range: Optional[Sequence[float]] = None,
    exit_policy: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """
    The content of `calibration.json`: `temperatures` (one per head, exactly the values the model
    holds), `num_instances`, optionally `data` (where the calibration data came from) and
    `temperature_range`, and `heads`: per head its `head` index, `exit_layer`, `temperature`,
    `nll_before`, `nll_after`, `ece_before`, `ece_after`, `num_instances` and `warning`; and
    `exit_policy` when one was chosen too (the policy stored and its guarantee).
    """
    if len(fits) != len(exit_layers):
        raise ValueError(f"{len(fits)} fitted temperatures for {len(exit_layers)} exit layers")
    heads: List[Dict[str, Any]] = []
    for head, (layer, fit) in enumerate(zip(exit_layers, fits)):
        heads.append({"head": head, "exit_layer": int(layer), **fit.to_dict()})
    report: Dict[str, Any] = {
        "temperatures": [fit.temperature for fit in fits],
        "num_instances": max((fit.num_instances for fit in fits), default=0),
    }
    if data is not None:
        report["data"] = data
    if temperature_range is not None:
        report["temperature_range"] = [float(bound) for bound in temperature_range]
    report["heads"] = heads
    if exit_policy is not None:
        report["exit_policy"] = exit_policy
    return report


def format_calibration_table(fits: Sequence[TemperatureFit], exit_layers: Sequence[int]) -> str:
    """
    A fixed-width table with one row per head (layer, temperature, NLL and ECE before and after,
    instances), followed by one line per warning.
    """
    header = (
        f"{'head':>4}  {'layer':>5}  {'temperature':>11}  {'NLL before':>10}  {'NLL after':>10}  "
        f"{'ECE before':>10}  {'ECE after':>10}  {'instances':>9}"
    )
    lines = [header]
    notes = []
    for head, (layer, fit) in enumerate(zip(exit_layers, fits)):
        lines.append(
            f"{head:>4}  {layer:>5}  {fit.temperature:>11.4f}  {fit.nll_before:>10.4f}  "
            f"{fit.nll_after:>10.4f}  {fit.ece_before:>10.4f}  {fit.ece_after:>10.4f}  "
            f"{fit.num_instances:>9}"
        )
        if fit.warning:
            notes.append(f"warning, head {head} (layer {layer}): {fit.warning}")
    return "\n".join(lines + notes)


def write_calibration_report(
    path: Union[str, os.PathLike],
    fits: Sequence[TemperatureFit],
    exit_layers: Sequence[int],
    data: Optional[str] = None,
    temperature_range: Optional[Sequence[float]] = None,
    exit_policy: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Writes `calibration_report(...)` as JSON to `path` and returns it."""
    report = calibration_report(fits, exit_layers, data, temperature_range, exit_policy)
    with open(path, "w") as report_file:
        json.dump(report, report_file, indent=2)
        report_file.write("\n")
    return report
