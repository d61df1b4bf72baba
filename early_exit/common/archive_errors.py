"""
A model archive that does not exist or cannot be read, reported in one line that names it.

allennlp's `load_archive` fails on a missing archive with `FileNotFoundError: file ... not found`
and on a truncated or corrupt one with, e.g., `EOFError: Compressed file ended before the
end-of-stream marker was reached`, which does not name the archive. Importing `early_exit` wraps
`load_archive` where allennlp's `evaluate` and `predict` commands and `Predictor.from_path` look it
up (they import it by name, hence one wrapper per module) so that both become an `ArchiveError`,
which the command line prints as one `error: ...` line. A value of the wrong type in the
overrides (`-o '{"model.confidence_threshold": "abc"}'`) is named in one line too.
"""

import contextlib
import functools
import os
import tarfile
import zlib
from os import PathLike
from typing import Any, Callable, Dict, Iterator, Union

from allennlp.common.checks import ConfigurationError

from early_exit.common.cli_errors import UserError

# The modules that hold a reference to allennlp's `load_archive` that the commands use.
LOAD_ARCHIVE_MODULES = (
    "allennlp.models.archival",
    "allennlp.models",
    "allennlp.commands.evaluate",
    "allennlp.commands.predict",
    "allennlp.predictors.predictor",
)


class ArchiveError(UserError, OSError):
    """Raised for a model archive that does not exist or is not a readable archive."""


@contextlib.contextmanager
def overridden_values_checked(
    archive_file: Union[str, PathLike], overrides: Union[str, Dict[str, Any]]
) -> Iterator[None]:
    """
    Around loading an archive with `overrides`: a value of the wrong type in the overrides (e.g.
    `-o '{"model.confidence_threshold": "abc"}'`), which allennlp's `from_params` reports as a
    `TypeError` ("Expected confidence_threshold to be numeric."), becomes a `ConfigurationError`
    naming the archive and the overrides. Without overrides a `TypeError` is left as it is (the
    archive's own configuration was loadable when it was trained).
    """
    try:
        yield
    except TypeError as error:
        if not overrides:
            raise
        raise ConfigurationError(
            f"{archive_file} with the overrides {overrides}: {error}"
        ) from error


def explain_archive_errors(load_archive: Callable[..., Any]) -> Callable[..., Any]:
    """
    Wraps a `load_archive` function: a missing local archive and an unreadable one (truncated,
    corrupt, not a gzipped tar file) raise an `ArchiveError` naming the archive; everything else
    is unchanged. With overrides, a `TypeError` from a value of the wrong type in them is named
    with the overrides (`overridden_values_checked`).
    """
    if getattr(load_archive, "_early_exit", False):
        return load_archive

    @functools.wraps(load_archive)
    def wrapper(archive_file: Any, *args: Any, **kwargs: Any) -> Any:
        path = os.fspath(archive_file)
        # load_archive(archive_file, cuda_device=-1, overrides="", weights_file=None)
        overrides = kwargs.get("overrides", args[1] if len(args) > 1 else "")
        try:
            with overridden_values_checked(path, overrides):
                return load_archive(archive_file, *args, **kwargs)
        except FileNotFoundError as error:
            if "://" in str(path) or os.path.exists(path):
                raise  # a file missing inside an archive directory, or a remote one: allennlp's
            raise ArchiveError(f"{path}: model archive not found") from error
        except (EOFError, tarfile.TarError, zlib.error) as error:
            raise ArchiveError(
                f"{path}: not a readable model archive, truncated or corrupt ({error})"
            ) from error

    wrapper._early_exit = True  # type: ignore[attr-defined]
    return wrapper
