"""
Where the layer runners that export their layers (`ExportedGraphRunner`) keep the graphs, so that
an export happens once per weights and settings: one rule for every such runner.
"""

import logging
import os
import tempfile
from typing import Callable, List, Optional

from early_exit.common.files import atomic_write

logger = logging.getLogger(__name__)

# The folder made beside a model archive (inside an extracted archive's folder) for its graphs.
BESIDE_ARCHIVE = "layer_runners"


def default_cache_dir() -> str:
    """`$EARLY_EXIT_CACHE/layer_runners`, else `~/.cache/early_exit/layer_runners`."""
    root = os.environ.get("EARLY_EXIT_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "early_exit"
    )
    return os.path.join(root, "layer_runners")


def beside_archive(archive_file: str) -> str:
    """The graph folder of a model archive: `layer_runners/` beside `model.tar.gz`, or inside the
    folder an archive was extracted to."""
    folder = archive_file if os.path.isdir(archive_file) else os.path.dirname(archive_file)
    return os.path.join(os.path.abspath(folder), BESIDE_ARCHIVE)


class GraphCache:
    """
    The folders a runner's graphs are looked up in and written to, in order: an explicit
    `cache_dir` alone; otherwise the folder beside the model's archive (when the model was loaded
    from one), then the user's cache (`default_cache_dir`). A graph is read from the first folder
    that has it and written to the first that can be written; when none can (a read-only archive
    folder and home, a full disk) it goes into a temporary folder of this process, with one warning
    naming the setting: that costs an export per run, not the run.

    # Parameters

    runner : `str`
        The runner's name, for the messages.
    cache_dir : `str`, optional
        The one folder to use, given by the user.
    archive_file : `str`, optional
        The archive the model's weights were loaded from.
    """

    def __init__(
        self, runner: str, cache_dir: Optional[str], archive_file: Optional[str] = None
    ) -> None:
        self.runner = runner
        if cache_dir is not None:
            self.folders = [cache_dir]
        else:
            self.folders = [beside_archive(archive_file)] if archive_file else []
            self.folders.append(default_cache_dir())
        self._unwritable: List[str] = []  # folders a write failed in, not tried again
        self._temporary: Optional[tempfile.TemporaryDirectory] = None
        self.fallback_dir: Optional[str] = None  # the temporary folder, once one was needed

    def find(self, name: str) -> Optional[str]:
        """The path of graph `name` in the first folder that holds it, else `None`."""
        for folder in self.folders + ([self.fallback_dir] if self.fallback_dir else []):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
        return None

    def write(self, name: str, make: Callable[[str], None]) -> str:
        """
        Writes graph `name` with `make(target)` (atomically) into the first writable folder;
        returns its path.
        """
        for folder in self.folders:
            if folder in self._unwritable:
                continue
            path = os.path.join(folder, name)
            try:
                atomic_write(path, make)
                return path
            except OSError as error:
                self._unwritable.append(folder)
                why = error.strerror or str(error)
                if folder != self.folders[-1]:
                    logger.info(
                        "layer_runner %s: cannot write its graphs to %s (%s); trying %s",
                        self.runner,
                        folder,
                        why,
                        self.folders[self.folders.index(folder) + 1],
                    )
                    continue
                self._warn_temporary(folder, why)
        if self.fallback_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="early_exit_layers_")
            self.fallback_dir = self._temporary.name
        path = os.path.join(self.fallback_dir, name)
        make(path)
        return path

    def _warn_temporary(self, folder: str, why: str) -> None:
        logger.warning(
            "layer_runner %s: cannot write its graphs to %s (%s); exporting into a temporary "
            "folder for this run only (set cache_dir or $EARLY_EXIT_CACHE to a writable folder "
            "to export once)",
            self.runner,
            folder,
            why,
        )
