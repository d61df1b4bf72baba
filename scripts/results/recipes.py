"""
The recipe search behind docs/recipe_search.md: each dataset's adopted recipe
(`training_config/<dataset>_minilm.jsonnet`) against one change at a time (`RECIPE_CHANGES`), on the
splits of docs/results.md, each chosen on dev and reported on the evaluation split (the rule that
picks a recipe from the dev columns alone is `recipe_rule.pick`).
"""

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from scripts.results.recipe_rule import ADOPTED
from scripts.results.settings import MAIN, RECIPE_CHANGES, ROOT, dataset_variants

OUTPUT = ROOT / "docs" / "recipe_search.md"


def model_dir(dataset: str, name: str, work: Path) -> Path:
    """
    Where the archive of `name` (`ADOPTED` or a key of `RECIPE_CHANGES[dataset]`) is trained: the
    adopted recipe and a change that is also a results.md variant share that model's directory,
    so neither is trained twice; the other changes live apart (results.md reports every model
    under `models/`).
    """
    if name == ADOPTED:
        return work / "models" / f"{dataset}_{MAIN}"
    overrides = RECIPE_CHANGES[dataset][name][1]
    for variant, extra in dataset_variants(dataset).items():
        if extra == overrides:
            return work / "models" / f"{dataset}_{variant}"
    return work / "recipes" / f"{dataset}_{name}"


def recipe_names(dataset: str, only: Optional[List[str]] = None) -> List[str]:
    """`ADOPTED` and the changes of `dataset`, limited to the names in `only` when given."""
    names = [ADOPTED, *RECIPE_CHANGES[dataset]]
    return [name for name in names if name == ADOPTED or not only or name in only]


def training_jobs(dataset: str, paths: Dict[str, Path], work: Path, only: List[str]) -> List[Dict]:
    from scripts.results.training import training_job

    return [
        training_job(
            dataset,
            paths,
            model_dir(dataset, name, work),
            {} if name == ADOPTED else RECIPE_CHANGES[dataset][name][1],
        )
        for name in recipe_names(dataset, only)
    ]


def recipe_words(config: Dict[str, Any]) -> str:
    """
    An archive's training recipe in words, from its config: `encoder lr 1e-4, head lr 1e-3, ...`.
    """
    from scripts.results.formatting import format_lr

    model, trainer = config["model"], config["trainer"]
    groups = trainer["optimizer"].get("parameter_groups") or []
    head_lrs = [options["lr"] for _, options in groups if "lr" in options]
    weight = model.get("distillation_weight", 0.0)
    words = [
        f"encoder lr {format_lr(trainer['optimizer']['lr'])}",
        f"head lr {format_lr(head_lrs[0])}" if head_lrs else "head lr = encoder lr",
        (
            f"distillation weight {weight:g} at temperature "
            f"{model.get('distillation_temperature', 1.0):g}"
            if weight
            else "no distillation"
        ),
        "summed loss" if "loss_weights" not in model else f"loss weights {model['loss_weights']}",
        f"{trainer['num_epochs']} epoch{'s' if trainer['num_epochs'] != 1 else ''}",
        f"batches of {config['data_loader']['batch_sampler']['batch_size']}",
    ]
    return ", ".join(words)


def evaluate_recipes(
    dataset: str, paths: Dict[str, Path], work: Path, only: Optional[List[str]] = None
) -> Dict[str, Any]:
    """
    Every recipe of `dataset`: trained ones chosen on dev and reported on the evaluation split.
    """
    from allennlp.models.archival import load_archive

    from scripts.results.evaluation import evaluate_variant

    result: Dict[str, Any] = {"dataset": dataset, "recipes": []}
    for name in recipe_names(dataset, only):
        change = "adopted recipe" if name == ADOPTED else RECIPE_CHANGES[dataset][name][0]
        entry: Dict[str, Any] = {"name": name, "change": change}
        archive_path = model_dir(dataset, name, work) / "model.tar.gz"
        if archive_path.exists():
            archive = load_archive(str(archive_path))
            reader = archive.validation_dataset_reader
            dev = list(reader.read(str(paths["dev"])))
            evaluation = list(reader.read(str(paths["eval"])))
            entry.update(evaluate_variant(archive.model, dev, evaluation))
            entry["eval_size"] = len(evaluation)
            if name == ADOPTED:
                result["adopted_words"] = recipe_words(archive.config.as_dict(quiet=True))
        result["recipes"].append(entry)
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from scripts.results.cli import checked_datasets

    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "build" / "results")
    parser.add_argument("--datasets", default="sst2,ag_news,snli")
    parser.add_argument(
        "--changes",
        default="",
        help="comma-separated changes to train and report (e.g. encoder_lr_5e-5); default all",
    )
    parser.add_argument("--parallel", type=int, default=2, help="models trained at once")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="no training; report what is")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    args.datasets = checked_datasets(parser, args.datasets, args.shared_data)
    args.changes = [name.strip() for name in args.changes.split(",") if name.strip()]
    known = {name for dataset in args.datasets for name in RECIPE_CHANGES[dataset]}
    for name in args.changes:
        if name not in known:
            parser.exit(
                1, f"error: unknown change {name!r}; choose from {', '.join(sorted(known))}\n"
            )
    return args


def main(argv: Optional[List[str]] = None) -> None:
    from scripts.results.training import prepare_and_train

    args = parse_args(argv)
    start = time.time()
    work, paths = prepare_and_train(
        args, lambda name, data, work: training_jobs(name, data, work, args.changes)
    )
    if args.train_only:
        return
    import torch

    from early_exit.common.files import atomic_open
    from early_exit.common.machine import machine_description, run_command
    from scripts.results.report_recipes import recipe_report

    torch.set_num_threads(2)
    results = [evaluate_recipes(name, paths[name], work, args.changes) for name in args.datasets]
    command = run_command(".venv/bin/python scripts/recipe_search.py", argv)
    report = recipe_report(results, machine_description(), time.time() - start, command)
    with atomic_open(args.output) as out:
        out.write(report)
    print(report)
    print(f"written to {args.output}")
