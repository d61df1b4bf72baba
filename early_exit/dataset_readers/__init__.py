from early_exit.dataset_readers.line_reader import DataFormatError, EarlyExitLineReader
from early_exit.dataset_readers.nli import EarlyExitNliReader
from early_exit.dataset_readers.text_classification import EarlyExitTextClassificationReader

__all__ = [
    "DataFormatError",
    "EarlyExitLineReader",
    "EarlyExitNliReader",
    "EarlyExitTextClassificationReader",
]
