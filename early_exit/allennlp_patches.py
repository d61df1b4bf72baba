"""
Every change this package makes to allennlp, in one place, each saying why and on what it acts:
this package's models, readers, predictors and archives, except where only an error message
changes. `install()` applies them all and is idempotent; `early_exit/__init__.py` calls it, so
`--include-package early_exit` (or the repo's `.allennlp_plugins`) is all a user needs. What each
wrapper does lives with the layer it belongs to (the readers' label check, the archive files, the
predictor's manager); only the patching is here.

| patch | allennlp's name | acts on | why |
| --- | --- | --- | --- |
| one error line | `sys.excepthook`, `common.logging.prepare_global_logging` | the `allennlp` command line only | user errors end in one `error: ...` line, also under `allennlp train`, whose logging replaces the hook |
| carried encoder | `archive_model` | archives of an `early_exit_classifier` | `model.tar.gz` carries the encoder's config and tokenizer files, so it loads on another machine |
| label check | `MultiProcessDataLoader.index_with`, `iter_instances` | this package's readers | a label training never saw is named with its file and line, not a `KeyError` |
| nested overrides | `common.params.with_overrides` | this package's blocks of a configuration | `-o '{"model": {...}}'` merges into them instead of replacing them |
| checked evaluate | `commands.evaluate.evaluate_from_archive` | archives whose model or reader is this package's | `evaluate --output-file` / `--predictions-output-file` never overwrite the data or the archive, and are written atomically |
| carried predict | `commands.predict._get_predictor`, `_PredictManager` | archives whose model or reader is this package's, and `--predictor early_exit_classifier` | `allennlp predict` streams batches through the model, checks paths first, writes atomically |
| archive errors | `load_archive` where the commands import it | every archive that cannot be read | a missing or truncated archive is named in one line, not an `EOFError`; only the error changes, never a load that works |
| archive path | the same `load_archive`s | archives of an `early_exit_classifier` | the model is told its archive's path, so that a layer runner's exported graphs are kept beside it (a second `allennlp predict` exports nothing); the load itself is unchanged |
| configuration errors | `Params.from_file`, `commands.train.train_model_from_file` | every configuration that cannot be read | a missing file, a Jsonnet error in it or in `-o`, a value of the wrong type: one line naming the file or the overrides; only the error changes |
| GPU check | `common.util.int_to_device` | every `--cuda-device` | torch 2's `torch.device(0)` means "the default accelerator" and fails on a machine without one before allennlp's `check_for_gpu` can say so; a fix, not a change |

No registered subcommand, callback or `Registrable` can take one of these over: allennlp's own
`train`, `evaluate` and `predict` call these names directly. `tests/allennlp_patches_test.py` trains,
evaluates and predicts allennlp's `basic_classifier` with and without `--include-package
early_exit` and finds the same archive, weights, metrics and predictions.
"""

import importlib
import os
from typing import Any, Callable, Dict, Iterator

import allennlp.models
import torch
from allennlp.commands import evaluate as allennlp_evaluate
from allennlp.commands import predict as allennlp_predict
from allennlp.commands import train as allennlp_train
from allennlp.common import logging as allennlp_logging
from allennlp.common import params as allennlp_params
from allennlp.common import util as allennlp_util
from allennlp.common.params import Params
from allennlp.data import Instance, Vocabulary
from allennlp.data.data_loaders import MultiProcessDataLoader
from allennlp.models import archival

from early_exit.commands.evaluate_outputs import checked_evaluation
from early_exit.common.archive_errors import (
    LOAD_ARCHIVE_MODULES,
    PACKAGE_PREFIX,
    archive_config,
    explain_archive_errors,
    uses_this_package,
)
from early_exit.common.cli_errors import install_hook, running_allennlp_cli
from early_exit.common.config_errors import configuration_errors_named, overridden_values_checked
from early_exit.common.encoder_files import carrying
from early_exit.common.overrides import merge_package_blocks
from early_exit.dataset_readers.label_check import check_known_labels
from early_exit.dataset_readers.line_reader import EarlyExitLineReader
from early_exit.models.archive_loading import telling_the_model_its_archive
from early_exit.predictors.predict_manager import ScopedPredictManager, get_predictor


def _marked(wrapper: Callable, wrapped: Callable) -> Callable:
    """`wrapper`, marked as this package's (so that installing again does nothing)."""
    wrapper._early_exit = True  # type: ignore[attr-defined]
    wrapper.__doc__ = wrapped.__doc__
    return wrapper


def _ours(function: Any) -> bool:
    return getattr(function, "_early_exit", False) or getattr(
        function, "_early_exit_carrying", False
    )


def install_cli_error_hook() -> None:
    """
    The one-line hook, under the `allennlp` command only (`EARLY_EXIT_TRACEBACK=1` keeps
    tracebacks). `allennlp train` calls `prepare_global_logging`, which sets `sys.excepthook` to
    allennlp's own (it logs every uncaught exception with its traceback), replacing ours after
    this package was imported: wrapped, ours goes back on top each time it runs, and exceptions
    that are not user errors still reach allennlp's hook.
    """
    if os.environ.get("EARLY_EXIT_TRACEBACK") or not running_allennlp_cli():
        return
    install_hook()
    current = allennlp_logging.prepare_global_logging
    if _ours(current):
        return

    def prepare_global_logging(*args, **kwargs) -> None:
        current(*args, **kwargs)
        install_hook()

    allennlp_logging.prepare_global_logging = _marked(prepare_global_logging, current)


def install_archive_errors() -> None:
    """
    allennlp's commands import `load_archive` by name: one wrapper in each module (errors named,
    and the archive's path given to an early-exit model).
    """
    for name in LOAD_ARCHIVE_MODULES:
        module = importlib.import_module(name)
        if not _ours(module.load_archive):
            module.load_archive = explain_archive_errors(
                telling_the_model_its_archive(module.load_archive)
            )


def install_encoder_archiving() -> None:
    """`archive_model`, where `allennlp train` and allennlp's own modules look it up."""
    for module in (archival, allennlp.models, allennlp_train):
        current = getattr(module, "archive_model", None)
        if current is not None and not _ours(current):
            module.archive_model = carrying(current)


def install_label_check() -> None:
    """
    `evaluate` indexes its data with the archive's vocabulary here: labels are checked first, for
    this package's readers (`EarlyExitLineReader`).
    """
    current = MultiProcessDataLoader.index_with
    if _ours(current):
        return

    def index_with(self: MultiProcessDataLoader, vocab: Vocabulary) -> None:
        # Only instances already in memory: a lazy loader indexes them as it reads.
        if self._instances and isinstance(self.reader, EarlyExitLineReader):
            check_known_labels(self._instances, vocab, self.data_path, self.reader)
        current(self, vocab)

    MultiProcessDataLoader.index_with = _marked(index_with, current)  # type: ignore[assignment]
    iter_instances = MultiProcessDataLoader.iter_instances

    def checked_iter_instances(self: MultiProcessDataLoader) -> Iterator[Instance]:
        # A lazy loader (`max_instances_in_memory`) indexes each instance as it reads it, so the
        # check runs after the fact: on a KeyError, the file is read again for the unknown label.
        try:
            yield from iter_instances(self)
        except KeyError:
            ours = isinstance(self.reader, EarlyExitLineReader)
            if ours and self._vocab is not None and self.data_path is not None:
                check_known_labels(
                    self.reader.read(self.data_path), self._vocab, self.data_path, self.reader
                )
            raise

    MultiProcessDataLoader.iter_instances = _marked(  # type: ignore[assignment]
        checked_iter_instances, iter_instances
    )


def install_nested_override_merge() -> None:
    """`Params.from_file` applies overrides with it: `predict`, `evaluate`, `train`, `from_path`."""
    current: Callable = allennlp_params.with_overrides
    if _ours(current):
        return

    def with_overrides(original: Any, overrides_dict: Dict[str, Any], prefix: str = "") -> Any:
        if not prefix and isinstance(original, dict):
            overrides_dict = merge_package_blocks(original, overrides_dict)
        return current(original, overrides_dict, prefix)

    allennlp_params.with_overrides = _marked(with_overrides, current)


def install_carried_predict() -> None:
    """
    `allennlp predict` builds its predictor and runs its loop through these two names: this
    package's for an archive whose model or reader is this package's (or `--predictor
    early_exit_classifier`), allennlp's own for every other.
    """
    current_get_predictor = allennlp_predict._get_predictor
    if _ours(current_get_predictor):
        return

    def _get_predictor(args: Any) -> Any:
        predictor = str(args.predictor or "")
        if predictor.startswith(PACKAGE_PREFIX) or uses_this_package(
            archive_config(args.archive_file)
        ):
            return get_predictor(args)
        return current_get_predictor(args)

    allennlp_predict._get_predictor = _marked(_get_predictor, current_get_predictor)
    allennlp_predict._PredictManager = ScopedPredictManager


def install_checked_evaluate() -> None:
    """
    `evaluate_from_args` looks `evaluate_from_archive` up in its module when it runs: checked for
    an archive whose model or reader is this package's, allennlp's own for every other.
    """
    current = allennlp_evaluate.evaluate_from_archive
    if _ours(current):
        return
    checked = checked_evaluation(current)

    def evaluate_from_archive(archive_file: Any, *args: Any, **kwargs: Any) -> Any:
        ours = uses_this_package(archive_config(archive_file))
        return (checked if ours else current)(archive_file, *args, **kwargs)

    allennlp_evaluate.evaluate_from_archive = _marked(evaluate_from_archive, current)


def install_configuration_errors() -> None:
    """Every command reads its configuration (or an archive's) through `Params.from_file`."""
    current = Params.from_file
    if _ours(current):
        return
    read = current.__func__  # type: ignore[attr-defined]

    def from_file(cls, params_file, params_overrides="", ext_vars=None) -> Params:  # type: ignore
        with configuration_errors_named(params_file, params_overrides):
            return read(cls, params_file, params_overrides, ext_vars)

    Params.from_file = classmethod(_marked(from_file, read))  # type: ignore[assignment]
    train_from_file = allennlp_train.train_model_from_file
    if _ours(train_from_file):
        return

    def train_model_from_file(parameter_filename: Any, *args: Any, **kwargs: Any) -> Any:
        overrides = kwargs.get("overrides", args[1] if len(args) > 1 else "")
        with overridden_values_checked(parameter_filename, overrides, whole_run=True):
            return train_from_file(parameter_filename, *args, **kwargs)

    # `train_model_from_args` looks it up in its module when it runs.
    allennlp_train.train_model_from_file = _marked(train_model_from_file, train_from_file)


def install_device_check() -> None:
    """`check_for_gpu` imports `int_to_device` from `common.util` each time it runs."""
    current = allennlp_util.int_to_device
    if _ours(current):
        return

    def int_to_device(device: Any) -> torch.device:
        if isinstance(device, int) and device >= 0:
            return torch.device("cuda", device)
        return current(device)

    allennlp_util.int_to_device = _marked(int_to_device, current)


def install() -> None:
    """Applies every patch above (idempotent)."""
    install_cli_error_hook()
    install_archive_errors()
    install_encoder_archiving()
    install_label_check()
    install_nested_override_merge()
    install_carried_predict()
    install_checked_evaluate()
    install_configuration_errors()
    install_device_check()
