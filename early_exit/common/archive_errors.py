"""
A model archive that does not exist or cannot be read, reported in one line that names it.

allennlp's `load_archive` fails on a missing archive with `FileNotFoundError: file ... not found`
and on a truncated or corrupt one with, e.g., `EOFError: Compressed file ended before the
end-of-stream marker was reached`, which does not name the archive. Both become an `ArchiveError`,
which the command line prints as one `error: ...` line: this package's own loaders wrap
`load_archive` when they call it, and under the `allennlp` command line importing `early_exit`
wraps it where allennlp's `evaluate` and `predict` commands and `Predictor.from_path` look it up
(they import it by name, hence one wrapper per module; see `allennlp_patches.py`). Checked before loading: the overrides, a
missing weights file, a directory that is not an extracted archive, and a GPU the machine does
not have; a value of the wrong type in the overrides
(`-o '{"model.confidence_threshold": "abc"}'`) is named with them (`common/config_errors.py`).
"""

import functools
import json
import os
import tarfile
import zlib
from typing import Any, Callable, Dict, Optional

from early_exit.common.cli_errors import UserError
from early_exit.common.config_errors import (
    check_cuda_device,
    checked_overrides,
    overridden_values_checked,
)

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
        cuda_device = kwargs.get("cuda_device", args[0] if args else -1)
        overrides = kwargs.get("overrides", args[1] if len(args) > 1 else "")
        weights_file = kwargs.get("weights_file", args[2] if len(args) > 2 else None)
        checked_overrides(overrides)
        check_cuda_device(cuda_device)
        if weights_file and "://" not in str(weights_file) and not os.path.isfile(weights_file):
            raise ArchiveError(f"{weights_file}: weights file not found")
        if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
            raise ArchiveError(
                f"{path}: a directory without config.json, not a model archive (give its "
                "model.tar.gz, or the folder it was extracted to)"
            )
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


# What this package registers starts with this: `early_exit_classifier`, its readers and predictor.
PACKAGE_PREFIX = "early_exit"


def archive_config(archive_file: Any) -> Optional[Dict[str, Any]]:
    """
    The `config.json` of a local model archive (a `.tar.gz` or the folder it was extracted to),
    read without loading the model; `None` where there is none to read (a remote or missing
    archive, an unreadable one: loading it then reports why).
    """
    path = os.fspath(archive_file)
    try:
        if os.path.isdir(path):
            with open(os.path.join(path, "config.json"), encoding="utf-8") as config_file:
                return json.load(config_file)
        with tarfile.open(path) as archive:
            member = archive.extractfile("config.json")
            return None if member is None else json.load(member)
    except (OSError, KeyError, ValueError, EOFError, tarfile.TarError, zlib.error):
        return None


def uses_this_package(config: Optional[Dict[str, Any]]) -> bool:
    """Whether a configuration's model or one of its dataset readers is this package's."""
    if not isinstance(config, dict):
        return False
    blocks = [config.get(key) for key in ("model", "dataset_reader", "validation_dataset_reader")]
    return any(
        isinstance(block, dict) and str(block.get("type", "")).startswith(PACKAGE_PREFIX)
        for block in blocks
    )
