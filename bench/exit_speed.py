"""
How much faster is an instance that exits at the first head than one that runs the whole encoder?

Times the early-exit classifier's forward pass (eval mode, `torch.inference_mode`) on a 6-layer BERT
(all-MiniLM-L6-v2 with heads on every layer) at batch size 1 and 32: threshold 1.0 (the full model,
no early exit) against threshold 0.0 (every instance exits at layer 0 of 6). Both are measured side
by side in one run, interleaved in every repeat, and the medians are reported. The target is a
speedup of at least 3x at both batch sizes (the ideal, counting layers only, is 6x).

Usage (from the repo root, after `make install`):

    .venv/bin/python bench/exit_speed.py [--model models/all-MiniLM-L6-v2]
        [--data data/sst2_sample/dev.tsv] [--instances 256] [--repeats 7] [--threads N]
"""
import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch
from allennlp.data import Batch, Vocabulary

from early_exit.dataset_readers import EarlyExitTextClassificationReader
from early_exit.models import EarlyExitClassifier

ROOT = Path(__file__).resolve().parent.parent


def batches(model, instances, batch_size) -> List[Dict]:
    out = []
    for start in range(0, len(instances), batch_size):
        batch = Batch(instances[start : start + batch_size])
        batch.index_instances(model.vocab)
        out.append(batch.as_tensor_dict())
    return out


def time_pass(model, tensor_batches, threshold: float) -> float:
    model.confidence_threshold = threshold
    start = time.perf_counter()
    with torch.inference_mode():
        for tensors in tensor_batches:
            model(tokens=tensors["tokens"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--data", default=str(ROOT / "data" / "sst2_sample" / "dev.tsv"))
    parser.add_argument("--instances", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    reader = EarlyExitTextClassificationReader(args.model, max_length=128)
    instances = list(reader.read(args.data))[: args.instances]
    vocab = Vocabulary.from_instances(instances)
    torch.manual_seed(0)
    model = EarlyExitClassifier(vocab, args.model, exit_layers=list(range(6))).eval()
    assert model.encoder.num_layers == 6, "the benchmark needs a 6-layer encoder"

    print(f"machine: {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")
    print(f"data: {len(instances)} instances of {args.data}; repeats: {args.repeats} (median)")
    print()
    print("| batch size | full model (threshold 1.0) | exit at layer 0 (threshold 0.0) | speedup |")
    print("|---:|---:|---:|---:|")
    for batch_size in (1, 32):
        tensor_batches = batches(model, instances, batch_size)
        time_pass(model, tensor_batches[:4], 1.0)  # warm-up
        full, early = [], []
        for _ in range(args.repeats):
            full.append(time_pass(model, tensor_batches, 1.0))
            early.append(time_pass(model, tensor_batches, 0.0))
        full_ms = statistics.median(full) / len(instances) * 1000
        early_ms = statistics.median(early) / len(instances) * 1000
        ratios = [f / e for f, e in zip(full, early)]
        print(f"| {batch_size} | {full_ms:.2f} ms/instance | {early_ms:.2f} ms/instance | "
              f"{statistics.median(ratios):.2f}x |")


if __name__ == "__main__":
    main()
