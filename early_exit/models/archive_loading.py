import functools
import os
from os import PathLike
from typing import Any, Callable, Union

from allennlp.common.checks import ConfigurationError
from allennlp.models import archival
from allennlp.models.archival import Archive

from early_exit.common.archive_errors import explain_archive_errors
from early_exit.models.early_exit_classifier import EarlyExitClassifier


def load_early_exit_archive(
    archive_file: Union[str, PathLike], cuda_device: int = -1, overrides: str = ""
) -> Archive:
    """
    Loads a model archive and checks that it holds an `early_exit_classifier`.

    # Raises

    `ConfigurationError` naming the archive and the model type it holds, if it holds another model,
    or naming the overrides if they give a value of the wrong type.
    """
    # A missing or unreadable archive is an `ArchiveError` naming it, and a value of the wrong type
    # in the overrides is named with them, also from Python (`early_exit.common.archive_errors`).
    load_archive = explain_archive_errors(archival.load_archive)
    archive = load_archive(str(archive_file), cuda_device=cuda_device, overrides=overrides)
    check_early_exit_model(archive_file, archive)
    return archive


def check_early_exit_model(
    archive_file: Union[str, PathLike],
    archive: Archive,
    why: str = "only early-exit models can be calibrated, swept or predicted with early exit",
) -> None:
    """
    Raises a `ConfigurationError` naming the archive, the model type it holds and `why` it needs an
    `early_exit_classifier`, if it holds another model.
    """
    if not isinstance(archive.model, EarlyExitClassifier):
        model_type = archive.config.get("model").get("type", type(archive.model).__name__)
        raise ConfigurationError(
            f"{archive_file} holds a {model_type!r} model, not an early_exit_classifier; {why}"
        )


def telling_the_model_its_archive(load_archive: Callable[..., Archive]) -> Callable[..., Archive]:
    """
    Wraps allennlp's `load_archive`: an early-exit model loaded from a local archive (a
    `model.tar.gz` or the folder it was extracted to) is told its path
    (`LayerwiseTransformer.loaded_from`), so that its layer runner keeps what it builds once from
    the weights (exported graphs) beside the archive, and a second `allennlp predict` on it builds
    nothing. Nothing else of the load changes.
    """

    @functools.wraps(load_archive)
    def wrapper(archive_file: Any, *args: Any, **kwargs: Any) -> Archive:
        archive = load_archive(archive_file, *args, **kwargs)
        path = os.fspath(archive_file)
        if isinstance(archive.model, EarlyExitClassifier) and "://" not in path:
            if os.path.exists(path):
                archive.model.encoder.loaded_from(os.path.abspath(path))
        return archive

    wrapper._early_exit_archive_path = True  # type: ignore[attr-defined]
    return wrapper
