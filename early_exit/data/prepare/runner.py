"""The dataset registry and [`prepare`][], which runs a converter, writes the splits and reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from early_exit.data.prepare import ag_news, imdb, nli, sst2
from early_exit.data.prepare.core import (
    SPLITS,
    Context,
    Options,
    PrepareError,
    Split,
    check_writable,
    sample,
    split_paths,
    write_split,
)


@dataclass(frozen=True)
class DatasetSpec:
    """How to prepare one dataset.

    Attributes:
        task: Output folder under OUTPUT_DIR: `text_cat` or `nli`.
        labels: Every output label, in the order the summary lists them.
        convert: Reads SOURCE into the train, dev and test splits.
        cpu_subset: Whether `--cpu-subset` is defined for the dataset.
    """

    task: str
    labels: Tuple[str, ...]
    convert: Callable[[Path, Context], Dict[str, Split]]
    cpu_subset: bool = False


DATASETS: Dict[str, DatasetSpec] = {
    "sst2": DatasetSpec("text_cat", tuple(sst2.LABELS.values()), sst2.convert),
    "ag_news": DatasetSpec("text_cat", ag_news.CLASS_NAMES, ag_news.convert, cpu_subset=True),
    "imdb": DatasetSpec("text_cat", tuple(imdb.LABELS.values()), imdb.convert),
    "snli": DatasetSpec("nli", nli.LABEL_NAMES, nli.convert_snli, cpu_subset=True),
    "mnli": DatasetSpec("nli", nli.LABEL_NAMES, nli.convert_mnli),
}
"""Dataset name -> how to prepare it."""


@dataclass
class SplitSummary:
    """What was written for one split.

    Attributes:
        path: The TSV file.
        origin: Where the rows came from.
        rows: Number of rows written.
        labels: Rows per label.
        dropped: Rows left out, by reason.
    """

    path: Path
    origin: str
    rows: int
    labels: Counter
    dropped: Counter


@dataclass
class Report:
    """The result of [`prepare`][]: one summary per split and the notes on how they were made."""

    dataset: str
    directory: Path
    labels: Tuple[str, ...]
    splits: Dict[str, SplitSummary] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def format(self) -> str:
        """The human-readable summary printed by the command line."""
        lines = [f"prepared {self.dataset} in {self.directory}"]
        for name, split in self.splits.items():
            counts = ", ".join(f"{label} {split.labels[label]}" for label in self.labels)
            lines.append(f"  {name}: {split.rows} rows written to {split.path.name} ({counts})")
            lines.append(f"    from: {split.origin}")
            for reason, count in sorted(split.dropped.items()):
                lines.append(f"    dropped {count}: {reason}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _check_size(option: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise PrepareError(f"{option} must be at least 1, got {value}")


def _limit_train(train: Split, max_train: int, context: Context) -> Split:
    """Applies `--max-train`: a seeded sample of at most `max_train` rows of `train`."""
    seed = context.options.seed
    reason = f"not in the seeded --max-train {max_train} sample"
    limited = sample(train, max_train, seed, reason=reason)
    if limited is train:
        context.note(f"--max-train {max_train}: train has only {len(train.rows)} rows, all kept")
    else:
        limited.origin += f", then a seeded sample of {len(limited.rows)} rows"
        context.note(
            f"--max-train {max_train}: train = a seeded sample of {len(limited.rows)} of its "
            f"{len(train.rows)} rows (--seed {seed})"
        )
    return limited


def prepare(
    dataset: str,
    source: Union[str, Path],
    output_dir: Union[str, Path],
    *,
    seed: int = 13,
    dev_size: Optional[int] = None,
    test_size: Optional[int] = None,
    max_train: Optional[int] = None,
    cpu_subset: bool = False,
    force: bool = False,
) -> Report:
    """Converts `dataset` from its distributed format in `source` to the project's TSV splits.

    The splits are written to `output_dir/<task>/<dataset>/{train,dev,test}.tsv`.

    Args:
        dataset: One of [`DATASETS`][].
        source: The distributed files (a folder, or the IMDB CSV file).
        output_dir: Root of the prepared data.
        seed: Seed of every carve-out and sample.
        dev_size: Size of a carved or sampled dev split (default: per dataset).
        test_size: Size of a carved test split (default: per dataset).
        max_train: Keep a seeded sample of at most this many train rows.
        cpu_subset: Build the CPU-sized splits (ag_news and snli only).
        force: Overwrite existing non-empty output files.

    Returns:
        What was written, with the notes on how each split was made.

    Raises:
        PrepareError: On bad input or options; nothing is written then.
    """
    if dataset not in DATASETS:
        raise PrepareError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    spec = DATASETS[dataset]
    if cpu_subset and not spec.cpu_subset:
        supported = ", ".join(name for name, other in DATASETS.items() if other.cpu_subset)
        raise PrepareError(
            f"--cpu-subset is defined for {supported} only; for {dataset}, use --max-train N"
        )
    for option, value in (
        ("--dev-size", dev_size),
        ("--test-size", test_size),
        ("--max-train", max_train),
    ):
        _check_size(option, value)
    directory = Path(output_dir) / spec.task / dataset
    check_writable(directory, force)

    options = Options(seed, dev_size, test_size, max_train, cpu_subset)
    context = Context(options)
    splits = spec.convert(Path(source), context)
    if max_train is not None:
        splits["train"] = _limit_train(splits["train"], max_train, context)
    for name in SPLITS:
        if not splits[name].rows:
            raise PrepareError(f"the {name} split would be empty ({splits[name].origin})")

    report = Report(dataset, directory, spec.labels, notes=context.notes)
    for name, path in split_paths(directory).items():
        split = splits[name]
        write_split(path, split.rows)
        labels = Counter(row[0] for row in split.rows)
        report.splits[name] = SplitSummary(
            path, split.origin, len(split.rows), labels, split.dropped
        )
    return report
