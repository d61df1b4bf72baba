"""IMDB movie reviews (Maas et al., 2011), from either of the two common distributions.

* A `.csv` file: the 50,000-review CSV (header `review,sentiment`, sentiment
  `positive`/`negative`, standard CSV quoting). It has no split at all, so test is a seeded
  carve-out (`--test-size`, default half the rows: 25,000 of 50,000, like the original), dev is a
  seeded carve-out of the rest (`--dev-size`, default 5,000) and train is what remains.
* A folder: the original `aclImdb` release (SOURCE is `aclImdb/` or its parent), with one review
  per file in `train/{neg,pos}/` and `test/{neg,pos}/`, named `<id>_<rating>.txt`. Reviews are
  read in the order negative then positive, each by numeric id; `train/unsup/` is ignored. It has
  no dev set, so dev is a seeded carve-out of train (`--dev-size`, default 5,000).

HTML line breaks (`<br />`) become spaces in both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

from early_exit.data.prepare.core import (
    Context,
    PrepareError,
    RowCollector,
    Split,
    carve,
    check_columns,
    check_header,
    dev_from_train,
    iter_csv,
    map_label,
    read_text,
    require_dir,
)

LABELS = {"negative": "negative", "positive": "positive"}
"""Sentiment as written in the CSV -> output label."""

FOLDERS = (("neg", "negative"), ("pos", "positive"))
"""aclImdb label folder and its output label, in reading order."""

DEFAULT_DEV_SIZE = 5000
"""Rows carved from train as dev."""

_COLUMNS = ("review", "sentiment")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_REVIEW_FILE = re.compile(r"(\d+)_(\d+)\.txt")


def clean_review(text: str) -> str:
    """Replaces HTML line breaks with spaces."""
    return _HTML_BREAK.sub(" ", text)


def read_imdb_csv(path: Path) -> Split:
    """Reads the 50,000-review CSV (`review,sentiment`).

    Raises:
        PrepareError: On a wrong header, broken quoting, a record without exactly two fields or a
            sentiment other than `positive`/`negative`.
    """
    collector = RowCollector(path)
    for number, fields in iter_csv(path):
        if number == 1:
            check_header(path, number, fields, _COLUMNS)
            continue
        check_columns(path, number, fields, _COLUMNS)
        review, sentiment = fields
        collector.add(map_label(path, number, sentiment, LABELS), clean_review(review))
    return collector.split()


def _review_files(folder: Path) -> List[Path]:
    files: List[Tuple[int, Path]] = []
    for path in folder.glob("*.txt"):
        match = _REVIEW_FILE.fullmatch(path.name)
        if match is None:
            raise PrepareError("review file name is not <id>_<rating>.txt", path)
        files.append((int(match.group(1)), path))
    return [path for _, path in sorted(files)]


def read_aclimdb_split(root: Path, split: str) -> Split:
    """Reads `root/<split>/neg/*.txt` and `root/<split>/pos/*.txt` (one review per file)."""
    split_folder = root / split
    collector = RowCollector(split_folder, f"aclImdb/{split}")
    for folder, label in FOLDERS:
        for path in _review_files(require_dir(split_folder / folder, "aclImdb review folder")):
            collector.add(label, clean_review(read_text(path)))
    return collector.split()


def _aclimdb_root(source: Path) -> Path:
    for root in (source, source / "aclImdb"):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    raise PrepareError(
        "not an aclImdb folder (expected train/{neg,pos} and test/{neg,pos} in it or in "
        "aclImdb/ under it)",
        source,
    )


def convert(source: Path, context: Context) -> Dict[str, Split]:
    """Converts IMDB from the 50k-review CSV (SOURCE is a .csv file) or an aclImdb folder.

    Args:
        source: The CSV file, or the `aclImdb` folder (or its parent).
        context: Options and notes.

    Returns:
        The train, dev and test splits.
    """
    options = context.options
    dev_size = options.dev_size or DEFAULT_DEV_SIZE
    if source.is_dir():
        root = _aclimdb_root(source)
        official_train = read_aclimdb_split(root, "train")
        test = read_aclimdb_split(root, "test")
        return dev_from_train(
            context,
            official_train,
            test,
            dev_size,
            dataset="aclImdb",
            train_name="aclImdb/train",
            test_name="aclImdb/test",
        )
    if source.suffix.lower() != ".csv" or not source.is_file():
        problem = "missing" if not source.exists() else "neither a .csv file nor an aclImdb folder"
        raise PrepareError(
            f"{problem} (SOURCE must be the IMDB .csv file or aclImdb folder)", source
        )
    reviews = read_imdb_csv(source)
    test_size = options.test_size or len(reviews.rows) // 2
    test, rest = carve(reviews, test_size, options.seed, what="test", option="--test-size")
    dev, train = carve(rest, dev_size, options.seed, what="dev", option="--dev-size")
    train.origin = f"{source.name} minus the test and dev carve-outs"
    dev.origin = f"seeded dev carve-out of {source.name} (after the test carve-out)"
    context.note(
        f"the IMDB CSV has no splits: test = a seeded carve-out of {len(test.rows)} of its "
        f"{len(reviews.rows)} rows (--test-size {test_size}); dev = a seeded carve-out of "
        f"{len(dev.rows)} of the other rows (--dev-size {dev_size}); train = the remaining "
        f"{len(train.rows)} rows (--seed {options.seed})"
    )
    return {"train": train, "dev": dev, "test": test}
