"""
Output files that never cost the user a file: checks made before any work, and atomic writes.

Every command of this package (and `allennlp predict` as it runs here) names its inputs and outputs
to `check_output_paths` before it loads anything: an output that is one of the inputs or another
output (the same file however it is spelled: relative or absolute, through a symbolic link, a hard
link), a directory, or a place that cannot be written is refused with a `ConfigurationError`.
Outputs are then written with `atomic_path` / `atomic_open` / `atomic_write`: into a hidden
temporary file in the output's folder, moved over the output with `os.replace` only once complete,
and removed on failure, so a failure or an interruption never leaves half a file under the
output's name, and never touches the old file. A temporary left by a killed process (SIGKILL gives
no chance to clean up) is removed by the next write of the same output on the same machine, once
the process that made it is gone; a temporary is never read, so one that stays is harmless.
A write that fails for want of room (a full disk, a quota, a file too large, a read-only or
failing device) is an `OutputWriteError` naming the output (`write_errors_named`), not a bare
`[Errno 28] No space left on device`; `naming_failed_writes` does the same for a writer of
allennlp's (the files `allennlp train` writes).

This module imports only `common.cli_errors` from the package, so that every layer may use it.
"""

import contextlib
import errno
import functools
import inspect
import logging
import os
import re
import socket
import stat
import sys
import uuid
from typing import IO, Any, Callable, Iterator, Mapping, Optional, Sequence, Tuple, Union

from allennlp.common.checks import ConfigurationError

from early_exit.common.cli_errors import UserError

PathType = Union[str, os.PathLike]
# (what the path is, e.g. "data file"; the path). `None` paths are skipped.
NamedPath = Tuple[str, Optional[PathType]]

_TEMPORARY_SUFFIX = ".tmp"
_TORCH_CHECK = re.compile(r"^\[enforce fail at [^\]]*\][ .]*")
# The errors of a write that did not fit (or could not land), as opposed to a bad path.
_WRITE_ERRNOS = frozenset(
    code
    for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG, errno.EIO, errno.EROFS)
    if code is not None
)


class OutputWriteError(UserError, OSError):
    """
    An output could not be written: `"cannot write out/preds.jsonl: No space left on device"`.
    Its `errno` is the failed write's.
    """

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = code

    def __reduce__(self):
        return (type(self), (str(self), self.errno))


def _failed_write(error: BaseException) -> bool:
    if isinstance(error, OutputWriteError):
        return False  # named already, by a writer inside
    if isinstance(error, OSError):
        return error.errno in _WRITE_ERRNOS
    # `torch.save` reports a failed write as a RuntimeError of its stream writer, in the words of
    # where it noticed: "file write failed", "unexpected pos" (the file's position is short),
    # "basic_ios::clear: iostream error" (at the end of the file).
    return isinstance(error, RuntimeError) and any(
        text in str(error) for text in ("file write failed", "unexpected pos", "iostream error")
    )


def _named(error: BaseException, paths: Sequence[PathType]) -> OutputWriteError:
    # torch's writer prefixes where in its C++ the check failed: "[enforce fail at x.cc:672] . "
    reason = getattr(error, "strerror", None) or _TORCH_CHECK.sub("", str(error))
    names = " or ".join(os.fspath(path) for path in paths)
    return OutputWriteError(f"cannot write {names}: {reason}", getattr(error, "errno", None))


@contextlib.contextmanager
def write_errors_named(*paths: PathType) -> Iterator[None]:
    """
    Turns a failed write inside (see `_WRITE_ERRNOS`) into an `OutputWriteError` naming `paths`
    (the files being written, as the user gave them); other errors pass unchanged.
    """
    try:
        yield
    except Exception as error:
        if not _failed_write(error):
            raise
        raise _named(error, paths) from error


def naming_failed_writes(
    write: Callable[..., Any], files: Callable[[Mapping[str, Any]], Sequence[PathType]]
) -> Callable[..., Any]:
    """
    `write` (a function or method that writes files, e.g. one of allennlp's), whose failed write
    (see `write_errors_named`) is an `OutputWriteError` naming `files(arguments)`: the files that
    the call's arguments (by parameter name, defaults included) say it writes.
    """
    signature = inspect.signature(write)

    @functools.wraps(write)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return write(*args, **kwargs)
        except Exception as error:
            if not _failed_write(error):
                raise
            arguments = signature.bind(*args, **kwargs)
            arguments.apply_defaults()
            raise _named(error, files(arguments.arguments)) from error

    wrapper._early_exit_named_writes = True  # type: ignore[attr-defined]
    return wrapper


def naming_failed_log_writes(handler: logging.FileHandler) -> None:
    """
    A log file that cannot be written (a full disk) is said once, in a `warning: ...` line that
    names it, and then no longer written; logging's default prints a traceback for every record
    (hundreds in one `allennlp train`). A write of the run's own outputs names its file as it fails.
    """
    default = handler.handleError

    def handle_error(record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if error is None or not _failed_write(error):
            default(record)
            return
        print(
            f"warning: {_named(error, [handler.baseFilename])}; stopped writing it", file=sys.stderr
        )
        handler.setLevel(logging.CRITICAL + 1)  # no record reaches it any more

    handler.handleError = handle_error  # type: ignore[method-assign]


def is_local(path: PathType) -> bool:
    """A path on this machine (not a URL such as `https://...` or `s3://...`, not stdin `-`)."""
    path = os.fspath(path)
    return "://" not in path and path != "-"


def display_path(path: PathType, root: PathType) -> str:
    """
    `path` as a report names it: relative to `root` (e.g. the clone a benchmark ran in) when it
    lies inside it, so that the printed command runs in any clone; otherwise as given.
    """
    resolved, root = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([resolved, root]) == root:
        return os.path.relpath(resolved, root)
    return os.fspath(path)


def same_file(first: PathType, second: PathType) -> bool:
    """
    Whether two paths name the same file: the same inode where both exist (hard and symbolic links
    included), otherwise the same path once symbolic links, `.` and `..` are resolved.
    """
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(first) == os.path.realpath(second)


def _is_special(path: str) -> bool:
    """A device or pipe such as `/dev/stdout` or `/dev/null`: written in place, not replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(path: PathType, what: str = "output file") -> None:
    """
    Raises a `ConfigurationError` if `path` cannot be written as a file: it is a directory, or its
    folder neither exists nor can be created (a file stands in the way, no write permission).
    Creates nothing.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ConfigurationError(f"the {what} {path} is a directory; give a file name")
    if _is_special(path):
        return
    folder = os.path.dirname(path)
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise ConfigurationError(
            f"cannot write the {what} {path}: {existing} is a file, not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"cannot write the {what} {path}: the folder {existing} is not writable"
        )


def check_output_paths(inputs: Sequence[NamedPath], outputs: Sequence[NamedPath]) -> None:
    """
    Refuses, before any work, outputs that would destroy an input or another output, or that
    cannot be written (see `check_writable`). Paths that are `None`, URLs or `-` are skipped.

    # Parameters

    inputs : `Sequence[Tuple[str, Optional[PathLike]]]`
        What each input is (`"data file"`) and its path, e.g. `[("input archive", "model.tar.gz")]`.
    outputs : `Sequence[Tuple[str, Optional[PathLike]]]`
        The same for the files the command writes.

    # Raises

    `ConfigurationError` naming the output and the file it would overwrite.
    """
    local_inputs = [(what, os.fspath(path)) for what, path in inputs if path and is_local(path)]
    checked: list = []
    for what, path in outputs:
        if not path or not is_local(path):
            continue
        path = os.fspath(path)
        for input_what, input_path in local_inputs:
            if same_file(path, input_path):
                raise ConfigurationError(
                    f"the {what} {path} is the {input_what} {input_path}; refusing to overwrite "
                    "an input"
                )
        for other_what, other_path in checked:
            if same_file(path, other_path):
                raise ConfigurationError(
                    f"the {what} {path} is also the {other_what} {other_path}; give each output "
                    "its own file"
                )
        check_writable(path, what)
        checked.append((what, path))


def _temporary_prefix(name: str) -> str:
    return f".{name}."


def _stale(temporary_name: str, prefix: str, host: str) -> bool:
    """Whether a temporary of this output was left by a process of this machine that is gone."""
    if not (temporary_name.startswith(prefix) and temporary_name.endswith(_TEMPORARY_SUFFIX)):
        return False
    parts = temporary_name[len(prefix) : -len(_TEMPORARY_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False  # another output's temporary, or another machine's (on a shared disk)
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def remove_stale_temporaries(path: PathType) -> None:
    """Removes the temporaries of `path` that processes of this machine left when killed."""
    folder, name = os.path.split(os.path.abspath(path))
    prefix, host = _temporary_prefix(name), socket.gethostname()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for candidate in names:
        if _stale(candidate, prefix, host):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, candidate))


@contextlib.contextmanager
def atomic_path(path: PathType) -> Iterator[str]:
    """
    Yields a temporary path in the folder of `path` (created if needed) for the caller to write;
    on a normal exit moves it over `path` (keeping the old file's permissions), on an exception
    removes it and leaves `path` as it was. A symbolic link is written through, as `open` would.
    A hard link to the old file keeps the old content (the trainer hard-links its best weights).
    A device or pipe (`/dev/stdout`) cannot be replaced: its own path is yielded and written.
    """
    given = os.fspath(path)
    if _is_special(given):
        with write_errors_named(given):
            yield given
        return
    path = os.path.realpath(given)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    token = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    temporary = os.path.join(folder, f"{_temporary_prefix(name)}{token}{_TEMPORARY_SUFFIX}")
    try:
        with write_errors_named(given):
            yield temporary
            if os.path.exists(path):
                os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def atomic_write(path: PathType, write: Callable[[str], None]) -> None:
    """Writes `path` with `write(temporary_path)`, atomically (see `atomic_path`)."""
    with atomic_path(path) as temporary:
        write(temporary)


@contextlib.contextmanager
def atomic_open(path: PathType, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open(path, mode, **kwargs)` for writing, atomically (see `atomic_path`)."""
    with atomic_path(path) as temporary:
        with open(temporary, mode, **kwargs) as handle:
            yield handle
