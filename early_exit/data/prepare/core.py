"""Machinery shared by every converter: errors, reading, normalisation, carving and writing.

A converter reads a dataset in its distributed format into [`Split`][] objects (one list of rows
per split, where a row is `(label, text)` or `(label, premise, hypothesis)`), and this module
does everything that is the same for all of them.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from early_exit.common.files import atomic_open

logger = logging.getLogger(__name__)

Row = Tuple[str, ...]
"""One output instance: the label first, then the text field(s)."""

SPLITS = ("train", "dev", "test")
"""The splits every prepared dataset has, in the order they are written and reported."""


class PrepareError(Exception):
    """Bad input or a request that cannot be met; the message names the file and line.

    Args:
        problem: What is wrong, in words.
        path: The file (or folder) the problem is in, if any.
        line: The 1-based line number in `path`, if the problem is on one line.
    """

    def __init__(
        self, problem: str, path: Optional[Union[str, Path]] = None, line: Optional[int] = None
    ) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.line = line
        if path is None:
            where = ""
        elif line is None:
            where = f"{path}: "
        else:
            where = f"{path}, line {line}: "
        super().__init__(where + problem)


@dataclass(frozen=True)
class Options:
    """The user's choices that shape the splits (see the CLI's `--help` for each one).

    Attributes:
        seed: Seed of every carve-out and sample.
        dev_size: Size of a carved or sampled dev split; `None` means the dataset's default.
        test_size: Size of a carved test split; `None` means the dataset's default.
        max_train: Keep a seeded sample of at most this many train rows.
        cpu_subset: Build the small CPU-sized splits (ag_news and snli only).
    """

    seed: int = 13
    dev_size: Optional[int] = None
    test_size: Optional[int] = None
    max_train: Optional[int] = None
    cpu_subset: bool = False


@dataclass
class Split:
    """Rows of one split together with where they came from.

    Attributes:
        rows: The instances, in output order.
        origin: Where the rows came from, in words (printed in the summary).
        dropped: Rows left out, counted by reason; each reason names the file it applies to.
    """

    rows: List[Row]
    origin: str
    dropped: Counter = field(default_factory=Counter)


@dataclass
class Context:
    """What a converter gets besides its source: the options and a place for notes.

    Attributes:
        options: The user's options.
        notes: Messages about how the splits were made (carve-outs, unused files, ...).
    """

    options: Options
    notes: List[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Records `message` for the summary and logs it."""
        self.notes.append(message)
        logger.info(message)


def normalize_text(text: str) -> str:
    """Collapses every run of whitespace (tabs and line breaks included) into one space.

    Args:
        text: Raw text of one field.

    Returns:
        The text on a single line without tabs, and without leading or trailing spaces.
    """
    return " ".join(text.split())


class RowCollector:
    """Accumulates the rows read from one source and counts those it drops.

    Args:
        path: The file (or folder) the rows come from.
        name: How drop reasons and origins refer to the source; defaults to the file name.
    """

    def __init__(self, path: Path, name: Optional[str] = None) -> None:
        self.path = path
        self.name = name or path.name
        self.rows: List[Row] = []
        self.dropped: Counter = Counter()

    def add(self, label: str, *texts: str) -> None:
        """Normalises `texts` and keeps the row, unless one of the texts ends up empty."""
        normalized = tuple(normalize_text(text) for text in texts)
        if all(normalized):
            self.rows.append((label,) + normalized)
        else:
            self.drop("empty text")

    def drop(self, reason: str) -> None:
        """Counts one row left out for `reason`."""
        self.dropped[f"{self.name}: {reason}"] += 1

    def split(self, origin: Optional[str] = None) -> Split:
        """The collected rows as a split whose origin defaults to the source name.

        Raises:
            PrepareError: If the source held no rows at all (not even dropped ones).
        """
        if not self.rows and not self.dropped:
            raise PrepareError("contains no rows", self.path)
        return Split(self.rows, origin or self.name, Counter(self.dropped))


def require_file(path: Path, what: str = "file") -> Path:
    """Returns `path` if it is an existing file, else raises a [`PrepareError`][]."""
    if not path.is_file():
        raise PrepareError(f"missing {what}", path)
    return path


def require_dir(path: Path, what: str = "folder") -> Path:
    """Returns `path` if it is an existing directory, else raises a [`PrepareError`][]."""
    if not path.is_dir():
        raise PrepareError(f"missing {what}" if not path.exists() else f"not a {what}", path)
    return path


def _decoded_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """Yields `(line number, text with its line ending)`, decoding UTF-8 line by line.

    Lines are split on `\\n` only, so that characters such as U+2028 stay inside their line.
    """
    require_file(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise PrepareError(
                    f"not valid UTF-8 ({error.reason} at byte {error.start} of the line)",
                    path,
                    number,
                ) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text


def iter_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """Yields `(line number, line)` for each line of a UTF-8 text file, without line endings."""
    for number, text in _decoded_lines(path):
        yield number, text.rstrip("\n").rstrip("\r")


def read_text(path: Path) -> str:
    """Returns the whole content of a UTF-8 text file."""
    return "".join(text for _, text in _decoded_lines(path))


def iter_csv(path: Path) -> Iterator[Tuple[int, List[str]]]:
    """Yields `(line number where the record starts, fields)` for each record of a CSV file.

    Blank lines are skipped; a quoting error raises a [`PrepareError`][] naming the line.
    """
    reader = csv.reader((text for _, text in _decoded_lines(path)), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise PrepareError(f"malformed CSV record ({error})", path, start) from None
        if record:
            yield start, record


def check_columns(path: Path, line: int, fields: Sequence[str], names: Sequence[str]) -> None:
    """Raises a [`PrepareError`][] unless `fields` has exactly one value per column in `names`."""
    if len(fields) != len(names):
        raise PrepareError(
            f"expected {len(names)} columns ({', '.join(names)}), found {len(fields)}", path, line
        )


def check_header(path: Path, line: int, fields: Sequence[str], names: Sequence[str]) -> None:
    """Raises a [`PrepareError`][] unless the header `fields` are exactly `names`."""
    if [name.strip() for name in fields] != list(names):
        raise PrepareError(
            f"expected the header {list(names)}, found {[name for name in fields]}", path, line
        )


def map_label(path: Path, line: int, raw: str, labels: Mapping[str, str]) -> str:
    """Returns the output label for the raw label `raw`, or raises a [`PrepareError`][].

    Args:
        path: File the label was read from.
        line: Line the label was read from.
        raw: The label as written in the file.
        labels: Raw label -> output label.
    """
    try:
        return labels[raw]
    except KeyError:
        expected = ", ".join(repr(known) for known in labels)
        raise PrepareError(f"unknown label {raw!r} (expected one of {expected})", path, line)


def _chosen_indices(count: int, size: int, seed: int) -> set:
    return set(random.Random(seed).sample(range(count), size))


def carve(split: Split, size: int, seed: int, *, what: str, option: str) -> Tuple[Split, Split]:
    """Splits off a seeded random part of `split`; both parts keep the original row order.

    Args:
        split: The split to carve from.
        size: Number of rows to carve off; at least 1 and fewer than the split has.
        seed: Seed of the random choice.
        what: Name of the carved part, for messages (e.g. `"dev"`).
        option: The option that sets `size`, named in the error if it is too large.

    Returns:
        `(carved, rest)`. `rest` keeps the drop counts of `split`; the origins of both are
        derived from `split.origin` and can be replaced by the caller.

    Raises:
        PrepareError: If `size` is not smaller than the number of rows.
    """
    count = len(split.rows)
    if not 0 < size < count:
        raise PrepareError(
            f"cannot carve {size} {what} rows out of the {count} rows of {split.origin} "
            f"(the rest would be empty); choose a smaller {option}"
        )
    chosen = _chosen_indices(count, size, seed)
    carved = [row for index, row in enumerate(split.rows) if index in chosen]
    rest = [row for index, row in enumerate(split.rows) if index not in chosen]
    carved_split = Split(carved, f"seeded {what} carve-out of {split.origin}")
    rest_split = Split(rest, f"{split.origin} minus the {what} carve-out", Counter(split.dropped))
    return carved_split, rest_split


def dev_from_train(
    context: Context,
    official_train: Split,
    test: Split,
    dev_size: int,
    *,
    dataset: str,
    train_name: str,
    test_name: str,
) -> Dict[str, Split]:
    """For a dataset without a dev set: carves a seeded dev split out of its training data.

    Logs where each split came from and returns `{"train", "dev", "test"}`.
    """
    seed = context.options.seed
    dev, train = carve(official_train, dev_size, seed, what="dev", option="--dev-size")
    context.note(
        f"{dataset} has no dev set: dev = a seeded carve-out of {len(dev.rows)} rows of "
        f"{train_name} (--dev-size {dev_size}, --seed {seed}); train = the other "
        f"{len(train.rows)} rows of {train_name}; test = {test_name}"
    )
    return {"train": train, "dev": dev, "test": test}


def sample(split: Split, size: int, seed: int, *, reason: str) -> Split:
    """Keeps a seeded random sample of at most `size` rows, in the original order.

    Rows left out are counted in `dropped` under `reason`. A split with at most `size` rows is
    returned as it is.
    """
    count = len(split.rows)
    if count <= size:
        return split
    chosen = _chosen_indices(count, size, seed)
    rows = [row for index, row in enumerate(split.rows) if index in chosen]
    dropped = Counter(split.dropped)
    dropped[reason] += count - size
    return Split(rows, split.origin, dropped)


def split_paths(directory: Path) -> Dict[str, Path]:
    """The output file of each split in `directory`."""
    return {name: directory / f"{name}.tsv" for name in SPLITS}


def check_writable(directory: Path, force: bool) -> None:
    """Refuses to go on if an output split exists and is not empty, unless `force` is set."""
    for path in split_paths(directory).values():
        if path.is_dir():
            raise PrepareError("is a folder, not a file", path)
        if not force and path.is_file() and path.stat().st_size > 0:
            raise PrepareError("already exists and is not empty; pass --force to overwrite", path)


def write_split(path: Path, rows: Sequence[Row]) -> None:
    """Writes `rows` as UTF-8 TSV lines, atomically (a partial file never replaces `path`)."""
    for row in rows:
        if any(not value or "\t" in value or "\n" in value or "\r" in value for value in row):
            raise ValueError(f"row not normalised before writing: {row!r}")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines("\t".join(row) + "\n" for row in rows)
