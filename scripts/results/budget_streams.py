"""
The data of the compute-budget section: every head's outputs of a trained model on the dev and
evaluation splits, collected once per dataset (the model runs every layer once; everything after
is arrays), and the drifting streams made from the evaluation split.
"""

from pathlib import Path
from typing import Dict, List

import torch

from scripts.results.settings import SEED

# The third drift: each model's evaluation split, then this many texts of the other dataset's
# evaluation file (a source of text it was not trained on: harder, by its heads' confidence).
FOREIGN_COUNT = 500
FOREIGN = {"sst2": "ag_news", "ag_news": "sst2"}


def collect(archive_file: Path, dev: Path, evaluation: Path, cache: Path) -> Dict:
    """
    `{"dev": split, "eval": split, "head_compute": [...], "exit_layers": [...], "full_depth": n,
    "temperatures": [...], "labels": [...]}` with each split `{"logits": (n, heads, labels),
    "labels": (n,), "lengths": (n,) wordpieces}`, from `cache` if it is there (else collected
    with the model and written there).
    """
    if cache.exists():
        return torch.load(cache)
    from allennlp.models.archival import load_archive

    from early_exit.models.head_outputs import collect_head_outputs

    archive = load_archive(str(archive_file))
    model, reader = archive.model, archive.validation_dataset_reader
    data: Dict = {
        "head_compute": model.engine.head_compute,
        "exit_layers": list(model.exit_layers),
        "full_depth": model.full_depth,
        "temperatures": model.temperatures.tolist(),
    }
    for name, path in (("dev", dev), ("eval", evaluation)):
        instances = list(reader.read(str(path)))
        outputs = collect_head_outputs(model, instances, description=f"every head on {name}")
        lengths = torch.tensor([len(instance["tokens"].tokens) for instance in instances])
        data[name] = {"logits": outputs.logits, "labels": outputs.labels, "lengths": lengths}
    _save(data, cache)
    return data


def collect_foreign(archive_file: Path, texts: Path, cache: Path) -> torch.Tensor:
    """
    Every head's logits `(FOREIGN_COUNT, heads, labels)` of the model on the first
    `FOREIGN_COUNT` texts of the TSV `texts` (label, text; the labels are not the model's and are
    dropped), from `cache` if it is there.
    """
    if cache.exists():
        return torch.load(cache)
    from allennlp.models.archival import load_archive

    from early_exit.models.head_outputs import collect_head_outputs

    archive = load_archive(str(archive_file))
    model, reader = archive.model, archive.validation_dataset_reader
    lines = texts.read_text(encoding="utf-8").splitlines()[:FOREIGN_COUNT]
    instances = [reader.text_to_instance(line.split("\t", 1)[1]) for line in lines]
    for instance in instances:
        reader.apply_token_indexers(instance)
    logits = collect_head_outputs(model, instances, description="every head on other text").logits
    _save(logits, cache)
    return logits


def _save(value, cache: Path) -> None:
    from early_exit.common.files import atomic_open

    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(cache, "wb") as out:
        torch.save(value, out)


def streams(split: Dict) -> Dict[str, List[int]]:
    """
    Orders of the evaluation split, by name: `shuffled` (seeded; no drift, the control),
    `short to long` (by wordpieces; ties in file order), `class by class` (one label's texts
    after another's, in label index order; file order within a label).
    """
    count = len(split["labels"])
    generator = torch.Generator().manual_seed(SEED)
    lengths, labels = split["lengths"].tolist(), split["labels"].tolist()
    return {
        "shuffled": torch.randperm(count, generator=generator).tolist(),
        "short to long": sorted(range(count), key=lambda index: lengths[index]),
        "class by class": sorted(range(count), key=lambda index: labels[index]),
    }
