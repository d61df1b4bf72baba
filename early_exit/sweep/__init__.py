"""
Sweeps of confidence thresholds and other exit policies: the speed/accuracy curves of one
early-exit model, from every head's outputs cached once. Importable pieces for
`allennlp sweep-thresholds`, benchmarks and demos.

Modules, by concept: `settings` (what a sweep does, checked once), `thresholds` (the grids of
policies and how reports name them), `sweep_table` (every policy's row from the heads' outputs,
with or without labels), `reference_points` (each head alone, the oracle), `risk_control` (the
statistics of a guarantee, on arrays), `certification` (the walk over candidate policies),
`recommendation` (choosing a setting: plain, guaranteed, by compute budget, on dev), `timing`
(measured speed), `result` (what a sweep found), `run` (a whole sweep), `report` and `plot` (its
files and console summary).
"""

from early_exit.sweep.recommendation import Recommendation, recommend_threshold
from early_exit.sweep.reference_points import (
    HeadPoint,
    OraclePoint,
    oracle_point,
    single_head_points,
)
from early_exit.sweep.plot import plot_sweep
from early_exit.sweep.report import (
    compact_records,
    format_summary,
    table_records,
    write_sweep_outputs,
)
from early_exit.sweep.result import SweepResult
from early_exit.sweep.run import SweepInputError, run_sweep, sweep_model
from early_exit.sweep.settings import SweepSettings, check_goals
from early_exit.sweep.sweep_table import (
    SweepRow,
    evaluate_policy,
    head_probabilities,
    sweep_policies,
    sweep_table,
)
from early_exit.sweep.thresholds import (
    FULL_MODEL,
    check_thresholds,
    default_threshold_grid,
    parse_thresholds,
    policy_grid,
    policy_label,
    sweep_grid,
)
from early_exit.sweep.timing import (
    TimingResult,
    measure_inference_time,
    pick_timing_policies,
    prepare_batches,
)

__all__ = [
    "FULL_MODEL",
    "HeadPoint",
    "OraclePoint",
    "Recommendation",
    "SweepInputError",
    "SweepResult",
    "SweepRow",
    "SweepSettings",
    "TimingResult",
    "check_goals",
    "check_thresholds",
    "compact_records",
    "default_threshold_grid",
    "evaluate_policy",
    "format_summary",
    "head_probabilities",
    "measure_inference_time",
    "oracle_point",
    "parse_thresholds",
    "pick_timing_policies",
    "plot_sweep",
    "policy_grid",
    "policy_label",
    "prepare_batches",
    "recommend_threshold",
    "run_sweep",
    "single_head_points",
    "sweep_grid",
    "sweep_model",
    "sweep_policies",
    "sweep_table",
    "table_records",
    "write_sweep_outputs",
]
