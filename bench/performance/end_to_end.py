"""
End to end: `allennlp predict` on a JSONL file of evaluation inputs, a subprocess per run (through
`bench/timed_predict.py`, which times its prediction loop and the model inside it), the runs
interleaved by the library's `interleaved_times`.
"""

import atexit
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from bench.performance.data import Dataset
from bench.performance.settings import LARGE_BATCH, ROOT

TIMED_PREDICT = ROOT / "bench" / "timed_predict.py"
BATCH_SIZES = (1, LARGE_BATCH)


def predictor_inputs(reader, path: str, count: int) -> Tuple[List[Dict[str, str]], int]:
    """
    `count` predictor inputs: the records of a data file without their labels, from the first,
    and again from the first when the file has fewer (a short file's work would drown in the
    start-up's noise). Also returns how many distinct records they are.
    """
    records = []
    for _, record in reader._read_records(path):
        record = {key: value for key, value in record.items() if key != "label"}
        records.append(record)
        if len(records) == count:
            break
    distinct = len(records)
    return [records[index % distinct] for index in range(count)], distinct


class PredictRuns:
    """The files and commands of one dataset's `allennlp predict` runs, in a temporary folder."""

    def __init__(self, dataset: Dataset, records: List[Dict[str, str]], threads: Optional[int]):
        from early_exit.common.machine import subprocess_env

        self.dataset = dataset
        self.work = Path(tempfile.mkdtemp(prefix=f"perf_{dataset.name}_"))
        atexit.register(shutil.rmtree, self.work, ignore_errors=True)
        self.inputs = self.work / "inputs.jsonl"
        self.inputs.write_text("".join(json.dumps(record) + "\n" for record in records))
        self.env = subprocess_env(threads)

    def file(self, kind: str, batch_size: int, threshold: float) -> Path:
        """A run's `timing` (JSON) or `out` (JSONL predictions) file."""
        suffix = "json" if kind == "timing" else "jsonl"
        return self.work / f"{kind}_{batch_size}_{threshold:g}.{suffix}"

    def command(self, batch_size: int, threshold: float) -> List[str]:
        return [
            sys.executable, str(TIMED_PREDICT), str(self.file("timing", batch_size, threshold)),
            self.dataset.archive, str(self.inputs), "--output-file",
            str(self.file("out", batch_size, threshold)), "--batch-size", str(batch_size),
            "--silent", "--cuda-device", "-1", "--include-package", "early_exit",
            "--predictor-args", json.dumps({"confidence_threshold": threshold}),
        ]  # fmt: skip

    def run(self, batch_size: int, threshold: float) -> Tuple[float, Dict[str, float]]:
        """One run: its wall time and what `timed_predict.py` measured inside it."""
        start = time.perf_counter()
        done = subprocess.run(
            self.command(batch_size, threshold),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"allennlp predict failed:\n{done.stderr[-3000:]}")
        return wall, json.loads(self.file("timing", batch_size, threshold).read_text())

    def outputs(self, batch_size: int, threshold: float) -> List[Dict[str, Any]]:
        text = self.file("out", batch_size, threshold).read_text()
        return [json.loads(line) for line in text.splitlines()]


def e2e_part(
    dataset: Dataset,
    reader,
    thresholds: List[float],
    count: int,
    repeats: int,
    threads: Optional[int],
) -> Dict[str, Any]:
    from early_exit.sweep.timing import interleaved_times

    records, distinct = predictor_inputs(reader, dataset.eval, count)
    runs = PredictRuns(dataset, records, threads)
    keys = [(batch_size, threshold) for batch_size in BATCH_SIZES for threshold in thresholds]
    loop: Dict[Tuple, List[float]] = {key: [] for key in keys}
    model: Dict[Tuple, List[float]] = {key: [] for key in keys}  # the forward passes in the loop
    startup: List[float] = []

    def timed(key: Tuple[int, float]) -> Callable[[slice], float]:
        def run(_: slice) -> float:
            wall, timing = runs.run(*key)
            loop[key].append(timing["loop_seconds"])
            model[key].append(timing["model_seconds"])
            startup.append(wall - timing["loop_seconds"])
            return wall

        return run

    def report(done: int) -> None:
        print(f"  end to end: repeat {done}/{repeats}", file=sys.stderr, flush=True)

    times = interleaved_times(
        [timed(key) for key in keys], repeats, warmup=False, after_round=report
    )
    wall = dict(zip(keys, times))
    outputs = {key: runs.outputs(*key) for key in keys}
    return {
        "startup_seconds": statistics.median(startup),
        "startup_run_seconds": startup,
        "runs": [
            e2e_row(key, len(records), distinct, wall, loop, model, outputs[key]) for key in keys
        ],
        "lines_differing_between_batch_sizes": differing_lines(outputs, thresholds),
    }


def e2e_row(key, count, distinct, wall, loop, model, lines) -> Dict[str, Any]:
    """One batch size and threshold: per line times and speedups against threshold 1.0."""
    from early_exit.sweep.timing import median_ratio

    batch_size, threshold = key
    full = (batch_size, 1.0)
    return {
        "batch_size": batch_size,
        "threshold": threshold,
        "instances": count,
        "distinct_instances": distinct,
        "seconds": statistics.median(wall[key]),
        "ms_per_instance_with_startup": statistics.median(wall[key]) / count * 1e3,
        "ms_per_instance": statistics.median(loop[key]) / count * 1e3,
        "speedup": median_ratio(loop[full], loop[key]),
        # The same batches' forward passes, timed inside the same runs.
        "model_ms_per_instance": statistics.median(model[key]) / count * 1e3,
        "model_speedup": median_ratio(model[full], model[key]),
        "speedup_with_startup": median_ratio(wall[full], wall[key]),
        "relative_compute": statistics.mean(line["relative_compute"] for line in lines),
        "repeat_seconds": wall[key],
        "repeat_loop_seconds": loop[key],
        "repeat_model_seconds": model[key],
    }


def differing_lines(outputs, thresholds: List[float]) -> Dict[str, int]:
    """Outputs must not depend on the batch size (the model packs batches): lines that do."""
    differing = {}
    for threshold in thresholds:
        one, many = outputs[(1, threshold)], outputs[(LARGE_BATCH, threshold)]
        differing[f"{threshold:g}"] = sum(
            a["label"] != b["label"] or a["exit_layer"] != b["exit_layer"]
            for a, b in zip(one, many)
        ) + abs(len(one) - len(many))
    return differing
