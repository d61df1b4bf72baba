"""Converters from the datasets' distributed formats to the TSV splits our readers read.

Run `python -m early_exit.data.prepare --help` for the command line; [`prepare`][] is the same
from Python.
"""

from early_exit.data.prepare.core import PrepareError
from early_exit.data.prepare.runner import DATASETS, Report, prepare

__all__ = ["DATASETS", "PrepareError", "Report", "prepare"]
