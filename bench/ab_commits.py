"""
Is one commit's model faster or slower than another's? An A/B of two commits in one interleaved run.

Each commit is checked out into a temporary git worktree and gets a worker process that imports
`early_exit` from there (so both run the same machine, data, seeds and Python environment). The
workers build the same model (all-MiniLM-L6-v2, a head on every layer, seeded: untrained heads, so
the exits depend only on the seed) and take turns: in every repeat each worker times every
configuration once (at batch size 1 and 32, packed, the batches of 32 carried as `allennlp predict`
runs them), in an order rotated from repeat to repeat. Reported: the median time per instance of
each commit and configuration, and the median of the per-repeat ratios B / A.

Usage (from the repo root, after `make install`, on a quiet machine):

    .venv/bin/python bench/ab_commits.py A_COMMIT B_COMMIT [--instances 256] [--repeats 7]
        [--thresholds 1.0,0.5,0.0] [--threads N] [--layer-runner JSON] [--output FILE]

`--layer-runner` times both commits' models under that layer runner (e.g. `'{"type":
"onnxruntime", "precision": "int8"}'`; both commits need it), each worker with its own graph
cache in the temporary folder.

Prints a Markdown table (and writes it to `--output` if given).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List

from early_exit.common.files import atomic_open
from early_exit.common.machine import run_command
from early_exit.sweep.timing import interleaved_times, median_ratio

ROOT = Path(__file__).resolve().parent.parent

# The worker: reads one JSON command a line ({"repeat": true} or {"quit": true}) and answers one
# JSON line of {config: seconds}. Written for every version of the package since the policies
# (it sets `confidence_threshold` and batches with `prepare_batches`, which every version has).
WORKER = r"""
import json, sys, time
import torch
from allennlp.data import Vocabulary
from early_exit.dataset_readers import EarlyExitTextClassificationReader
from early_exit.models import EarlyExitClassifier
from early_exit.sweep.timing import prepare_batches

settings = json.loads(sys.argv[1])
if settings["threads"]:
    torch.set_num_threads(settings["threads"])
reader = EarlyExitTextClassificationReader(settings["model"], max_length=128)
instances = list(reader.read(settings["data"]))[: settings["instances"]]
vocab = Vocabulary.from_instances(instances)
torch.manual_seed(0)
model = EarlyExitClassifier(vocab, settings["model"], exit_layers=list(range(6))).eval()
if settings["layer_runner"]:
    model.layer_runner = dict(settings["layer_runner"], cache_dir=settings["cache_dir"])

plans = {size: prepare_batches(model, instances, size) for size in (1, 32)}

def run(size, threshold):
    model.confidence_threshold = threshold
    start = time.perf_counter()
    if size == 1:
        for batch in plans[1]:
            model(**batch)
    else:
        for _ in model.forward_stream(plans[32]):
            pass
    return time.perf_counter() - start

configs = [(size, threshold) for size in (1, 32) for threshold in settings["thresholds"]]
with torch.inference_mode():
    layers = {}
    for size, threshold in configs:  # warm-up, and the exits (equal across commits)
        model.confidence_threshold = threshold
        model.get_metrics(reset=True)
        run(size, threshold)
        layers[f"{size}/{threshold}"] = model.get_metrics(reset=True)["mean_exit_layer"]
    print(json.dumps({"ready": layers}), flush=True)
    for line in sys.stdin:
        if json.loads(line).get("quit"):
            break
        print(json.dumps({f"{s}/{t}": run(s, t) for s, t in configs}), flush=True)
"""


def start_worker(commit: str, workdir: Path, settings: Dict) -> subprocess.Popen:
    from early_exit.common.machine import subprocess_env

    tree = workdir / commit
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True)
    settings = dict(settings, cache_dir=str(workdir / f"{commit}_graphs"))
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(settings)],
        cwd=tree,
        env=dict(subprocess_env(settings["threads"]), PYTHONPATH=str(tree)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def answer(worker: subprocess.Popen) -> Dict:
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError("a worker ended early (run it by hand to see why)")
    return json.loads(line)


def repeat_on(worker: subprocess.Popen, times: Dict[str, List[float]]) -> Callable[[slice], float]:
    """A turn of one worker: every configuration once, its times added to `times`."""

    def turn(_: slice) -> float:
        worker.stdin.write('{"repeat": true}\n')
        worker.stdin.flush()
        seconds = answer(worker)
        for config, value in seconds.items():
            times.setdefault(config, []).append(value)
        return sum(seconds.values())

    return turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--instances", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--thresholds", default="1.0,0.5,0.0")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--data", default=str(ROOT / "data" / "sst2_sample" / "dev.tsv"))
    parser.add_argument("--layer-runner", type=json.loads, default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    settings = {
        "threads": args.threads,
        "model": args.model,
        "data": args.data,
        "instances": args.instances,
        "thresholds": [float(value) for value in args.thresholds.split(",")],
        "layer_runner": args.layer_runner,
    }
    commits = [args.a, args.b]
    times: Dict[str, Dict[str, List[float]]] = {commit: {} for commit in commits}
    with tempfile.TemporaryDirectory() as workdir:
        workers = {commit: start_worker(commit, Path(workdir), settings) for commit in commits}
        try:
            exits = {commit: answer(worker)["ready"] for commit, worker in workers.items()}
            # The commits take turns, in an order rotated from repeat to repeat.
            turns = [repeat_on(workers[commit], times[commit]) for commit in commits]
            interleaved_times(turns, args.repeats, warmup=False)
        finally:
            for worker in workers.values():
                if worker.poll() is None:
                    worker.stdin.write('{"quit": true}\n')
                    worker.stdin.close()
                    worker.wait(timeout=60)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)  # the removed trees
    lines = [
        f"A/B: `{args.a}` (A) against `{args.b}` (B), {args.instances} sentences of "
        f"`{Path(args.data).name}`, {args.repeats} repeats, interleaved (rotating order); "
        f"layer runner {json.dumps(args.layer_runner or {'type': 'torch'})}.",
        "",
        "| batch size / threshold | mean exit layer A / B | A ms/instance | B ms/instance "
        "| B / A (median of per-repeat ratios) |",
        "|---|---:|---:|---:|---:|",
    ]
    for config in times[args.a]:
        a, b = times[args.a][config], times[args.b][config]
        ratio = median_ratio(b, a)
        lines.append(
            f"| {config} | {exits[args.a][config]:.2f} / {exits[args.b][config]:.2f} | "
            f"{statistics.median(a) * 1000 / args.instances:.2f} | "
            f"{statistics.median(b) * 1000 / args.instances:.2f} | {ratio:.3f} |"
        )
    lines += ["", f"Command: `{run_command('.venv/bin/python bench/ab_commits.py')}`", ""]
    print("\n".join(lines))
    if args.output:
        with atomic_open(args.output) as out:
            out.write("\n".join(lines))


if __name__ == "__main__":
    main()
