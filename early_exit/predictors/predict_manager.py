"""
`allennlp predict` with rows carried across batches, checked paths and an atomic output file.

allennlp's prediction loop (`allennlp.commands.predict._PredictManager`) hands the predictor one
batch at a time and writes its outputs before it reads the next, so the rows of a batch that go on
past a head cannot wait for the next batch's. Importing this package (`--include-package
early_exit`) replaces that loop by `EarlyExitPredictManager`, which does the same for every
predictor but streams the input through `EarlyExitClassifierPredictor.predict_json_stream` (or
`predict_instance_stream` with `--use-dataset-reader`) when the predictor is an
`early_exit_classifier` one with `carry_rows` on and the batch size is above 1. Output lines, their
order and what is printed stay the same.

allennlp opens `--output-file` for writing (emptying it) before it reads the input, so
`--output-file` naming the input file loses it. Here, and before the archive is even loaded
(`get_predictor` replaces allennlp's `_get_predictor`), an output that is the input file, the
archive or the weights file, or that cannot be written, is refused; the output is written to a
temporary file beside it and moved into place at the end. A bad input line (not JSON, not UTF-8,
without the expected keys) still leaves the lines before it predicted and written, as allennlp
does; any other failure (an interruption, a crash) leaves the output file as it was.
"""

import json
import os
import sys
from typing import Any, Dict, Iterable, Iterator, Optional

from allennlp.commands import predict as allennlp_predict
from allennlp.common.checks import ConfigurationError
from allennlp.common.file_utils import cached_path, open_compressed
from allennlp.common.util import JsonDict
from allennlp.data import Instance
from allennlp.models.archival import Archive
from allennlp.predictors import Predictor
from overrides import overrides

from early_exit.common.archive_errors import explain_archive_errors
from early_exit.common.files import atomic_open, check_output_paths, is_local
from early_exit.dataset_readers import DataFormatError
from early_exit.dataset_readers.label_check import check_known_labels
from early_exit.dataset_readers.line_reader import EarlyExitLineReader
from early_exit.models.archive_loading import check_early_exit_model
from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.predictors.early_exit_classifier import (
    EarlyExitClassifierPredictor,
    PredictorInputError,
)

# Errors that describe the user's input; the output lines written before one of them are kept.
_BAD_INPUT = (PredictorInputError, DataFormatError)
# Arguments only the early_exit_classifier predictor takes.
_EARLY_EXIT_PREDICTOR_ARGS = (
    "confidence_threshold",
    "exit_policy",
    "carry_rows",
    "decimals",
    "layer_runner",
)


def check_predict_paths(
    input_file: str,
    output_file: Optional[str],
    archive_file: Optional[str] = None,
    weights_file: Optional[str] = None,
    input_is_a_file: bool = True,
) -> None:
    """
    Raises a `ConfigurationError` if the output file is the input file, the archive or the weights
    file (however spelled), or cannot be written, or if `input_is_a_file` and the input file does
    not exist or is a directory (with `--use-dataset-reader` the dataset reader says what it reads).
    """
    if input_is_a_file and is_local(input_file):
        if not os.path.exists(input_file):
            raise ConfigurationError(f"input file {input_file} does not exist")
        if os.path.isdir(input_file):
            raise ConfigurationError(f"input file {input_file} is a directory")
    check_output_paths(
        inputs=[
            ("input file", input_file),
            ("archive", archive_file),
            ("weights file", weights_file),
        ],
        outputs=[("output file", output_file)],
    )


def _predictor_args(text: str) -> Dict[str, Any]:
    text = text.strip()
    if not text:
        return {}
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"--predictor-args is not valid JSON ({error.msg} at column {error.colno}): {text}"
        ) from None
    if not isinstance(arguments, dict):
        raise ConfigurationError(
            f'--predictor-args must be a JSON object such as {{"confidence_threshold": 0.8}}, '
            f"got: {text}"
        )
    return arguments


def _check_model(args: Any, archive: Archive, predictor_args: Dict[str, Any]) -> None:
    """
    An archive of another model with this package's predictor, or with its arguments, is one
    `ConfigurationError` (instead of a `TypeError` about an unexpected keyword argument).
    """
    ours = sorted(name for name in predictor_args if name in _EARLY_EXIT_PREDICTOR_ARGS)
    if args.predictor == "early_exit_classifier":
        check_early_exit_model(
            args.archive_file, archive, "the early_exit_classifier predictor needs one"
        )
    elif ours:
        check_early_exit_model(
            args.archive_file,
            archive,
            f"--predictor-args {', '.join(ours)}: arguments of the early_exit_classifier "
            "predictor, for early-exit models only",
        )


def get_predictor(args: Any) -> Predictor:
    """
    allennlp's `_get_predictor` for `allennlp predict`, with checks before the archive is loaded
    (the paths, see `check_predict_paths`, and `--predictor-args`) and one `ConfigurationError`
    for a value of the wrong type in `-o`, and for this package's predictor or its arguments with
    an archive of another model.
    """
    check_predict_paths(
        args.input_file,
        args.output_file,
        args.archive_file,
        args.weights_file,
        input_is_a_file=not args.use_dataset_reader,
    )
    if args.batch_size < 1:
        raise ConfigurationError(f"--batch-size must be at least 1, got {args.batch_size}")
    predictor_args = _predictor_args(args.predictor_args)
    # allennlp's load_archive, wrapped by `common/archive_errors.py` (also from Python): it checks
    # the overrides, the weights file and the GPU first, and names a wrong type in the overrides.
    archive = explain_archive_errors(allennlp_predict.load_archive)(
        args.archive_file,
        weights_file=args.weights_file,
        cuda_device=args.cuda_device,
        overrides=args.overrides,
    )
    _check_model(args, archive, predictor_args)
    return Predictor.from_archive(
        archive,
        args.predictor,
        dataset_reader_to_load=args.dataset_reader_choice,
        extra_args=predictor_args,
    )


def _utf8_line(line: str) -> str:
    """`line` (read with `errors="surrogateescape"`), or an error naming the undecodable byte."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as error:
        byte = ord(line[error.start]) - 0xDC00
        raise PredictorInputError(
            f"not valid UTF-8 (byte 0x{byte:02x} at character {error.start + 1}); input files "
            "must be UTF-8"
        ) from None
    return line


class EarlyExitPredictManager(allennlp_predict._PredictManager):
    """
    allennlp's `_PredictManager`, streaming batches through an early-exit predictor, checking its
    paths before it starts (see `check_predict_paths`) and writing its output file atomically.
    """

    def __init__(
        self,
        predictor: Predictor,
        input_file: str,
        output_file: Optional[str],
        batch_size: int,
        print_to_console: bool,
        has_dataset_reader: bool,
        multitask_head: Optional[str] = None,
    ) -> None:
        check_predict_paths(input_file, output_file, input_is_a_file=not has_dataset_reader)
        # allennlp would open (and empty) the output file here; `run` writes it atomically.
        super().__init__(
            predictor,
            input_file,
            None,
            batch_size,
            print_to_console,
            has_dataset_reader,
            multitask_head,
        )
        self._output_path = output_file

    @overrides
    def run(self) -> None:
        if self._output_path is None:
            self._predict_checked()
            return
        bad_input: Optional[Exception] = None
        with atomic_open(self._output_path, "w", encoding="utf-8") as output:
            self._output_file = output
            try:
                self._predict_checked()
            except _BAD_INPUT as error:  # the lines before a bad one are kept, as allennlp does
                bad_input = error
            finally:
                self._output_file = None
        if bad_input is not None:
            raise bad_input

    def _predict_checked(self) -> None:
        """`_predict`, with a failure of another model's predictor as one `ConfigurationError`."""
        try:
            self._predict()
        except (ConfigurationError,) + _BAD_INPUT:
            raise
        except Exception as error:
            model = self._predictor._model
            if isinstance(model, EarlyExitClassifier):
                raise
            raise ConfigurationError(
                f"the model is a {type(model).__name__}, not an early_exit_classifier, and its "
                f"{type(self._predictor).__name__} failed on {self._input_file}: "
                f"{type(error).__name__}: {error}"
            ) from error

    def _predict(self) -> None:
        predictor = self._predictor
        if not (
            isinstance(predictor, EarlyExitClassifierPredictor)
            and predictor.carry_rows
            and self._batch_size > 1
        ):
            super().run()
            return
        if self._dataset_reader is not None:
            pairs = predictor.predict_instance_stream(self._get_instance_data(), self._batch_size)
            describe = str
        else:
            pairs = predictor.predict_json_stream(self._get_json_data(), self._batch_size)
            describe = json.dumps
        for index, (model_input, output) in enumerate(pairs):
            self._maybe_print_to_console_and_file(
                index, predictor.dump_line(output), describe(model_input)
            )

    @overrides
    def _get_instance_data(self) -> Iterator[Instance]:
        """allennlp's (`--use-dataset-reader`), with a label the model does not know named."""
        vocab = self._predictor._model.vocab
        for instance in super()._get_instance_data():
            check_known_labels([instance], vocab, self._input_file, self._dataset_reader)
            yield instance

    @overrides
    def _get_json_data(self) -> Iterator[JsonDict]:
        """allennlp's, with the file and line number in the error for a bad line."""
        if self._input_file == "-":
            if hasattr(sys.stdin, "reconfigure"):
                sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
            yield from self._json_lines("stdin", sys.stdin)
            return
        input_file = cached_path(self._input_file)
        with open_compressed(input_file, errors="surrogateescape") as lines:
            yield from self._json_lines(self._input_file, lines)

    def _json_lines(self, source: str, lines: Iterable[str]) -> Iterator[JsonDict]:
        for number, line in enumerate(lines, start=1):
            if line.isspace():
                continue
            try:
                inputs = self._predictor.load_line(_utf8_line(line))
            except PredictorInputError as error:
                hint = ""
                if "\t" in line and not line.lstrip().startswith("{"):
                    hint = (
                        " (tab-separated, as the dataset reader reads: add --use-dataset-reader "
                        "to predict from it)"
                    )
                raise PredictorInputError(f"{source} line {number}: {error}{hint}") from None
            yield inputs


class ScopedPredictManager:
    """
    What `allennlp predict` builds its loop with: an `EarlyExitPredictManager` for a predictor of
    this package, or whose model or dataset reader is this package's; allennlp's own
    `_PredictManager` for any other, left as allennlp made it.
    """

    allennlp_manager = allennlp_predict._PredictManager

    def __new__(cls, predictor: Predictor, *args: Any, **kwargs: Any) -> Any:
        ours = (
            isinstance(predictor, EarlyExitClassifierPredictor)
            or isinstance(predictor._model, EarlyExitClassifier)
            or isinstance(predictor._dataset_reader, EarlyExitLineReader)
        )
        manager = EarlyExitPredictManager if ours else cls.allennlp_manager
        return manager(predictor, *args, **kwargs)
