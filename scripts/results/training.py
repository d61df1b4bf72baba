"""Converting the distributed datasets and training the models that have no archive yet."""

import argparse
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from early_exit.common.machine import subprocess_env
from scripts.results.settings import DATASETS, PY, ROOT, SEED, dataset_variants


def run(command: List[str], log: Optional[Path] = None, threads: int = 1) -> None:
    print("$", " ".join(command), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as out:
        subprocess.run(
            command,
            cwd=ROOT,
            env=subprocess_env(threads),
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def prepare_data(dataset: str, shared: Path, work: Path) -> Dict[str, Path]:
    """Converts the distributed files; returns the train/dev/eval paths."""
    converted = work / "data"
    out = converted / DATASETS[dataset]["task"] / dataset
    if not (out / "train.tsv").exists():
        options = [] if dataset == "sst2" else ["--cpu-subset"]
        command = [PY, "-m", "early_exit.data.prepare", dataset, str(shared / dataset)]
        command += [str(converted), "--force", "--seed", str(SEED), *options]
        run(command, log=work / f"prepare_{dataset}.log")
    if dataset != "sst2":
        return {"train": out / "train.tsv", "dev": out / "dev.tsv", "eval": out / "test.tsv"}
    # SST-2: split GLUE dev (the converter's test split) into seeded halves.
    halves = work / "data" / "sst2_halves"
    if not (halves / "dev.tsv").exists():
        halves.mkdir(parents=True, exist_ok=True)
        lines = (out / "test.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        order = list(range(len(lines)))
        random.Random(SEED).shuffle(order)
        middle = len(lines) // 2
        (halves / "dev.tsv").write_text("".join(lines[i] for i in sorted(order[:middle])))
        (halves / "eval.tsv").write_text("".join(lines[i] for i in sorted(order[middle:])))
    return {"train": out / "train.tsv", "dev": halves / "dev.tsv", "eval": halves / "eval.tsv"}


def training_job(dataset: str, paths: Dict[str, Path], directory: Path, extra: Dict) -> Dict:
    """Training `training_config/<dataset>_minilm.jsonnet` on `paths` with the `extra` overrides."""
    overrides = {
        "train_data_path": str(paths["train"]),
        "validation_data_path": str(paths["dev"]),
        **extra,
    }
    return {
        "config": f"training_config/{dataset}_minilm.jsonnet",
        "dir": directory,
        "overrides": overrides,
    }


def training_jobs(
    dataset: str, paths: Dict[str, Path], work: Path, only: Optional[List[str]] = None
) -> List[Dict]:
    """The training jobs for `dataset`, limited to the variant names in `only` when given."""
    return [
        training_job(dataset, paths, work / "models" / f"{dataset}_{name}", extra)
        for name, extra in dataset_variants(dataset).items()
        if not only or name in only
    ]


def _start(job: Dict) -> Tuple[Dict, subprocess.Popen, float]:
    """Starts `allennlp train` for one job (one thread), its log beside its directory."""
    if job["dir"].exists():
        shutil.rmtree(job["dir"])
    job["dir"].parent.mkdir(parents=True, exist_ok=True)
    command = [PY, "-m", "allennlp", "train", job["config"], "-s", str(job["dir"])]
    command += ["--include-package", "early_exit", "-o", json.dumps(job["overrides"])]
    print("$", " ".join(command), flush=True)
    log = open(str(job["dir"]) + ".log", "w")
    process = subprocess.Popen(
        command, cwd=ROOT, env=subprocess_env(threads=1), stdout=log, stderr=subprocess.STDOUT
    )
    return job, process, time.time()


def train_all(jobs: List[Dict], parallel: int) -> None:
    """Trains the models that have no archive yet, `parallel` at a time, one thread each."""
    pending = [job for job in jobs if not (job["dir"] / "model.tar.gz").exists()]
    running: List[Tuple[Dict, subprocess.Popen, float]] = []
    while pending or running:
        while pending and len(running) < parallel:
            running.append(_start(pending.pop(0)))
        time.sleep(5)
        for entry in list(running):
            job, process, start = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            status = "done" if process.returncode == 0 else f"FAILED ({process.returncode})"
            print(f"   {job['dir'].name}: {status} in {time.time() - start:.0f} s", flush=True)
            if process.returncode != 0:
                raise SystemExit(f"training failed, see {job['dir']}.log")


def prepare_and_train(
    args: argparse.Namespace, jobs_of: Callable[[str, Dict[str, Path], Path], List[Dict]]
) -> Tuple[Path, Dict[str, Dict[str, Path]]]:
    """
    Converts the files of each of `args.datasets` and, unless `args.report_only`, trains the jobs
    `jobs_of(dataset, paths, work)` lists that have no archive yet; returns the work directory and
    each dataset's train/dev/eval paths. The evaluation that follows in this process runs offline.
    """
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)  # the preparation logs go there first
    paths = {name: prepare_data(name, args.shared_data.resolve(), work) for name in args.datasets}
    if not args.report_only:
        jobs = [job for name in args.datasets for job in jobs_of(name, paths[name], work)]
        train_all(jobs, args.parallel)
    return work, paths
