"""What the benchmark measures, and the targets it sets against the measurements."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The archives, dev and evaluation files `scripts/reproduce_results.py` writes: used without
# `--archive` where they exist.
DEFAULT_ARCHIVES = {
    "sst2": (
        "build/results/models/sst2_early_exit/model.tar.gz",
        "build/results/data/sst2_halves/dev.tsv",
        "build/results/data/sst2_halves/eval.tsv",
    ),
    "ag_news": (
        "build/results/models/ag_news_early_exit/model.tar.gz",
        "build/results/data/text_cat/ag_news/dev.tsv",
        "build/results/data/text_cat/ag_news/test.tsv",
    ),
}
# Thresholds timed besides 1.0: the cheapest within these accuracy drops of the full model on dev.
ACCURACY_DROPS = (0.005, 0.01)
TARGETS = {"overhead": 1.10, "efficiency_1": 0.85, "efficiency_32": 0.90, "e2e_survival": 0.75}
# How the model runs batches (always given whole, in file order). PACKED: the default, the layers
# on the real tokens only (`packed`). PADDED: packing off, the batch padded as a data loader pads
# it. CARRIED: packed, the batches one stream (`model.forward_stream`, what `allennlp predict` does
# at batch sizes above 1): the rows that go on wait for the next batches' rows at their next layer.
# The transformers reference runs the padded batches.
PACKED, PADDED, CARRIED = "packed", "padded", "packed, carried"
SETTINGS = {PACKED: True, PADDED: False, CARRIED: True}  # batching -> model.packed
LARGE_BATCH = 32
PLANS = [
    (1, PACKED),
    (LARGE_BATCH, PACKED),
    (LARGE_BATCH, CARRIED),
    (LARGE_BATCH, PADDED),
]
# At batch size 1 the configurations take turns every this many instances within a repeat, so
# that a slow spell of a noisy machine falls on all of them alike (a repeat of 384 instances of the
# full model takes several seconds).
PART_SIZE = 16
