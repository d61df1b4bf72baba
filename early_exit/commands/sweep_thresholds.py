"""
The `sweep-thresholds` subcommand: the whole speed/accuracy curve of one early-exit model in one
run, for the confidence threshold or any exit policy (or all of them).

    allennlp sweep-thresholds model.tar.gz dev.tsv --output-dir sweep/ [--policy entropy]
"""

import argparse
import logging
import tarfile
from typing import List, Optional, TypeVar

from allennlp.commands.subcommand import Subcommand
from allennlp.common import logging as common_logging
from allennlp.common.checks import ConfigurationError
from overrides import overrides

from early_exit.commands.option_checks import refuse_unless
from early_exit.common.cli_errors import exit_with_user_error
from early_exit.common.files import check_output_paths
from early_exit.sweep.report import format_summary, sweep_output_files, write_sweep_outputs
from early_exit.sweep.result import SweepResult
from early_exit.sweep.run import run_sweep
from early_exit.sweep.settings import (
    DEFAULT_MAX_ACCURACY_DROP,
    NO_GUARANTEE,
    RISK_CHOICES,
    SweepSettings,
)
from early_exit.sweep.thresholds import ALL_POLICIES, SWEPT_POLICIES, parse_thresholds

logger = logging.getLogger(__name__)

# Errors that come from what the user gave (files, settings, data); they are reported as one
# `error: ...` line instead of a traceback.
USER_ERRORS = (ConfigurationError, OSError, ValueError, tarfile.TarError)
# The defaults of the options: those of the Python API. Options that do nothing without another
# default to `None` in the parser (so that giving one can be told from leaving it out) and get
# these after `refuse_unless`.
DEFAULTS = SweepSettings()
# What the timing options do nothing without.
TIMING_OPTIONS = ("--timing-thresholds", "--timing-batch-size", "--repeats", "--timing-instances")
T = TypeVar("T")


@Subcommand.register("sweep-thresholds")
class SweepThresholds(Subcommand):
    """
    Runs every head of an early-exit model once on labelled data, then tabulates accuracy, ECE,
    relative compute, mean exit layer and the exit distribution for a grid of confidence thresholds
    (or of another exit policy's parameters, `--policy`, or of every policy, `--policy all`),
    exactly as the model decides under each of them; adds each head alone and the oracle as
    reference points; recommends a policy and its parameters for an accuracy or compute goal; times
    real early-exit inference under a few of them against the full model; and writes `sweep.csv`,
    `sweep.md`, `sweep.png` and `sweep.json` to the output directory.

    Registered as a `Subcommand` with name "sweep-thresholds".
    """

    @overrides
    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "Sweep the confidence threshold of an early-exit model on labelled data: accuracy, "
            "compute and measured speed for every threshold, reference points and a recommended "
            "threshold, written as CSV, Markdown, PNG and JSON."
        )
        subparser = parser.add_parser(
            self.name,
            description=description,
            help="Draw the speed/accuracy curve of an early-exit model and pick a threshold.",
        )
        subparser.add_argument("archive_file", type=str, help="an early_exit_classifier archive")
        subparser.add_argument(
            "data_file",
            type=str,
            help="data in the format of the archive's reader; without labels (or the predictor's "
            "JSON lines) only the consistency guarantee is computed",
        )
        subparser.add_argument(
            "--output-dir", type=str, required=True, help="directory for the result files"
        )
        subparser.add_argument(
            "--policy",
            type=str,
            default=DEFAULTS.policy,
            help="the exit policy to sweep: "
            + ", ".join(SWEPT_POLICIES)
            + f", or {ALL_POLICIES} (every one in one table and plot); default {DEFAULTS.policy}",
        )
        grid = subparser.add_mutually_exclusive_group()
        grid.add_argument(
            "--thresholds",
            type=str,
            default=None,
            help="comma-separated thresholds to sweep, e.g. 0.5,0.9,0.99, for the policies that "
            "have one (1.0 is always added for max_probability, 0 for entropy; confident_patience "
            "takes each with every patience)",
        )
        grid.add_argument(
            "--grid-step",
            type=float,
            default=None,
            help="step of the threshold grid 0..1 of max_probability (which also has 0.995, "
            "0.998, 0.999, 0.9995 and 0.9999) and entropy (also 0.0001 ... 0.005); default 0.01",
        )
        subparser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULTS.batch_size,
            help="batch size for running every head once",
        )
        subparser.add_argument(
            "--max-accuracy-drop",
            type=float,
            default=None,
            help="recommend the cheapest threshold whose accuracy is at most this much (absolute, "
            f"0.01 = one point) below the full model's; the default goal, with "
            f"{DEFAULT_MAX_ACCURACY_DROP}",
        )
        subparser.add_argument(
            "--risk",
            choices=RISK_CHOICES,
            default=DEFAULTS.risk,
            help="with --max-accuracy-drop, recommend first the threshold that keeps this risk "
            "within the drop on new data with probability 1 - delta: 'accuracy' (labels needed), "
            "'consistency' (predictions that differ from the full model's; no labels needed), "
            "'auto' (accuracy on labelled data, consistency without labels) or 'none' (only the "
            "cheapest threshold within the drop on this data, without a guarantee)",
        )
        subparser.add_argument(
            "--delta",
            type=float,
            default=None,
            help="the allowed probability that the guaranteed threshold breaks its promise; "
            f"default {DEFAULTS.delta} (not with --risk none)",
        )
        subparser.add_argument(
            "--compute-budget",
            type=float,
            default=None,
            help="recommend the most accurate threshold whose relative compute (fraction of the "
            "encoder's layers) is at most this",
        )
        subparser.add_argument(
            "--timing-thresholds",
            type=str,
            default=None,
            help="comma-separated thresholds of the swept policy (max_probability or entropy) to "
            "time (default: five spread over each policy's curve, three when several are swept, "
            "the recommended ones and the full model, the reference)",
        )
        subparser.add_argument(
            "--timing-batch-size",
            type=int,
            default=None,
            help="time at batch size 1 and at this batch size; "
            f"default {max(DEFAULTS.timing_batch_sizes)}",
        )
        subparser.add_argument(
            "--repeats",
            type=int,
            default=None,
            help=f"timing repeats; the median is reported; default {DEFAULTS.repeats}",
        )
        subparser.add_argument(
            "--timing-instances",
            type=int,
            default=None,
            help=f"time only the first this many instances; default {DEFAULTS.timing_instances}",
        )
        subparser.add_argument("--no-timing", action="store_true", help="skip the timing")
        subparser.add_argument(
            "--full-table", action="store_true", help="print every threshold, not a subset"
        )
        subparser.add_argument(
            "--cuda-device", type=int, default=-1, help="id of GPU to use (if any)"
        )
        subparser.add_argument(
            "-o",
            "--overrides",
            type=str,
            default="",
            help="a JSON(net) structure overriding the archive's configuration",
        )
        subparser.add_argument(
            "--file-friendly-logging",
            action="store_true",
            default=False,
            help="outputs tqdm status on separate lines and slows tqdm refresh rate",
        )
        subparser.set_defaults(func=sweep_thresholds_from_args)
        return subparser


def _thresholds(args: argparse.Namespace) -> Optional[List[float]]:
    if args.thresholds is None:
        return None
    return parse_thresholds(args.thresholds)


def _timing_thresholds(args: argparse.Namespace) -> Optional[List[float]]:
    if args.timing_thresholds is None:
        return None
    return parse_thresholds(args.timing_thresholds, "timing thresholds")


def sweep_thresholds_from_args(args: argparse.Namespace) -> Optional[SweepResult]:
    """
    Runs the sweep for parsed command-line arguments, prints the report and writes the files. A
    user error (missing file, another model type, an unknown policy, a threshold outside [0, 1],
    unlabelled data, ...) is printed as `error: ...` on stderr and exits with status 1, without a
    traceback. Settings are checked first, then output files that would overwrite the archive or
    the data, or that cannot be written, are refused; all before the sweep starts.
    """
    common_logging.FILE_FRIENDLY_LOGGING = args.file_friendly_logging
    try:
        settings = _settings(args)
        check_output_paths(
            inputs=[("archive", args.archive_file), ("data file", args.data_file)],
            outputs=[
                ("sweep output", path) for path in sweep_output_files(args.output_dir).values()
            ],
        )
        result = run_sweep(
            args.archive_file,
            args.data_file,
            settings,
            cuda_device=args.cuda_device,
            overrides=args.overrides,
        )
        files = write_sweep_outputs(result, args.output_dir)
    except USER_ERRORS as error:
        exit_with_user_error(error, logger)
    print(format_summary(result, full_table=args.full_table))
    print("Wrote " + ", ".join(files.values()))
    return result


def _settings(args: argparse.Namespace) -> SweepSettings:
    """
    The sweep's settings from the options (checked as they are built); options that would do
    nothing (timing options with `--no-timing`, `--delta` with `--risk none`) are refused.
    """
    refuse_unless(args, TIMING_OPTIONS, not args.no_timing, "without --no-timing")
    refuse_unless(args, ["--delta"], args.risk != NO_GUARANTEE, "with a --risk other than none")
    timing_batch_size = _or_default(args.timing_batch_size, max(DEFAULTS.timing_batch_sizes))
    timing_batch_sizes = (1,) if timing_batch_size == 1 else (1, timing_batch_size)
    return SweepSettings(
        policy=args.policy,
        thresholds=_thresholds(args),
        grid_step=args.grid_step,
        batch_size=args.batch_size,
        max_accuracy_drop=args.max_accuracy_drop,
        compute_budget=args.compute_budget,
        risk=args.risk,
        delta=_or_default(args.delta, DEFAULTS.delta),
        timing=not args.no_timing,
        timing_thresholds=_timing_thresholds(args),
        timing_batch_sizes=timing_batch_sizes,
        repeats=_or_default(args.repeats, DEFAULTS.repeats),
        timing_instances=_or_default(args.timing_instances, DEFAULTS.timing_instances),
    )


def _or_default(value: Optional[T], default: T) -> T:
    return default if value is None else value
