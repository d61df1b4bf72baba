"""
What does one packed encoder layer cost, against the number of tokens it runs, with torch's linear
and with the oneDNN linear on reordered weights (`PrepackedLinear`)?

An early exit saves a layer's cost only in proportion to the tokens it no longer runs if a layer
call has no fixed cost; this measures that cost. The first `n` sentences of the data file (for
each `n` of `--rows`) are embedded and packed as the engine packs them, and the encoder's layers
run on them through `LayerwiseTransformer.run_packed_layer`, the engine's own call, once with
`PrepackedLinear` switched off (torch's linear) and once on, interleaved in every repeat (the
library's `interleaved_times`), medians of the per-layer times. A least-squares line through the
points, time = fixed + tokens x per-token, gives each way's fixed cost of a layer call.

Usage (from the repo root, after `make install`, on a quiet machine):

    .venv/bin/python bench/layer_cost.py [--model models/all-MiniLM-L6-v2]
        [--data data/sst2_sample/dev.tsv] [--rows 1,2,4,8,16,32,64,128,256] [--repeats 9]
        [--threads N] [--output docs/layer_cost.md]

The table is printed and written to `--output` (with the machine and the command).
"""

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import torch
from allennlp.data import Batch, Vocabulary

from early_exit.common.files import atomic_open, display_path
from early_exit.common.machine import machine_description, run_command
from early_exit.dataset_readers import EarlyExitTextClassificationReader
from early_exit.modules.layerwise_transformer import LayerwiseTransformer
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.prepacked_linear import ONEDNN_LINEAR, use_prepacked_linears
from early_exit.sweep.timing import interleaved_times, median_ratio, stopwatch

ROOT = Path(__file__).resolve().parent.parent
# A turn runs the layers over and over until it has run about this many token-layers, so that a
# turn of one short sentence is not a few hundred microseconds of timer noise.
TOKEN_LAYERS_PER_TURN = 4096


def packed_inputs(
    encoder: LayerwiseTransformer, data: str, rows: Sequence[int]
) -> List[Tuple[int, PackedRows]]:
    """The first `n` sentences of `data`, embedded and packed, for each `n` in `rows`."""
    reader = EarlyExitTextClassificationReader(encoder.transformer.name_or_path, max_length=128)
    instances = list(reader.read(data))
    if len(instances) < max(rows):
        sys.exit(f"error: {data}: {len(instances)} sentences, fewer than --rows asks ({max(rows)})")
    vocab = Vocabulary.from_instances(instances)  # the labels; token ids are the tokenizer's
    inputs = []
    for count in rows:
        batch = Batch(instances[:count])
        batch.index_instances(vocab)
        tokens = batch.as_tensor_dict()["tokens"]["tokens"]
        mask = tokens["mask"]  # (count, num_columns)
        with torch.inference_mode():
            hidden = encoder.embed_packed(tokens["token_ids"], mask)  # (num_tokens, hidden_size)
        inputs.append((count, PackedRows.from_tokens(torch.arange(count), hidden, mask.sum(1))))
    return inputs


def layer_runs(encoder: LayerwiseTransformer, packed: PackedRows) -> List[Callable[[slice], float]]:
    """Torch's linear, then the prepacked one: each runs every layer on `packed`'s tokens."""
    passes = max(1, round(TOKEN_LAYERS_PER_TURN / (packed.num_tokens * encoder.num_layers)))

    def run(prepack: bool) -> Callable[[slice], float]:
        def work() -> None:
            with torch.inference_mode():
                for _ in range(passes):
                    for index in range(encoder.num_layers):
                        encoder.run_packed_layer(index, packed)

        def timed(_: slice) -> float:
            use_prepacked_linears(encoder.layers, prepack)
            return stopwatch(work) / (passes * encoder.num_layers)  # seconds per layer call

        return timed

    return [run(False), run(True)]


def fit_line(tokens: Sequence[int], seconds: Sequence[float]) -> Tuple[float, float]:
    """Least squares `seconds = fixed + tokens * per_token`: `(fixed, per_token)`."""
    slope, intercept = statistics.linear_regression(tokens, seconds)
    return intercept, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--data", default=str(ROOT / "data" / "sst2_sample" / "dev.tsv"))
    parser.add_argument("--rows", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=str(ROOT / "docs" / "layer_cost.md"))
    args = parser.parse_args()
    rows = [int(count) for count in args.rows.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    if not ONEDNN_LINEAR:
        sys.exit("error: this torch build has no oneDNN linear; there is nothing to compare")

    encoder = LayerwiseTransformer(args.model, num_layers=6, keep_pooler=False).eval()
    measured = []
    for count, packed in packed_inputs(encoder, args.data, rows):
        plain, prepacked = interleaved_times(layer_runs(encoder, packed), args.repeats)
        ratio = median_ratio(plain, prepacked)
        measured.append(
            (
                count,
                packed.num_tokens,
                statistics.median(plain),
                statistics.median(prepacked),
                ratio,
            )
        )
        print(f"{count} rows ({packed.num_tokens} tokens) timed", file=sys.stderr)
    lines = report(args, measured)
    print("\n".join(lines))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output) as output:
        output.write("\n".join(lines))


def report(
    args: argparse.Namespace, measured: List[Tuple[int, int, float, float, float]]
) -> List[str]:
    tokens = [row[1] for row in measured]
    fits = [fit_line(tokens, [row[column] for row in measured]) for column in (2, 3)]
    lines = [
        "# The cost of a packed layer call",
        "",
        "Generated by `bench/layer_cost.py`: one packed layer of all-MiniLM-L6-v2 (the encoder's six",
        "layers in turn, `LayerwiseTransformer.run_packed_layer`) on the real tokens of the first",
        f"sentences of `{display_path(args.data, ROOT)}`, with torch's linear and with the oneDNN",
        "linear on reordered weights (`PrepackedLinear`), interleaved in every repeat; medians over",
        f"{args.repeats} repeats of the time per layer call, and of the per-repeat ratios.",
        "",
        f"Machine: {machine_description()}.",
        "",
        "| rows | tokens | torch linear, ms per layer | reordered weights, ms per layer | faster "
        "| torch linear, µs per token | reordered weights, µs per token |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, num_tokens, plain, prepacked, ratio in measured:
        lines.append(
            f"| {count} | {num_tokens:,} | {plain * 1e3:.2f} | {prepacked * 1e3:.2f} | "
            f"{ratio:.2f}x | {plain * 1e6 / num_tokens:.1f} | {prepacked * 1e6 / num_tokens:.1f} |"
        )
    lines.append("")
    for name, (fixed, per_token) in zip(("torch linear", "reordered weights"), fits):
        lines.append(
            f"- {name}: a layer call costs {fixed * 1e3:.2f} ms plus {per_token * 1e6:.1f} µs per "
            f"token (least squares over the rows above): the fixed cost is "
            f"{fixed / per_token:.0f} tokens' worth."
        )
    command = run_command(".venv/bin/python bench/layer_cost.py")
    lines += ["", f"Reproduce: `{command}`", ""]
    return lines


if __name__ == "__main__":
    main()
