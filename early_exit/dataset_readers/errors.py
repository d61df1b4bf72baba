"""
What can be wrong with a data file, as exceptions whose message names the file (and the line, where
there is one) and the problem. The `allennlp` command line prints each as one `error: ...` line
(see `early_exit.common.cli_errors`).
"""

import unicodedata
from typing import Dict, Optional, Sequence

from early_exit.common.cli_errors import UserError


class DataFormatError(UserError, ValueError):
    """
    Raised when a line of a data file cannot be read. The message names the file, the 1-based
    line number and the problem, e.g. `"data/train.tsv, line 17: no tab between label and text"`.

    # Parameters

    file_path : `str`
        The data file, as it was given to the reader.
    line_number : `int`
        1-based number of the offending line.
    problem : `str`
        What is wrong with the line.
    """

    def __init__(self, file_path: str, line_number: int, problem: str) -> None:
        super().__init__(f"{file_path}, line {line_number}: {problem}")
        self.file_path = file_path
        self.line_number = line_number
        self.problem = problem

    def __reduce__(self):
        # Keeps the exception picklable (it has a custom constructor), which matters when it is
        # raised inside a data loader worker process.
        return (type(self), (self.file_path, self.line_number, self.problem))


class NoWordpiecesError(UserError, ValueError):
    """
    Raised for a text that tokenizes to no wordpieces at all (only control, format or zero-width
    characters): it is refused like an empty text, since the model would classify the special
    tokens (`[CLS] [SEP]`) alone. The readers add the file and line; the predictor the input line.

    # Parameters

    name : `str`
        The field, e.g. `"text"` or `"premise"`.
    text : `str`
        The text as given.
    """

    def __init__(self, name: str, text: str) -> None:
        shown = ascii(text) if len(text) <= 40 else ascii(text[:40]) + "..."
        self.problem = (
            f"empty {name}: it has no wordpieces (the tokenizer drops all of it: control, format or "
            f"zero-width characters, {shown})"
        )
        super().__init__(self.problem)
        self.name = name
        self.text = text

    def __reduce__(self):
        return (type(self), (self.name, self.text))


def surely_has_wordpieces(text: str) -> bool:
    """
    Whether `text` holds a letter, digit or punctuation mark, which every tokenizer turns into at
    least one wordpiece: only other texts need tokenizing to know (callers that do not tokenize
    anyway check those only).
    """
    return any(unicodedata.category(char)[0] in "LNP" for char in text)


class DataFileNotFoundError(UserError, FileNotFoundError):
    """
    Raised when a data file does not exist or is not a file (a directory): `"data/dev.tsv: data
    file not found"`, `"data: a directory, not a data file"`.
    """


class NoInstancesError(UserError, ValueError):
    """
    Raised when a data file holds no instances: it is empty, has only blank lines, or every line
    was invalid and skipped. Training on it would archive an untrained model and evaluating would
    report an accuracy of 0, so every command refuses it with this one rule.

    # Parameters

    data_name : `str`
        The data file, as the user gave it.
    reason : `str`, optional
        Why, when it is known (e.g. `"it is empty"`).
    """

    def __init__(self, data_name: str, reason: Optional[str] = None) -> None:
        message = f"{data_name} holds no instances"
        super().__init__(f"{message} ({reason})" if reason else message)
        self.data_name = data_name
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.data_name, self.reason))


class UnknownLabelError(UserError, ValueError):
    """
    Raised when data to evaluate, calibrate or sweep on has gold labels that the model never saw in
    training, e.g. `"data/dev.tsv has label(s) the model does not know: neutral (first on line 3);
    it knows negative, positive"`.

    # Parameters

    data_name : `str`
        The data file, as the user gave it.
    unknown : `Sequence[str]`
        The labels the model does not know.
    known : `Sequence[str]`
        The labels it knows.
    first_lines : `Dict[str, int]`, optional
        The first line of each unknown label, where the reader can tell.
    """

    def __init__(
        self,
        data_name: str,
        unknown: Sequence[str],
        known: Sequence[str],
        first_lines: Optional[Dict[str, int]] = None,
    ) -> None:
        first_lines = dict(first_lines or {})
        described = [
            f"{label} (first on line {first_lines[label]})" if label in first_lines else label
            for label in unknown
        ]
        super().__init__(
            f"{data_name} has label(s) the model does not know: {', '.join(described)}; "
            f"it knows {', '.join(known)}"
        )
        self.data_name = data_name
        self.unknown = list(unknown)
        self.known = list(known)
        self.first_lines = first_lines

    def __reduce__(self):
        return (type(self), (self.data_name, self.unknown, self.known, self.first_lines))
