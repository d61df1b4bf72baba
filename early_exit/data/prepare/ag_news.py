r"""AG News in the CSV format of Zhang et al. (2015).

SOURCE is the `ag_news_csv` folder: `train.csv` and `test.csv` with no header and three
double-quoted columns (class index 1-4, title, description; `""` is a quote inside a field),
and optionally `classes.txt`. The text we write is the title and the description joined by a
space.

Line breaks: the dataset's readme says a newline is written as `\n`, but in the files a line break
is a single backslash, whatever follows it: `a second\team of rocketeers`, `gave\no indication`,
`Images\\Girafa.com Inc.` (two backslashes for a paragraph break). Reading `\n` as the newline
escape would turn `gave\no indication` into `gave o indication`, so every run of backslashes
becomes one space instead. The one exception is `\$`, an escaped dollar sign (`over \$1 billion`),
which becomes `$`. HTML entities left in the text (`#39;`, `&lt;`) are kept as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

from early_exit.data.prepare.core import (
    Context,
    PrepareError,
    RowCollector,
    Split,
    carve,
    check_columns,
    dev_from_train,
    iter_csv,
    iter_lines,
    map_label,
    require_dir,
    require_file,
)

CLASS_NAMES = ("World", "Sports", "Business", "Sci/Tech")
"""Output labels, in the order of the class indices 1-4 (as in `classes.txt`)."""

LABELS = {str(index): name for index, name in enumerate(CLASS_NAMES, start=1)}
"""Class index as written in the CSV -> output label."""

DEFAULT_DEV_SIZE = 5000
"""Rows carved from train.csv as dev in the full setup."""

CPU_DEFAULT_TEST_SIZE = 2000
"""`--cpu-subset`: rows of test.csv kept as test (the other rows become train)."""

CPU_DEFAULT_DEV_SIZE = 600
"""`--cpu-subset`: rows carved as dev from the test.csv rows left for training."""

_COLUMNS = ("class index", "title", "description")
_ESCAPED_DOLLAR = re.compile(r"\\(?=\$)")
_LINE_BREAKS = re.compile(r"\\+")


def unescape(field: str) -> str:
    r"""Turns AG News line-break backslashes into spaces and `\$` into `$` (see module doc)."""
    return _LINE_BREAKS.sub(" ", _ESCAPED_DOLLAR.sub("", field))


def read_ag_news_csv(path: Path) -> Split:
    """Reads one AG News CSV file.

    Raises:
        PrepareError: On a missing file, broken quoting, a record without exactly three fields
            or a class index outside 1-4.
    """
    collector = RowCollector(path)
    for number, fields in iter_csv(require_file(path)):
        check_columns(path, number, fields, _COLUMNS)
        index, title, description = fields
        collector.add(
            map_label(path, number, index, LABELS), f"{unescape(title)} {unescape(description)}"
        )
    return collector.split()


def check_classes(path: Path) -> None:
    """Checks that a `classes.txt` lists the class names in the order we assume."""
    names = [line.strip() for _, line in iter_lines(path) if line.strip()]
    if names != list(CLASS_NAMES):
        raise PrepareError(
            f"expected the classes {list(CLASS_NAMES)} in this order, found {names}", path
        )


def convert(source: Path, context: Context) -> Dict[str, Split]:
    """Converts AG News; with `--cpu-subset`, builds the CPU-sized splits from test.csv.

    Full setup: train = train.csv minus a seeded dev carve-out (`--dev-size`, default 5,000),
    dev = that carve-out, test = test.csv.

    `--cpu-subset` (test.csv only; no train file needed): test = a seeded carve-out of test.csv
    (`--test-size`, default 2,000), dev = a seeded carve-out of the other rows (`--dev-size`,
    default 600), train = the rest (5,000 of the official 7,600 rows by default). Dev comes from
    the same file as train and test, so that temperatures and thresholds fitted on it carry over
    to the evaluation split.

    Args:
        source: The `ag_news_csv` folder.
        context: Options and notes.

    Returns:
        The train, dev and test splits.
    """
    require_dir(source, "AG News folder")
    options = context.options
    if (source / "classes.txt").is_file():
        check_classes(source / "classes.txt")
    official_test = read_ag_news_csv(source / "test.csv")
    if not options.cpu_subset:
        if not (source / "train.csv").is_file():
            partial = sorted(path.name for path in source.glob("train*.csv"))
            found = f" (only {', '.join(partial)})" if partial else ""
            raise PrepareError(
                f"missing the official train.csv{found}; pass --cpu-subset to build the "
                "CPU-sized splits from test.csv instead",
                source / "train.csv",
            )
        dev_size = options.dev_size or DEFAULT_DEV_SIZE
        official_train = read_ag_news_csv(source / "train.csv")
        return dev_from_train(
            context,
            official_train,
            official_test,
            dev_size,
            dataset="AG News",
            train_name="train.csv",
            test_name="test.csv",
        )

    test_size = options.test_size or CPU_DEFAULT_TEST_SIZE
    dev_size = options.dev_size or CPU_DEFAULT_DEV_SIZE
    test, rest = carve(official_test, test_size, options.seed, what="test", option="--test-size")
    dev, train = carve(rest, dev_size, options.seed, what="dev", option="--dev-size")
    dev.origin = "seeded dev carve-out of test.csv (after the test carve-out)"
    train.origin = "test.csv minus the test and dev carve-outs"
    context.note(
        f"--cpu-subset: test = a seeded carve-out of {len(test.rows)} rows of the official "
        f"test.csv (--test-size {test_size}, --seed {options.seed}); dev = a seeded carve-out of "
        f"{len(dev.rows)} of the other {len(rest.rows)} rows (--dev-size {dev_size}); train = the "
        f"remaining {len(train.rows)} rows. All three come from the official test set; "
        "train.csv is not read."
    )
    return {"train": train, "dev": dev, "test": test}
