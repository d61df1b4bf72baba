"""SST-2 in the GLUE TSV format.

SOURCE is the GLUE `SST-2` folder: `train.tsv` and `dev.tsv` (header `sentence<TAB>label`,
labels `0`/`1`, no quoting) and optionally `test.tsv` (`index<TAB>sentence`, no labels).
Because GLUE's test set is unlabelled, GLUE dev becomes our test split and our dev split is a
seeded carve-out of GLUE train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from early_exit.data.prepare.core import (
    Context,
    RowCollector,
    Split,
    carve,
    check_columns,
    check_header,
    iter_lines,
    map_label,
    require_dir,
    require_file,
)

LABELS = {"0": "negative", "1": "positive"}
"""GLUE label -> output label."""

DEFAULT_DEV_SIZE = 872
"""Rows carved from GLUE train as dev: as many as GLUE's dev set has."""

_COLUMNS = ("sentence", "label")


def read_glue_sst2(path: Path) -> Split:
    """Reads a labelled GLUE SST-2 file (`train.tsv` or `dev.tsv`).

    Raises:
        PrepareError: On a missing file, a wrong header, a row without exactly two columns or
            a label other than `0`/`1`.
    """
    collector = RowCollector(path)
    for number, line in iter_lines(require_file(path)):
        fields = line.split("\t")
        if number == 1:
            check_header(path, number, fields, _COLUMNS)
            continue
        if not line:
            continue
        check_columns(path, number, fields, _COLUMNS)
        sentence, label = fields
        collector.add(map_label(path, number, label, LABELS), sentence)
    return collector.split(f"GLUE {path.name}")


def convert(source: Path, context: Context) -> Dict[str, Split]:
    """Converts GLUE SST-2: test = GLUE dev, dev = seeded carve-out of GLUE train.

    Args:
        source: The GLUE `SST-2` folder.
        context: Options (`dev_size`, `seed`) and notes.

    Returns:
        The train, dev and test splits.
    """
    require_dir(source, "SST-2 folder")
    options = context.options
    glue_train = read_glue_sst2(source / "train.tsv")
    glue_dev = read_glue_sst2(source / "dev.tsv")
    dev_size = options.dev_size or DEFAULT_DEV_SIZE
    dev, train = carve(glue_train, dev_size, options.seed, what="dev", option="--dev-size")
    glue_test = source / "test.tsv"
    unused = "it is not in SOURCE"
    if glue_test.is_file():
        unlabelled_rows = sum(1 for number, line in iter_lines(glue_test) if number > 1 and line)
        unused = f"its {unlabelled_rows} rows are not used"
    context.note(
        f"GLUE's SST-2 test.tsv has no labels ({unused}): test = GLUE dev.tsv "
        f"({len(glue_dev.rows)} rows); dev = a seeded carve-out of {len(dev.rows)} rows of GLUE "
        f"train.tsv (--dev-size {dev_size}, --seed {options.seed}); train = the other "
        f"{len(train.rows)} rows of GLUE train.tsv"
    )
    return {"train": train, "dev": dev, "test": glue_dev}
