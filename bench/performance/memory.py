"""Peak memory of inference at batch size 32: one fresh process per configuration."""

import gc
import json
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.performance.data import Dataset, hf_inputs, load_hf_model
from bench.performance.settings import LARGE_BATCH, ROOT


def memory_part(
    dataset: Dataset, thresholds: List[float], count: int, threads: Optional[int]
) -> List[Dict[str, Any]]:
    """The transformers reference, then the model at each threshold, each in its own process."""
    from early_exit.common.machine import subprocess_env

    results = []
    kinds = [("transformers", None)] + [("early exit", threshold) for threshold in thresholds]
    for kind, threshold in kinds:
        spec = {
            "archive": dataset.archive,
            "eval": dataset.eval,
            "instances": count,
            "batch_size": LARGE_BATCH,
            "kind": kind,
            "threshold": threshold,
            "threads": threads,
        }
        done = subprocess.run(
            [sys.executable, "-m", "bench.performance", "--memory-child", json.dumps(spec)],
            cwd=ROOT,
            env=subprocess_env(threads),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"memory measurement failed:\n{done.stderr[-3000:]}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        record.update({"model": kind, "threshold": threshold, "instances": count})
        results.append(record)
        print(f"  memory: {kind} {threshold}", file=sys.stderr, flush=True)
    return results


def memory_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in its own process: loads, resets the peak, runs inference once, reports."""
    import torch

    # (importing any part of early_exit registers its components)
    from early_exit.models.archive_loading import load_early_exit_archive
    from early_exit.sweep.timing import prepare_batches

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    archive = load_early_exit_archive(spec["archive"])
    model, reader = archive.model.eval(), archive.validation_dataset_reader
    instances = list(reader.read(spec["eval"]))[: spec["instances"]]
    batches = prepare_batches(model, instances, spec["batch_size"])
    if spec["kind"] == "transformers":
        encoder, num_labels = archive.config["model"]["transformer_model"], model.num_labels
        type_ids = getattr(model.encoder, "has_token_types", True)
        del archive, model
        gc.collect()
        hf = load_hf_model(encoder, num_labels)
        inputs = hf_inputs(batches, type_ids)

        def run():
            for kwargs in inputs:
                hf(**kwargs)

    else:
        model.confidence_threshold = spec["threshold"]

        def run():
            for batch in batches:
                model(**batch)

    gc.collect()
    before = _status_kib("VmRSS")
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        reset = False
    with torch.inference_mode():
        run()
    peak = _status_kib("VmHWM")
    return {
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "inference_increase_mib": (peak - before) / 1024 if reset else None,
        "peak_reset_after_loading": reset,
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) if match else -1
