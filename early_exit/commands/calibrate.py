"""
The `calibrate` subcommand: temperature scaling of an existing early-exit model archive.

    $ allennlp calibrate --help
    usage: allennlp calibrate [-h] --output-file OUTPUT_FILE [--report-file REPORT_FILE]
                              [--cuda-device CUDA_DEVICE] [--batch-size BATCH_SIZE]
                              [-o OVERRIDES] [--min-temperature MIN_TEMPERATURE]
                              [--max-temperature MAX_TEMPERATURE]
                              [--include-package INCLUDE_PACKAGE]
                              archive_file input_file
"""

import argparse
import logging
import os
from typing import Any, Dict, Optional, Union

import torch
from allennlp.commands.subcommand import Subcommand
from allennlp.common.checks import ConfigurationError
from overrides import overrides

from early_exit.calibration.calibrated_archive import write_calibrated_archive
from early_exit.calibration.compute_curves import compute_curves
from early_exit.calibration.calibration_report import (
    format_calibration_table,
    write_calibration_report,
)
from early_exit.calibration.temperature_scaling import (
    DEFAULT_MAX_TEMPERATURE,
    DEFAULT_MIN_TEMPERATURE,
    check_temperature_range,
    fit_head_temperatures,
)
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.common.cli_errors import exit_with_user_error
from early_exit.common.files import atomic_path, check_output_paths, is_local
from early_exit.dataset_readers.errors import NoInstancesError
from early_exit.dataset_readers.indexed import read_indexed
from early_exit.dataset_readers.label_check import check_known_labels
from early_exit.models.head_outputs import HeadOutputs, collect_head_outputs
from early_exit.modules.exit_policies import scaled_probabilities
from early_exit.commands.option_checks import refuse_unless
from early_exit.sweep import certification, risk_control

logger = logging.getLogger(__name__)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@Subcommand.register("calibrate")
class Calibrate(Subcommand):
    """
    Calibrates every exit head of an archived `early_exit_classifier` by temperature scaling on
    labelled data and writes a new archive holding the temperatures, plus a report.

    Registered as a `Subcommand` with name "calibrate".
    """

    @overrides
    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "Fit one temperature per exit head of an early-exit model archive on labelled data "
            "(read with the archive's validation dataset reader) and write a new archive with the "
            "same configuration, vocabulary and weights plus the temperatures, which evaluate and "
            "predict then use. The input archive is never modified. A report (calibration.json) is "
            "written next to the new archive and printed."
        )
        subparser = parser.add_parser(
            self.name,
            description=description,
            help="Calibrate an early-exit model's heads by temperature scaling.",
        )
        subparser.add_argument("archive_file", type=str, help="the archived model to calibrate")
        subparser.add_argument(
            "input_file", type=str, help="labelled data to calibrate on (e.g. development data)"
        )
        subparser.add_argument(
            "--output-file",
            type=str,
            required=True,
            help="where to write the calibrated archive (not an input, not the report file)",
        )
        subparser.add_argument(
            "--report-file",
            type=str,
            default=None,
            help="where to write the JSON report (default: the output file with its archive "
            "suffix replaced by .calibration.json)",
        )
        subparser.add_argument(
            "--cuda-device", type=int, default=-1, help="id of GPU to use (if any)"
        )
        subparser.add_argument(
            "--batch-size", type=int, default=32, help="batch size for running the heads"
        )
        subparser.add_argument(
            "-o",
            "--overrides",
            type=str,
            default="",
            help="a JSON structure used to override the configuration while loading the model "
            "and reading the data; the new archive keeps the original configuration",
        )
        subparser.add_argument(
            "--min-temperature",
            type=float,
            default=DEFAULT_MIN_TEMPERATURE,
            help="lower bound of the temperature search",
        )
        subparser.add_argument(
            "--max-temperature",
            type=float,
            default=DEFAULT_MAX_TEMPERATURE,
            help="upper bound of the temperature search",
        )
        subparser.add_argument(
            "--max-accuracy-drop",
            type=float,
            default=None,
            help="also choose the exit policy's parameter (of the archive's policy type) and "
            "store it as the archive's default: the most aggressive one that keeps the --risk "
            "within this (0.01 = one point) on new data with probability 1 - delta; the data is "
            "then split in two seeded halves, one for the temperatures and one for the parameter",
        )
        subparser.add_argument(
            "--risk",
            choices=risk_control.RISKS,
            default=None,
            help="with --max-accuracy-drop: 'accuracy' (inputs the full model gets right and the "
            "early exit wrong) or 'consistency' (predictions that differ from the full model's); "
            f"default {risk_control.ACCURACY}",
        )
        subparser.add_argument(
            "--delta",
            type=float,
            default=None,
            help="with --max-accuracy-drop: the allowed probability of breaking the promise; "
            f"default {risk_control.DEFAULT_DELTA}",
        )
        subparser.set_defaults(func=calibrate_from_args)
        return subparser


def calibrate_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    """
    Runs `calibrate_archive` for the `calibrate` command. A problem with the user's input (another
    model type, a missing file, unlabelled data ...) is printed as one `error: ...` line on stderr
    and ends the program with exit status 1, without a traceback.
    """
    try:
        refuse_unless(
            args,
            ["--risk", "--delta"],
            args.max_accuracy_drop is not None,
            "with --max-accuracy-drop",
        )
        return calibrate_archive(
            args.archive_file,
            args.input_file,
            args.output_file,
            report_file=args.report_file,
            cuda_device=args.cuda_device,
            batch_size=args.batch_size,
            overrides=args.overrides,
            min_temperature=args.min_temperature,
            max_temperature=args.max_temperature,
            max_accuracy_drop=args.max_accuracy_drop,
            risk=args.risk or risk_control.ACCURACY,
            delta=risk_control.DEFAULT_DELTA if args.delta is None else args.delta,
        )
    except (ConfigurationError, OSError, ValueError) as error:
        exit_with_user_error(error, logger)


def default_report_file(output_file: Union[str, os.PathLike]) -> str:
    """`out/model-calibrated.tar.gz` -> `out/model-calibrated.calibration.json`."""
    path = os.fspath(output_file)
    for suffix in _ARCHIVE_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return path + ".calibration.json"


def calibrate_archive(
    archive_file: Union[str, os.PathLike],
    input_file: Union[str, os.PathLike],
    output_file: Union[str, os.PathLike],
    report_file: Optional[Union[str, os.PathLike]] = None,
    cuda_device: int = -1,
    batch_size: int = 32,
    overrides: Union[str, Dict[str, Any]] = "",
    min_temperature: float = DEFAULT_MIN_TEMPERATURE,
    max_temperature: float = DEFAULT_MAX_TEMPERATURE,
    max_accuracy_drop: Optional[float] = None,
    risk: str = risk_control.ACCURACY,
    delta: float = risk_control.DEFAULT_DELTA,
) -> Dict[str, Any]:
    """
    Calibrates the heads of the `early_exit_classifier` in `archive_file` on the labelled data in
    `input_file` and writes a calibrated copy of the archive to `output_file` and the report to
    `report_file` (by default next to the new archive, see `default_report_file`). Prints the
    report's table.

    # Returns

    The report (the content of the report file).

    # Raises

    `ConfigurationError` for another model type, missing files, an output that is an input or the
    other output or cannot be written (checked before any work), unlabelled data, or a bad
    temperature range; `NoInstancesError` for no data and `UnknownLabelError` for labels the model
    does not know. Both outputs are written atomically: on a failure neither output is left half
    written, and an existing file under either name is left as it was.
    """
    archive_file, input_file = os.fspath(archive_file), os.fspath(input_file)
    output_file = os.fspath(output_file)
    report_file = os.fspath(report_file) if report_file else default_report_file(output_file)
    check_temperature_range(min_temperature, max_temperature)
    if max_accuracy_drop is not None:
        risk_control.check_risk_settings(max_accuracy_drop, delta, "--max-accuracy-drop", "--delta")
        risk_control.check_risk(risk, has_labels=True)
    if batch_size < 1:
        raise ConfigurationError(f"--batch-size must be at least 1, got {batch_size}")
    if is_local(archive_file) and not os.path.isfile(archive_file):
        raise ConfigurationError(f"archive file {archive_file} does not exist")
    if is_local(input_file) and not os.path.exists(input_file):
        raise ConfigurationError(f"data file {input_file} does not exist")
    check_output_paths(
        inputs=[("input archive", archive_file), ("data file", input_file)],
        outputs=[("output file", output_file), ("report file", report_file)],
    )

    archive = load_early_exit_archive(archive_file, cuda_device=cuda_device, overrides=overrides)
    model = archive.model
    reader = archive.validation_dataset_reader
    instances = read_indexed(reader, input_file)
    if not instances:
        raise NoInstancesError(input_file)
    check_known_labels(instances, model.vocab, input_file, reader)
    head_outputs = collect_head_outputs(
        model, instances, batch_size, description="calibration: running every head"
    )
    if head_outputs.labels is None:
        raise ConfigurationError(
            f"{input_file} has instances without a gold label; calibration needs labelled data"
        )
    fit_on, certify_on = head_outputs, None
    if max_accuracy_drop is not None:
        fit_indices, certify_indices = risk_control.split_in_two(len(head_outputs))
        fit_on, certify_on = _subset(head_outputs, fit_indices), _subset(
            head_outputs, certify_indices
        )
    fits = fit_head_temperatures(
        fit_on,
        model.exit_layers,
        min_temperature=min_temperature,
        max_temperature=max_temperature,
    )
    temperatures = [fit.temperature for fit in fits]
    model.set_temperatures(temperatures)
    guarantee, policy_record = None, None
    if certify_on is not None:
        guarantee = certification.certify_exit_policy(
            model, certify_on, risk, max_accuracy_drop, delta
        )
        policy_record = _policy_record(guarantee, input_file, len(fit_on))

    runner_key = model.layer_runner.calibration_key()  # None: the weights' own temperatures
    # Where compute_budget starts: every calibration instance, with the temperatures just fitted.
    probs = scaled_probabilities(head_outputs.logits, torch.tensor(temperatures))
    curves = compute_curves(probs, model.engine.head_compute)
    # Both outputs or neither: the report is moved into place only once the archive is.
    with atomic_path(report_file) as report_temporary:
        report = write_calibration_report(
            report_temporary,
            fits,
            model.exit_layers,
            data=input_file,
            temperature_range=[min_temperature, max_temperature],
            exit_policy=policy_record,
        )
        write_calibrated_archive(
            archive_file,
            output_file,
            temperatures,
            exit_policy=None if guarantee is None else guarantee.policy.to_json(),
            guarantee=policy_record,
            runner_key=runner_key,
            compute_curves=curves,
        )
    print(format_calibration_table(fits, model.exit_layers))
    if runner_key is None:
        print(f"temperatures: {temperatures}")
    else:
        print(f"temperatures of layer runner {model.layer_runner.describe()}: {temperatures}")
    if policy_record is not None:
        print(f"exit policy: {guarantee.message}")
        print(policy_record["assumes"])
    print(f"calibrated archive: {output_file}")
    print(f"report: {report_file}")
    return report


def _subset(outputs: HeadOutputs, indices) -> HeadOutputs:
    return HeadOutputs(logits=outputs.logits[indices], labels=outputs.labels[indices])


def _policy_record(
    guarantee: certification.RiskControlResult, data: str, num_fit: int
) -> Dict[str, Any]:
    """The stored policy with its promise and what the promise assumes."""
    return {
        "policy": guarantee.policy.to_json(),
        "guarantee": guarantee.to_json(),
        "assumes": (
            f"The guarantee holds for new inputs from the distribution of {data}, if it was not "
            f"used to train the model: the temperatures were fitted on {num_fit} of its instances "
            f"and the exit policy certified on the other {guarantee.num_instances} (a seeded "
            "random split)."
        ),
    }
