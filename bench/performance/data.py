"""The archives and data files a run measures, and the transformers reference model."""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.performance.settings import DEFAULT_ARCHIVES, ROOT


@dataclass
class Dataset:
    name: str
    archive: str
    dev: str
    eval: str


def parse_datasets(args: argparse.Namespace) -> List[Dataset]:
    """`--archive NAME=PATH[:DEV:EVAL]`, `--dev-data NAME=PATH`, `--eval-data NAME=PATH`."""
    archives = _pairs(args.archive, "--archive") or _default_archives()
    devs, evals = _pairs(args.dev_data, "--dev-data"), _pairs(args.eval_data, "--eval-data")
    datasets = []
    for name, spec in archives.items():
        parts = spec.split(":")
        archive, dev, evaluation = parts[0], devs.get(name), evals.get(name)
        if len(parts) == 3:
            dev, evaluation = dev or parts[1], evaluation or parts[2]
        elif len(parts) != 1:
            raise SystemExit(
                f"error: --archive takes NAME=ARCHIVE or NAME=ARCHIVE:DEV:EVAL: {spec}"
            )
        if not dev or not evaluation:
            raise SystemExit(f"error: {name} needs a dev file and an evaluation file")
        for path in (archive, dev, evaluation):
            if not Path(path).exists():
                raise SystemExit(f"error: {name}: {path} does not exist")
        datasets.append(Dataset(name, archive, dev, evaluation))
    return datasets


def _pairs(values: Optional[List[str]], option: str) -> Dict[str, str]:
    out = {}
    for value in values or []:
        if "=" not in value:
            raise SystemExit(f"error: {option} takes NAME=PATH, got {value!r}")
        name, path = value.split("=", 1)
        out[name.strip()] = path.strip()
    return out


def _default_archives() -> Dict[str, str]:
    archives = {
        name: ":".join(paths)
        for name, paths in DEFAULT_ARCHIVES.items()
        if (ROOT / paths[0]).exists()
    }
    if not archives:
        raise SystemExit(
            "error: no --archive given and none of the default archives exists "
            f"({', '.join(paths[0] for paths in DEFAULT_ARCHIVES.values())})"
        )
    return archives


def num_tokens(instance) -> int:
    return instance.fields["tokens"].sequence_length()


def indexed_tokens(batch: Dict[str, Any]) -> Dict[str, Any]:
    """A batch's token ids, mask and type ids (from `prepare_batches`)."""
    return next(iter(batch["tokens"].values()))


def hf_inputs(batches: List[Dict[str, Any]], with_type_ids: bool) -> List[Dict[str, Any]]:
    """The same token ids, mask and type ids as Hugging Face keyword arguments."""
    inputs = []
    for batch in batches:
        indexed = indexed_tokens(batch)
        kwargs = {"input_ids": indexed["token_ids"], "attention_mask": indexed["mask"].long()}
        if with_type_ids and "type_ids" in indexed:
            kwargs["token_type_ids"] = indexed["type_ids"]
        inputs.append(kwargs)
    return inputs


def load_hf_model(encoder: str, num_labels: int):
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # the new classifier's "newly initialized" warning
    hf = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=num_labels)
    return hf.eval()
