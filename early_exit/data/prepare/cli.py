"""Command line: `python -m early_exit.data.prepare DATASET SOURCE OUTPUT_DIR [options]`."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from early_exit.data.prepare.core import PrepareError
from early_exit.data.prepare.runner import DATASETS, prepare

EPILOG = """\
output: OUTPUT_DIR/text_cat/{sst2,ag_news,imdb}/ and OUTPUT_DIR/nli/{snli,mnli}/, each with
train.tsv, dev.tsv and test.tsv: UTF-8, one instance per line, `label<TAB>text` or
`label<TAB>premise<TAB>hypothesis`, no header. Whitespace runs (tabs and line breaks included)
become one space.

SOURCE and splits per dataset (carved splits are seeded with --seed and reported):
  sst2     GLUE SST-2 folder (train.tsv, dev.tsv[, test.tsv]). GLUE test has no labels, so
           test = GLUE dev; dev = carve-out of GLUE train (--dev-size, default 872);
           train = the rest of GLUE train. Labels: negative, positive.
  ag_news  ag_news_csv folder (train.csv, test.csv[, classes.txt]). dev = carve-out of
           train.csv (--dev-size, default 5000); test = test.csv.
           Labels: World, Sports, Business, Sci/Tech.
  imdb     the 50k-review CSV file (review,sentiment): test = carve-out (--test-size, default
           half), dev = carve-out of the rest (--dev-size, default 5000); or the aclImdb folder:
           test = aclImdb/test, dev = carve-out of aclImdb/train (--dev-size, default 5000).
           <br /> tags become spaces. Labels: negative, positive.
  snli     folder with snli_1.0_{train,dev,test}.jsonl, or e-SNLI/InferSent s1/s2/labels.<split>
           files. Pairs with gold label '-' are dropped and counted.
  mnli     folder with multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl, or InferSent's
           s1/s2/labels.{train,dev,test} files (dev_matched and dev_mismatched as suffixes
           too): dev = dev_matched, test = dev_mismatched.

--cpu-subset (small splits for CPU-sized experiments):
  ag_news  test.csv only: test = a carve-out of --test-size rows (default 2000); dev = a
           carve-out of --dev-size of the other rows (default 600); train = the rest (5000).
  snli     train = SNLI dev minus a carve-out of --dev-size rows (default 1000); dev = that
           carve-out; test = SNLI test. SNLI train is not needed.
  For sst2, use --max-train N instead.

exit status: 0 on success, 2 on bad input or options (the message names the file and line).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command."""
    parser = argparse.ArgumentParser(
        prog="python -m early_exit.data.prepare",
        description="Convert a dataset from its distributed format to the TSV splits that the "
        "early_exit dataset readers read, and print a summary of each split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dataset", metavar="DATASET", choices=list(DATASETS), help=f"one of: {', '.join(DATASETS)}"
    )
    parser.add_argument("source", metavar="SOURCE", help="the distributed files (see below)")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="root of the prepared data")
    parser.add_argument(
        "--seed", type=int, default=13, help="seed of every carve-out and sample (default: 13)"
    )
    parser.add_argument(
        "--dev-size",
        type=int,
        metavar="N",
        help="rows of a carved or sampled dev split (default: per dataset, see below)",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        metavar="N",
        help="rows of a carved test split (imdb CSV, ag_news --cpu-subset)",
    )
    parser.add_argument(
        "--max-train", type=int, metavar="N", help="keep a seeded sample of at most N train rows"
    )
    parser.add_argument(
        "--cpu-subset",
        action="store_true",
        help="build the CPU-sized splits (ag_news and snli; see below)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite existing non-empty output files"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; returns the exit status (2 on a [`PrepareError`][])."""
    args = build_parser().parse_args(argv)
    try:
        report = prepare(
            args.dataset,
            args.source,
            args.output_dir,
            seed=args.seed,
            dev_size=args.dev_size,
            test_size=args.test_size,
            max_train=args.max_train,
            cpu_subset=args.cpu_subset,
            force=args.force,
        )
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.format())
    return 0
