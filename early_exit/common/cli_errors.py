"""
Clear errors instead of traceback dumps for users of the `allennlp` command line.

allennlp's own commands (`predict`, `evaluate`, `train`) let every exception end the process with a
traceback. For the errors that describe a user's input or settings (a bad data line, a missing or
empty data file, a label the model does not know, a missing or truncated archive, a predictor line
without the expected keys, a threshold outside [0, 1], an archive of another model type), this
package installs, only when the running program is the `allennlp` command, an exception hook that
prints `error: <message>` and exits with status 1, also for such an error raised in a worker
process (distributed training, data loader workers), which reaches the main process as text. Any
other exception keeps its traceback; set `EARLY_EXIT_TRACEBACK=1` to see tracebacks for all of them.

This module imports nothing from the rest of the package: the package's user errors derive from
`UserError`, and allennlp's `ConfigurationError` counts as one too.
"""

import logging
import os
import re
import sys
from types import TracebackType
from typing import NoReturn, Optional, Tuple, Type, Union

from allennlp.common.checks import ConfigurationError


class UserError(Exception):
    """
    Base of this package's exceptions about what a user gave (files, data, settings). The message
    alone says what is wrong and where, so the command line prints it as one `error: ...` line.
    Subclasses also derive from the built-in exception that fits (`ValueError`, `OSError`, ...).
    """


USER_ERRORS: Tuple[Type[BaseException], ...] = (ConfigurationError, UserError)


def print_user_error(error: Union[BaseException, str]) -> None:
    """
    Prints `error` as one `error: ...` line on stderr (whitespace runs, newlines included,
    collapsed).
    """
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)


def exit_with_user_error(error: BaseException, logger: logging.Logger) -> NoReturn:
    """
    For this package's own commands: logs the traceback at debug level, prints the one-line error
    and exits with status 1.
    """
    logger.debug("%s: %s", type(error).__name__, error, exc_info=error)
    print_user_error(error)
    sys.exit(1)


def running_allennlp_cli() -> bool:
    program = sys.argv[0] if sys.argv else ""
    # `early-exit` is the same command line (`early_exit_startup.main`).
    return os.path.basename(program) in ("allennlp", "early-exit") or program.endswith(
        os.path.join("allennlp", "__main__.py")
    )


def _log_to_files(exc_info: Tuple[Type[BaseException], BaseException, TracebackType]) -> None:
    """
    Writes the error with its traceback to the root logger's log files only (`allennlp train`'s
    `out.log`), so the serialization directory records why training stopped; stderr keeps one line.
    """
    record = logging.LogRecord("early_exit", logging.CRITICAL, "", 0, "User error", (), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def user_error_in_another_process(error: BaseException) -> Optional[str]:
    """
    The message of a user error raised in another process, when `error` carries that process's
    traceback as text: torch's `ProcessRaisedException` (a worker of distributed training) and
    allennlp's `WorkerError` (a data loader worker). Their last line is `module.Class: message`;
    `None` unless that class is a user error (or the message spans lines).
    """
    if type(error).__name__ not in ("ProcessRaisedException", "WorkerError"):
        return None
    lines = str(error).rstrip().splitlines()
    match = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\.(\w+): (.+)", lines[-1]) if lines else None
    if match is None:
        return None
    error_class = getattr(sys.modules.get(match.group(1)), match.group(2), None)
    if isinstance(error_class, type) and issubclass(error_class, USER_ERRORS):
        return match.group(3)
    return None


def install_hook() -> None:
    """Puts the one-line hook over `sys.excepthook` (idempotent)."""
    if getattr(sys.excepthook, "_early_exit", False):
        return
    previous = sys.excepthook

    def hook(exc_type: Type[BaseException], exc: BaseException, traceback: TracebackType) -> None:
        message = user_error_in_another_process(exc)
        if issubclass(exc_type, USER_ERRORS) or message is not None:
            _log_to_files((exc_type, exc, traceback))
            print_user_error(exc if message is None else message)
            print("(set EARLY_EXIT_TRACEBACK=1 for the full traceback)", file=sys.stderr)
            return  # the interpreter then exits with status 1
        previous(exc_type, exc, traceback)

    hook._early_exit = True  # type: ignore[attr-defined]
    sys.excepthook = hook
