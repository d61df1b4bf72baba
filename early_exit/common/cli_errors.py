"""
Clear errors instead of traceback dumps for users of the `allennlp` command line.

allennlp's own commands (`predict`, `evaluate`, `train`) let every exception end the process with a
traceback. For the errors that describe a user's input or settings (a bad data line, a predictor
line without the expected keys, a threshold outside [0, 1], an archive of another model type), this
package installs, only when the running program is the `allennlp` command, an exception hook that
prints `error: <message>` and exits with status 1. Any other exception keeps its traceback; set
`EARLY_EXIT_TRACEBACK=1` to see tracebacks for all of them.
"""

import logging
import os
import sys
from types import TracebackType
from typing import NoReturn, Tuple, Type

from allennlp.common.checks import ConfigurationError


def _user_errors() -> Tuple[Type[BaseException], ...]:
    from early_exit.dataset_readers import DataFormatError
    from early_exit.predictors.early_exit_classifier import PredictorInputError
    from early_exit.sweep.run import SweepInputError

    return ConfigurationError, DataFormatError, PredictorInputError, SweepInputError


def print_user_error(error: BaseException) -> None:
    """Prints `error` as one `error: ...` line on stderr (whitespace runs, newlines included, collapsed)."""
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
    return os.path.basename(program) == "allennlp" or program.endswith(
        os.path.join("allennlp", "__main__.py")
    )


def install_cli_error_hook() -> None:
    """Installs the hook (idempotent); does nothing outside the `allennlp` command."""
    if os.environ.get("EARLY_EXIT_TRACEBACK") or not running_allennlp_cli():
        return
    if getattr(sys.excepthook, "_early_exit", False):
        return
    previous = sys.excepthook
    user_errors = _user_errors()

    def hook(exc_type: Type[BaseException], exc: BaseException, traceback: TracebackType) -> None:
        if issubclass(exc_type, user_errors):
            print_user_error(exc)
            print("(set EARLY_EXIT_TRACEBACK=1 for the full traceback)", file=sys.stderr)
            return
        previous(exc_type, exc, traceback)

    hook._early_exit = True  # type: ignore[attr-defined]
    sys.excepthook = hook
