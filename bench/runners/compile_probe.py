"""
`torch.compile` (dynamic shapes) of the torch runner's packed layer against the plain torch runner
(profile finding 16 of docs/performance.md): every head's probabilities compared, then the model's
time per sentence at batch size 1 and 32 (streamed, as `allennlp predict` runs), at the given
threshold and at full depth, interleaved, medians and per-round ratios. The prepacked oneDNN
linear does not compile (inductor rejects its reordered weight), so the compiled runner runs
`nn.Linear`, plain and with inductor's freezing (its own weight prepacking).

    .venv/bin/python -m bench.runners.compile_probe ARCHIVE EVAL [--instances 100] [--repeats 5]
"""

import copy
import time

import torch

from early_exit.dataset_readers import read_indexed
from early_exit.models.archive_loading import load_early_exit_archive
from early_exit.modules.layer_runners import TorchLayerRunner
from early_exit.sweep.timing import prepare_batches

from bench.runners.side_by_side import depth_times, parse_probe_arguments, probe_arguments


class CompiledTorchRunner(TorchLayerRunner):
    """The torch runner with each layer's packed form under `torch.compile(dynamic=True)`."""

    def __init__(self, freezing: bool) -> None:
        super().__init__(prepack_weights=False)
        self.freezing = freezing

    def bind(self, adapter, layers, packable) -> None:
        super().bind(adapter, layers, packable)
        options = {"freezing": self.freezing}
        self._compiled = [
            torch.compile(
                lambda packed, layer=layer: adapter.run_packed(layer, packed),
                dynamic=True,
                options=options,
            )
            for layer in layers
        ]

    def run_packed(self, index, packed):
        return self._compiled[index](packed)

    def describe(self) -> str:
        return "torch.compile" + (", freezing" if self.freezing else "")


def main(argv=None) -> None:
    parser = probe_arguments(__doc__, instances=100, repeats=5)
    parser.add_argument("archive")
    parser.add_argument("eval_data")
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parse_probe_arguments(parser, argv)
    torch._dynamo.config.cache_size_limit = 64  # a graph per layer and row layout
    archive = load_early_exit_archive(args.archive)
    base = archive.model.eval()
    base.confidence_threshold = args.threshold
    reader = archive.validation_dataset_reader
    instances = read_indexed(reader, args.eval_data)[: args.instances]
    models = {"torch runner": base}
    for freezing in (False, True):
        model = copy.deepcopy(base)
        model.layer_runner = CompiledTorchRunner(freezing)
        models[model.layer_runner.describe()] = model
    _compare(models, instances)
    for batch_size in (1, 32):
        _time(models, instances, batch_size, args.repeats)


def _compare(models, instances) -> None:
    """Every head's probabilities against the torch runner's; the first pass compiles."""
    base = models["torch runner"]
    every_head = base.inference_settings().replace(run_all_heads=True)
    with torch.inference_mode():
        for batch_size in (1, 32):
            batches = prepare_batches(base, instances, batch_size)
            expected = [base(**batch, settings=every_head)["head_probs"] for batch in batches]
            for name, model in list(models.items())[1:]:
                start = time.perf_counter()
                got = [model(**batch, settings=every_head)["head_probs"] for batch in batches]
                seconds = time.perf_counter() - start
                diff = max(float((g - e).abs().max()) for g, e in zip(got, expected))
                print(
                    f"batch size {batch_size}, {name}: head probabilities within {diff:.1e} "
                    f"(first pass, compiling included: {seconds:.1f} s)",
                    flush=True,
                )


def _time(models, instances, batch_size: int, repeats: int) -> None:
    print("| batch size | runner | depth | ms / sentence | against the torch runner |")
    print("| ---: | --- | --- | ---: | ---: |")
    for name, depth, ms, ratio in depth_times(
        models, instances, batch_size, repeats, "torch runner"
    ):
        print(f"| {batch_size} | {name} | {depth} | {ms:.2f} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
