from early_exit.dataset_readers.errors import (
    DataFileNotFoundError,
    DataFormatError,
    NoInstancesError,
    UnknownLabelError,
)
from early_exit.dataset_readers.indexed import read_indexed
from early_exit.dataset_readers.line_reader import EarlyExitLineReader
from early_exit.dataset_readers.nli import EarlyExitNliReader
from early_exit.dataset_readers.text_classification import EarlyExitTextClassificationReader

__all__ = [
    "DataFileNotFoundError",
    "DataFormatError",
    "EarlyExitLineReader",
    "EarlyExitNliReader",
    "EarlyExitTextClassificationReader",
    "NoInstancesError",
    "UnknownLabelError",
    "read_indexed",
]
