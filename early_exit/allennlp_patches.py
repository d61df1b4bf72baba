"""
Every change this package makes to allennlp, in one place, each saying why and on what it acts.
`install()` applies them (idempotent); `early_exit/__init__.py` calls it, so `--include-package
early_exit` (or the repo's `.allennlp_plugins`) is all a user needs. Imported from Python (a
notebook, a server, another package's tests), only the patches that act on this package's own
models, readers, predictors and archives apply; those that change only the errors of every
archive and configuration apply under the `allennlp` (or `early-exit`) command line only, where
they end in one `error: ...` line. From Python, this package's own loaders name the errors of its
archives themselves (`load_early_exit_archive`, the carried predict). What each wrapper does lives
with the layer it belongs to (the readers' label check, the archive files, the predictor's
manager); only the patching is here.

| patch | allennlp's name | acts on | why |
| --- | --- | --- | --- |
| one error line | `sys.excepthook`, `common.logging.prepare_global_logging` | the `allennlp` command line only | user errors end in one `error: ...` line, also under `allennlp train`, whose logging replaces the hook |
| carried encoder | `archive_model` | archives of an `early_exit_classifier` | `model.tar.gz` carries the encoder's config and tokenizer files, so it loads on another machine |
| label check | `MultiProcessDataLoader.index_with`, `iter_instances` | this package's readers | a label training never saw is named with its file and line, not a `KeyError` |
| nested overrides | `common.params.with_overrides` | this package's blocks of a configuration; the error of every one | `-o '{"model": {...}}'` merges into them instead of replacing them; an override key that sets nothing is named in one line, not a `ValueError` |
| checked evaluate | `commands.evaluate.evaluate_from_archive` | archives whose model or reader is this package's | `evaluate --output-file` / `--predictions-output-file` never overwrite the data or the archive, and are written atomically |
| carried predict | `commands.predict._get_predictor`, `_PredictManager` | archives whose model or reader is this package's, and `--predictor early_exit_classifier` | `allennlp predict` streams batches through the model, checks paths first, writes atomically |
| archive errors | `load_archive` where the commands import it | the `allennlp` command line only | a missing or truncated archive is named in one line, not an `EOFError`; only the error changes, never a load that works |
| archive path | `load_archive` where the commands and predictors import it | archives of an `early_exit_classifier` | the model is told its archive's path, so that a layer runner's exported graphs are kept beside it (a second `allennlp predict` exports nothing); the load itself is unchanged |
| configuration errors | `Params.from_file`, `commands.train.train_model_from_file` | the `allennlp` command line only | a missing file, a Jsonnet error in it or in `-o`, a value of the wrong type: one line naming the file or the overrides; only the error changes |
| named failed writes | `Params.to_file`, `Meta.to_file`, `Vocabulary.save_to_files`, `common.util.dump_metrics`, `Checkpointer.save_checkpoint`, `GradientDescentTrainer._save_model_state`, `archive_model`, `common.logging.prepare_global_logging` | the `allennlp` command line only (every file `allennlp train` writes) | a full disk (quota, read-only device) names the file in one line, not `[Errno 28]` or torch's `unexpected pos` with a traceback (for `out.log`, a traceback per record); only the error changes |
| GPU check | `common.util.int_to_device` | the `allennlp` command line only | `check_for_gpu` (train's `trainer.cuda_device`) looks it up each time; torch 2's `torch.device(0)` fails on a machine without an accelerator before allennlp can say "none is available". Every other allennlp module bound the name at import, so only that error changes |

No registered subcommand, callback or `Registrable` can take one of these over. allennlp's own
`train`, `evaluate` and `predict` call these names directly, and a `predict` registered again
(`Subcommand.register("predict", exist_ok=True)`) is never run: `allennlp predict` builds its
parser and binds `args.func` to allennlp's `_predict` before it imports the plugins
(`allennlp.commands.parse_args`), so the carried predict stays a patch of the two names `_predict`
looks up when it runs. `tests/allennlp_patches_test.py` trains, evaluates and predicts allennlp's
`basic_classifier` with and without `--include-package early_exit` and finds the same archive,
weights, metrics and predictions, and checks which names an import from Python rebinds.
"""

import functools
import importlib
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Tuple

import allennlp.models
import torch
from allennlp.commands import evaluate as allennlp_evaluate
from allennlp.commands import predict as allennlp_predict
from allennlp.commands import train as allennlp_train
from allennlp.common import logging as allennlp_logging
from allennlp.common import params as allennlp_params
from allennlp.common import util as allennlp_util
from allennlp.common.meta import Meta
from allennlp.common.params import Params
from allennlp.data import Instance, Vocabulary
from allennlp.data.data_loaders import MultiProcessDataLoader
from allennlp.models import archival
from allennlp.training import GradientDescentTrainer
from allennlp.training.checkpointer import Checkpointer

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
from early_exit.common.files import naming_failed_log_writes, naming_failed_writes
from early_exit.common.overrides import merge_package_blocks, unknown_overrides_named
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
    """allennlp's commands import `load_archive` by name: one wrapper in each module."""
    for name in LOAD_ARCHIVE_MODULES:
        module = importlib.import_module(name)
        if not _ours(module.load_archive):
            module.load_archive = explain_archive_errors(module.load_archive)


def install_archive_path() -> None:
    """
    An early-exit model loaded through any of allennlp's `load_archive`s (also `Predictor.from_path`
    from Python) is told its archive's path, so its layer runner keeps exported graphs beside it.
    """
    for name in LOAD_ARCHIVE_MODULES:
        module = importlib.import_module(name)
        if not getattr(module.load_archive, "_early_exit_archive_path", False):
            module.load_archive = telling_the_model_its_archive(module.load_archive)


# Where `allennlp train` and allennlp's own modules look `archive_model` up.
_ARCHIVE_MODEL_MODULES = (archival, allennlp.models, allennlp_train)


def install_encoder_archiving() -> None:
    """`archive_model`, where `allennlp train` and allennlp's own modules look it up."""
    for module in _ARCHIVE_MODEL_MODULES:
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
        if prefix or not isinstance(original, dict):
            return current(original, overrides_dict, prefix)
        overrides_dict = merge_package_blocks(original, overrides_dict)
        with unknown_overrides_named(original, overrides_dict):
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
    """
    `check_for_gpu` imports `int_to_device` from `common.util` each time it runs; the modules that
    move models and batches imported it once, so this changes only `check_for_gpu`'s error.
    """
    current = allennlp_util.int_to_device
    if _ours(current):
        return

    def int_to_device(device: Any) -> torch.device:
        if isinstance(device, int) and device >= 0:
            return torch.device("cuda", device)
        return current(device)

    allennlp_util.int_to_device = _marked(int_to_device, current)


def _checkpoint_files(checkpointer: Checkpointer, trainer: Any) -> List[str]:
    """The two files `save_checkpoint` writes for the trainer's current state."""
    state = trainer.get_checkpoint_state()
    if state is None:
        return [str(checkpointer._serialization_dir)]
    done = (
        state.trainer_state["epochs_completed"],
        state.trainer_state["batches_in_epoch_completed"],
    )
    return [checkpointer._model_state_path(*done), checkpointer._training_state_path(*done)]


def _archive_file(arguments: Mapping[str, Any]) -> List[str]:
    """The archive `archive_model` writes: `archive_path` (a file or a folder) or the default."""
    path = arguments["archive_path"] or arguments["serialization_dir"]
    if os.path.isdir(path):
        path = os.path.join(path, "model.tar.gz")
    return [os.fspath(path)]


# allennlp's writers of `allennlp train`'s files, and which files a call writes.
_TRAIN_WRITERS: Tuple[Tuple[Any, str, Callable[[Mapping[str, Any]], List[Any]]], ...] = (
    (Params, "to_file", lambda arguments: [arguments["params_file"]]),  # config.json
    (Meta, "to_file", lambda arguments: [arguments["path"]]),  # meta.json
    (Vocabulary, "save_to_files", lambda arguments: [arguments["directory"]]),  # vocabulary/
    (allennlp_util, "dump_metrics", lambda arguments: [arguments["file_path"]]),  # metrics*.json
    (Checkpointer, "save_checkpoint", lambda a: _checkpoint_files(a["self"], a["trainer"])),
    (GradientDescentTrainer, "_save_model_state", lambda arguments: [arguments["path"]]),  # best.th
    *((module, "archive_model", _archive_file) for module in _ARCHIVE_MODEL_MODULES),
)


def install_train_write_errors() -> None:
    """
    A failed write of `allennlp train` (a full disk, a quota, a read-only or failing device) names
    the file, instead of a traceback of `[Errno 28] No space left on device` (or torch's
    `unexpected pos`) that names none. Only the error changes.
    """
    for owner, name, files in _TRAIN_WRITERS:
        current = getattr(owner, name)
        if not getattr(current, "_early_exit_named_writes", False):
            setattr(owner, name, naming_failed_writes(current, files))
    # `out.log`: allennlp's `prepare_global_logging` opens it as a root FileHandler.
    prepare = allennlp_logging.prepare_global_logging
    if getattr(prepare, "_early_exit_named_writes", False):
        return

    @functools.wraps(prepare)
    def prepare_global_logging(*args: Any, **kwargs: Any) -> None:
        prepare(*args, **kwargs)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                naming_failed_log_writes(handler)

    prepare_global_logging._early_exit_named_writes = True  # type: ignore[attr-defined]
    allennlp_logging.prepare_global_logging = prepare_global_logging


# The patches that change only errors, of every archive and configuration: command line only.
ERROR_PATCHES = (
    install_cli_error_hook,
    install_archive_errors,
    install_configuration_errors,
    install_device_check,
    install_train_write_errors,
)


def install() -> None:
    """
    Applies the patches that act on this package only, and under the `allennlp` command line
    the `ERROR_PATCHES` too (idempotent).
    """
    install_encoder_archiving()
    install_archive_path()
    install_label_check()
    install_nested_override_merge()
    install_carried_predict()
    install_checked_evaluate()
    if running_allennlp_cli():
        for install_error_patch in ERROR_PATCHES:
            install_error_patch()
