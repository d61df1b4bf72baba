"""SNLI and MultiNLI, from JSON lines or from the e-SNLI/InferSent `s1/s2/labels` files.

* JSON lines (the official distributions): one object per line with at least `gold_label`,
  `sentence1` (premise) and `sentence2` (hypothesis). SNLI: `snli_1.0_{train,dev,test}.jsonl`.
  MultiNLI: `multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl`; its test sets are
  unlabelled, so dev = dev_matched and test = dev_mismatched.
* `s1.<split>`, `s2.<split>`, `labels.<split>` (SNLI as shipped by e-SNLI and InferSent, MultiNLI
  as InferSent ships it): premise, hypothesis and gold label of one pair on the same line of the
  three files. These sentences are PTB-tokenized and are written as they are. InferSent names
  MultiNLI's splits `train`, `dev` (dev_matched) and `test` (dev_mismatched); the suffixes
  `dev_matched` and `dev_mismatched` are read too.

Pairs whose gold label is `-` (no majority among the annotators) are dropped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List

from early_exit.data.prepare.core import (
    Context,
    PrepareError,
    RowCollector,
    Split,
    carve,
    iter_lines,
    map_label,
    require_dir,
    require_file,
)

LABEL_NAMES = ("entailment", "neutral", "contradiction")
"""The NLI labels, written as they are."""

LABELS = {name: name for name in LABEL_NAMES}

NO_GOLD_LABEL = "-"
"""Gold label of pairs without a majority label; such pairs are dropped."""

NO_GOLD_REASON = "gold label '-' (no annotator majority)"

SNLI_JSONL = {split: f"snli_1.0_{split}.jsonl" for split in ("train", "dev", "test")}
"""SNLI split -> official file name."""

MNLI_JSONL = {
    "train": "multinli_1.0_train.jsonl",
    "dev": "multinli_1.0_dev_matched.jsonl",
    "test": "multinli_1.0_dev_mismatched.jsonl",
}
"""Our split -> MultiNLI file name (dev_matched is dev, dev_mismatched is test)."""

SNLI_TRIPLE = {split: (split,) for split in ("train", "dev", "test")}
"""SNLI split -> the suffixes of its s1/s2/labels files."""

MNLI_TRIPLE = {
    "train": ("train",),
    "dev": ("dev", "dev_matched"),  # InferSent: dev = dev_matched
    "test": ("test", "dev_mismatched"),  # InferSent: test = dev_mismatched
}
"""MultiNLI split -> the suffixes its s1/s2/labels files may have, in order of preference."""

CPU_DEFAULT_DEV_SIZE = 1000
"""`--cpu-subset`: rows of SNLI dev carved off as dev (the rest of SNLI dev becomes train)."""

_TRIPLE_PREFIXES = ("s1", "s2", "labels")
_JSON_KEYS = ("gold_label", "sentence1", "sentence2")


def _add_pair(
    collector: RowCollector, line: int, label: str, premise: str, hypothesis: str
) -> None:
    if label == NO_GOLD_LABEL:
        collector.drop(NO_GOLD_REASON)
    else:
        collector.add(map_label(collector.path, line, label, LABELS), premise, hypothesis)


def read_nli_jsonl(path: Path) -> Split:
    """Reads an SNLI or MultiNLI `.jsonl` file.

    Raises:
        PrepareError: On invalid JSON, a missing or non-string `gold_label`/`sentence1`/
            `sentence2`, or an unknown gold label.
    """
    collector = RowCollector(path)
    for number, line in iter_lines(require_file(path)):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise PrepareError(
                f"invalid JSON ({error.msg} at column {error.colno})", path, number
            ) from None
        if not isinstance(record, dict):
            raise PrepareError("expected a JSON object", path, number)
        for key in _JSON_KEYS:
            if not isinstance(record.get(key), str):
                problem = "missing from" if key not in record else "not a string in"
                raise PrepareError(f"key {key!r} {problem} the record", path, number)
        _add_pair(collector, number, record["gold_label"], record["sentence1"], record["sentence2"])
    return collector.split()


def read_nli_triple(folder: Path, split: str) -> Split:
    """Reads `s1.<split>`, `s2.<split>` and `labels.<split>`, which must be aligned.

    Raises:
        PrepareError: If a file is missing, the files differ in length, or a label is unknown.
    """
    paths = [require_file(folder / f"{prefix}.{split}") for prefix in _TRIPLE_PREFIXES]
    premises, hypotheses, labels = ([line for _, line in iter_lines(path)] for path in paths)
    if not len(premises) == len(hypotheses) == len(labels):
        counts = ", ".join(
            f"{path.name}: {len(lines)}"
            for path, lines in zip(paths, (premises, hypotheses, labels))
        )
        raise PrepareError(
            f"the three files must have the same number of lines ({counts})", paths[2]
        )
    collector = RowCollector(paths[2], f"{{s1,s2,labels}}.{split}")
    for number, (premise, hypothesis, label) in enumerate(zip(premises, hypotheses, labels), 1):
        _add_pair(collector, number, label.strip(), premise, hypothesis)
    return collector.split()


def _triple_suffixes(source: Path, suffixes: Dict[str, tuple]) -> Dict[str, str]:
    """Split -> the suffix of the s1/s2/labels files present for it in `source`."""
    found = {}
    for split, candidates in suffixes.items():
        for suffix in candidates:
            if any((source / f"{prefix}.{suffix}").is_file() for prefix in _TRIPLE_PREFIXES):
                found[split] = suffix
                break
    return found


def _nli_loaders(
    source: Path,
    context: Context,
    name: str,
    jsonl_files: Dict[str, str],
    triple_suffixes: Dict[str, tuple],
) -> Dict[str, Callable[[], Split]]:
    """Finds `name`'s layout in `source`; returns a loader for each split present."""
    jsonl = {
        split: source / file for split, file in jsonl_files.items() if (source / file).is_file()
    }
    if jsonl:
        context.note(f"{name} layout: official JSON lines ({', '.join(jsonl)} present)")
        return {split: (lambda path=path: read_nli_jsonl(path)) for split, path in jsonl.items()}
    triple = _triple_suffixes(source, triple_suffixes)
    if triple:
        present = ", ".join(
            split if suffix == split else f"{split} = {suffix}" for split, suffix in triple.items()
        )
        context.note(
            f"{name} layout: e-SNLI/InferSent s1/s2/labels files ({present} present); "
            "the sentences are PTB-tokenized and written as they are"
        )
        return {
            split: (lambda suffix=suffix: read_nli_triple(source, suffix))
            for split, suffix in triple.items()
        }
    raise PrepareError(
        f"no {name} files (expected {', '.join(jsonl_files.values())}, or s1/s2/labels.<split>)",
        source,
    )


def convert_snli(source: Path, context: Context) -> Dict[str, Split]:
    """Converts SNLI; with `--cpu-subset`, train and dev both come from SNLI dev.

    Full setup: the official train, dev and test splits. `--cpu-subset`: dev = a seeded
    carve-out of SNLI dev (`--dev-size`, default 1,000), train = the rest of SNLI dev, test =
    SNLI test; SNLI train, if present, is not read.

    Args:
        source: Folder with the JSON lines files or the s1/s2/labels files.
        context: Options and notes.

    Returns:
        The train, dev and test splits.
    """
    require_dir(source, "SNLI folder")
    options = context.options
    loaders = _nli_loaders(source, context, "SNLI", SNLI_JSONL, SNLI_TRIPLE)
    needed: List[str] = ["dev", "test"] if options.cpu_subset else ["train", "dev", "test"]
    missing = [split for split in needed if split not in loaders]
    if missing:
        hint = "" if options.cpu_subset else "; with only dev and test, pass --cpu-subset"
        raise PrepareError(f"no SNLI {' or '.join(missing)} split{hint}", source)
    if not options.cpu_subset:
        return {split: loaders[split]() for split in needed}
    dev_size = options.dev_size or CPU_DEFAULT_DEV_SIZE
    snli_dev = loaders["dev"]()
    snli_dev.origin = f"SNLI dev ({snli_dev.origin})"
    dev, train = carve(snli_dev, dev_size, options.seed, what="dev", option="--dev-size")
    test = loaders["test"]()
    unused = "; SNLI train is in SOURCE but not used" if "train" in loaders else ""
    context.note(
        f"--cpu-subset: train = {len(train.rows)} rows of SNLI dev (all but the dev carve-out); "
        f"dev = a seeded carve-out of {len(dev.rows)} rows of SNLI dev (--dev-size {dev_size}, "
        f"--seed {options.seed}); test = SNLI test ({len(test.rows)} rows){unused}"
    )
    return {"train": train, "dev": dev, "test": test}


def convert_mnli(source: Path, context: Context) -> Dict[str, Split]:
    """Converts MultiNLI: train = train, dev = dev_matched, test = dev_mismatched.

    Args:
        source: Folder with the `multinli_1.0_*.jsonl` files, or InferSent's s1/s2/labels files.
        context: Notes.

    Returns:
        The train, dev and test splits.
    """
    require_dir(source, "MultiNLI folder")
    loaders = _nli_loaders(source, context, "MultiNLI", MNLI_JSONL, MNLI_TRIPLE)
    missing = [split for split in MNLI_JSONL if split not in loaders]
    if missing:
        expected = "; ".join(
            f"{MNLI_JSONL[split]} or {{s1,s2,labels}}.{'|'.join(MNLI_TRIPLE[split])}"
            for split in missing
        )
        raise PrepareError(
            f"no MultiNLI {' or '.join(missing)} split (expected {expected})", source
        )
    context.note("MultiNLI's test sets are unlabelled: dev = dev_matched, test = dev_mismatched")
    return {split: loaders[split]() for split in MNLI_JSONL}
