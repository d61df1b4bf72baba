"""The command line: convert, train what is missing, evaluate, write the report."""

import argparse
import json
import time
from pathlib import Path
from typing import List

from scripts.results.settings import DATASETS, ROOT, SST2_EXTRA_VARIANTS, VARIANTS


def data_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by `doc`'s first paragraph, with `--shared-data` and `--work-dir`."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "build" / "results")
    return parser


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    from scripts import results

    parser = data_parser(results.__doc__)
    parser.add_argument(
        "--json-dir",
        type=Path,
        default=None,
        help="where <dataset>_results.json go (default: the work directory)",
    )
    parser.add_argument("--datasets", default="sst2,ag_news,snli")
    parser.add_argument("--parallel", type=int, default=2, help="models trained at once")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timing-instances", type=int, default=200)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated model variants to train (e.g. early_exit,baseline); default all",
    )
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    known = set(VARIANTS) | set(SST2_EXTRA_VARIANTS)
    for name in args.variants:
        if name not in known:
            parser.exit(
                1, f"error: unknown variant {name!r}; choose from {', '.join(sorted(known))}\n"
            )
    args.datasets = checked_datasets(parser, args.datasets, args.shared_data)
    return args


def checked_datasets(parser: argparse.ArgumentParser, datasets: str, shared: Path) -> List[str]:
    """The dataset names of a comma-separated `--datasets`; exits on an unknown one or data."""
    names = [name.strip() for name in datasets.split(",") if name.strip()]
    for name in names:
        if name not in DATASETS:
            parser.exit(1, f"error: unknown dataset {name!r}; choose from {', '.join(DATASETS)}\n")
    if not shared.is_dir():
        parser.exit(1, f"error: {shared} is not a directory (the distributed datasets)\n")
    return names


def main(argv: List[str] = None) -> None:
    args = parse_args(argv)
    from scripts.results.training import prepare_and_train, training_jobs

    start = time.time()
    work, paths = prepare_and_train(
        args, lambda name, data, work: training_jobs(name, data, work, args.variants)
    )
    if args.train_only:
        return
    # Importing any of early_exit registers its components with allennlp.
    from early_exit.common.files import atomic_open
    from early_exit.common.machine import machine_description
    from scripts.results.evaluation import evaluate_dataset
    from scripts.results.report import readme_summary, update_readme, write_report

    json_dir = args.json_dir or work
    json_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.datasets:
        result = evaluate_dataset(name, paths[name], work, args.repeats, args.timing_instances)
        with atomic_open(json_dir / f"{name}_results.json") as out:
            json.dump(result, out, indent=2)
        results.append(result)
    elapsed = time.time() - start
    report = write_report(results, machine_description(), elapsed, trained=not args.report_only)
    (ROOT / "docs").mkdir(exist_ok=True)
    with atomic_open(ROOT / "docs" / "results.md") as out:
        out.write(report)
    update_readme(readme_summary(results))
    print(report)
    print(f"report written in {elapsed:.0f} s")
