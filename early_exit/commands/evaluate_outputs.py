"""
`allennlp evaluate`'s output files, checked before any work and written atomically.

allennlp's `evaluate_from_archive` opens `--predictions-output-file` and writes `--output-file`
with no check: `allennlp evaluate model.tar.gz data.tsv --output-file data.tsv` replaced the
user's data with the metrics, and an interrupted run left half a file under the output's name. A
mismatched number of output files for the data files ended in an `AssertionError` traceback, and
`--batch-size 0` silently used the configuration's batch size.
`checked_evaluation` wraps it: the data files, the archive and the weights file are inputs, the
metrics and predictions files (as allennlp names them, `--auto-names` included) outputs, checked
with `check_output_paths`; each output is written into a temporary file beside it and moved over
it only once the evaluation is complete.
"""

import contextlib
import functools
import inspect
import json
from json import JSONDecodeError
from pathlib import Path
from typing import Any, Callable, List, Optional

from allennlp.common.checks import ConfigurationError

from early_exit.common.files import atomic_path, check_output_paths, write_errors_named


def evaluation_data_paths(input_file: str) -> List[Any]:
    """The data files of `input_file` as allennlp splits them: a JSON list, or comma-separated."""
    try:
        return json.loads(f"[{input_file}]")
    except JSONDecodeError:
        return input_file.split(",")


def output_paths(
    given: Optional[str], data_paths: List[Any], automatic: bool, suffix: str, option: str
) -> List[str]:
    """
    The files allennlp writes for `given` (one per data file): named after each data file with
    `suffix` when `automatic` (`--auto-names`), else `given` split at commas.
    """
    if given is None:
        return []
    if automatic:
        if not all(isinstance(path, str) for path in data_paths):
            raise ConfigurationError(f"{option}: name the output files when the data is JSON")
        return [str(Path(path).parent / f"{Path(path).stem}{suffix}") for path in data_paths]
    paths = given.split(",")
    if len(paths) != len(data_paths):
        raise ConfigurationError(
            f"{option} names {len(paths)} file(s) for {len(data_paths)} data file(s); give one "
            "output file per data file, separated by commas"
        )
    return paths


def checked_evaluation(evaluate_from_archive: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps allennlp's `evaluate_from_archive` (see the module docstring)."""
    signature = inspect.signature(evaluate_from_archive)

    @functools.wraps(evaluate_from_archive)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if arguments["batch_size"] is not None and arguments["batch_size"] < 1:
            # allennlp would use the configuration's batch size for 0, and fail later below it
            raise ConfigurationError(
                f"--batch-size must be at least 1, got {arguments['batch_size']}"
            )
        data_paths = evaluation_data_paths(arguments["input_file"])
        auto_names = arguments["auto_names"]
        metrics = output_paths(
            arguments["metrics_output_file"],
            data_paths,
            auto_names in ("METRICS", "ALL"),
            ".outputs",
            "--output-file",
        )
        predictions = output_paths(
            arguments["predictions_output_file"],
            data_paths,
            auto_names in ("PREDS", "ALL"),
            ".preds",
            "--predictions-output-file",
        )
        check_output_paths(
            inputs=[("data file", path) for path in data_paths if isinstance(path, str)]
            + [("archive", arguments["archive_file"]), ("weights file", arguments["weights_file"])],
            outputs=[("metrics output file", path) for path in metrics]
            + [("predictions output file", path) for path in predictions],
        )
        with contextlib.ExitStack() as outputs:
            temporary = [outputs.enter_context(atomic_path(path)) for path in metrics + predictions]
            arguments["metrics_output_file"] = ",".join(temporary[: len(metrics)]) or None
            arguments["predictions_output_file"] = ",".join(temporary[len(metrics) :]) or None
            arguments["auto_names"] = "NONE"
            with write_errors_named(*metrics, *predictions):  # allennlp writes them all at once
                return evaluate_from_archive(**arguments)

    wrapper._early_exit = True  # type: ignore[attr-defined]
    return wrapper
