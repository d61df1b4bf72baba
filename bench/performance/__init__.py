"""
Does early exit deliver the speedup its saved layers promise, at batch size 1 and 32, in the model
and end to end? Regenerates the numbers of docs/performance.md and its plots.

For each early-exit archive (with a dev file and an evaluation file) it measures:

1. overhead: the model at threshold 1.0 (no early exit, every head computed) against
   `transformers.AutoModelForSequenceClassification` loaded from the same encoder directory, on the
   same token ids, mask and type ids (target: at most 1.10x at batch size 1 and 32);
2. model-time speedup against the full model at the thresholds whose dev accuracy is within 0.5 and
   1.0 points of it (chosen on the dev file with the sweep functions, measured on the evaluation
   file), against the ideal `1 / relative_compute` (targets: 85% of it at batch size 1, 90% at 32);
3. end to end: `allennlp predict` (a subprocess per run, `--silent`) on a JSONL file of evaluation
   inputs at batch size 1 and 32, time per instance at those thresholds against threshold 1.0:
   the command's prediction loop (reading lines, instances, batching, the model, writing output;
   timed inside the command by `bench/timed_predict.py`) and its whole wall time with start-up
   (target: 75% of the model-time speedup survives in the loop);
4. the oracle (every instance exits at the first head that is right) at the same accuracy on the
   evaluation file, and how far the threshold policy is from it;
5. the peak memory of inference at batch size 32: the resident set size of a fresh process per
   configuration (Linux `VmHWM`, reset by `/proc/self/clear_refs` after loading, so that only
   inference counts; `ru_maxrss` of the whole process too).

Every timed configuration runs side by side in one process, interleaved within each repeat in an
order rotated from repeat to repeat (`early_exit.sweep.timing.interleaved_times`; at batch size 1
they take turns every 16 instances, so that a slow spell of a busy machine falls on all of them
alike); times and ratios are medians over the repeats. Batches of 32 lines in file order are timed
three ways: as the model runs them by default (`packed`: the layers run on the real tokens only,
all rows in one matrix); with packing off, padded as a data loader pads them; and packed as one
stream of batches (`carried`: the rows that go on past a head wait for the next batches' rows at
their next layer, as `allennlp predict` runs batches). The transformers reference gets the same
padded batches.

Usage (from the repo root, after `make install`, on a quiet machine; about 8 minutes on 2 cores
with the defaults; without `--archive` it uses those of these two that exist):

    .venv/bin/python -m bench.performance --threads 2 \\
        --archive sst2=build/results/models/sst2_early_exit/model.tar.gz:\\
build/results/data/sst2_halves/dev.tsv:build/results/data/sst2_halves/eval.tsv \\
        --archive ag_news=build/results/models/ag_news_early_exit/model.tar.gz:\\
build/results/data/text_cat/ag_news/dev.tsv:build/results/data/text_cat/ag_news/test.tsv

`--archive NAME=ARCHIVE` with `--dev-data NAME=FILE` and `--eval-data NAME=FILE` is the same.
`--time-instances`, `--repeats`, `--e2e-instances`, `--e2e-repeats` and `--memory-instances` bound
the run time; `--skip-e2e` and `--skip-memory` leave parts out. Writes docs/performance.md (the part
between its "generated" markers; the rest of the file is kept), docs/performance/*.png and
docs/performance/results.json (`--output` and `--plots` write elsewhere), and prints the tables.
See bench/README.md.

The modules, in the order a run uses them: `cli` (options, one dataset after another), `data`
(archives and data files, the transformers reference), `accuracy` (thresholds on dev, accuracy,
compute and the oracle on the evaluation file), `model_time`, `end_to_end`, `memory`, then
`report` and `sections` (the Markdown) and `plots`; `settings` holds what is measured and the
targets.
"""
