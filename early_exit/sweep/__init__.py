"""
Sweeps of confidence thresholds and other exit policies: the speed/accuracy curves of one
early-exit model, from every head's outputs cached once. Importable pieces for
`allennlp sweep-thresholds`, benchmarks and demos.
"""

from early_exit.sweep.recommendation import (
    Recommendation,
    check_goals,
    policy_label,
    recommend_threshold,
)
from early_exit.sweep.reference_points import (
    HeadPoint,
    OraclePoint,
    oracle_point,
    single_head_points,
)
from early_exit.sweep.report import (
    compact_records,
    format_summary,
    plot_sweep,
    table_records,
    write_sweep_outputs,
)
from early_exit.sweep.run import SweepInputError, SweepResult, run_sweep, sweep_model
from early_exit.sweep.sweep_table import (
    SweepRow,
    evaluate_policy,
    evaluate_threshold,
    head_probabilities,
    sweep_policies,
    sweep_table,
)
from early_exit.sweep.thresholds import (
    check_thresholds,
    default_threshold_grid,
    parse_thresholds,
    policy_grid,
    sweep_grid,
)
from early_exit.sweep.timing import (
    FULL_MODEL,
    TimingResult,
    measure_inference_time,
    pick_timing_policies,
    pick_timing_thresholds,
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
    "TimingResult",
    "check_goals",
    "check_thresholds",
    "compact_records",
    "default_threshold_grid",
    "evaluate_policy",
    "evaluate_threshold",
    "format_summary",
    "head_probabilities",
    "measure_inference_time",
    "oracle_point",
    "parse_thresholds",
    "pick_timing_policies",
    "pick_timing_thresholds",
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
