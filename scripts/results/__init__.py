"""
Regenerates docs/results.md (with docs/results/*.png and the README's results summary): early exit
with the CPU-sized MiniLM encoder on SST-2, AG News and SNLI.

For each dataset it converts the distributed files (python -m early_exit.data.prepare), trains the
early-exit model (a head on every layer of all-MiniLM-L6-v2,
training_config/<dataset>_minilm.jsonnet, temperatures calibrated on the dev split by the training
callback) and the standard baseline (the same encoder with one head on the last layer), then,
with the library's sweep (`early_exit.sweep`):

- on the dev split: sweeps every exit policy and picks, for each, the cheapest setting whose
  accuracy is within 0.5 and 1.0 points of the full model (never chosen on the evaluation split);
  and the plain and the guaranteed (Learn then Test) confidence thresholds at 0.5, 1 and 2 points;
- on the evaluation split: accuracy and relative compute at those settings, each head alone, the
  oracle, and measured speedup against the full model at batch size 1 and 32 (real early-exit
  inference, side by side in one run, median over repeats);
- on 100 seeded halvings of the evaluation split: how often each threshold rule, chosen on one half,
  broke its promise on the other.

Modules: `settings` (datasets, variants, constants), `training` (data conversion and training),
`evaluation` (the sweeps), `policies` (choosing each policy's setting), `guarantees` (plain and
guaranteed thresholds, the repeated splits), the Markdown by `report` (the document, the README
summary), `report_sections` (the policy comparison) and `report_guarantees` (the thresholds and
the repeated splits) with `formatting`, and `cli`. The recipe search (`scripts/recipe_search.py`,
docs/recipe_search.md) is `recipes` with its Markdown in `report_recipes`, on the same conversion,
training and threshold choice.

Splits (CPU-sized, stated in the report):
- SST-2: train = GLUE train less the converter's seeded 872-row dev carve-out (66,477 rows, not
  used otherwise); GLUE dev (872 sentences) is split in two seeded halves: dev (calibration,
  thresholds) and evaluation. GLUE test has no labels, and a dev carved from GLUE train would share
  phrases with the training data.
- AG News: evaluation = a seeded 2,000-row part of the official test.csv, dev = a seeded 600 of the
  other 5,600 rows, train = the remaining 5,000 (`--cpu-subset`). (The 581 train.csv rows available
  here made a poor dev split: the model scored lower on them than on test.csv rows, so thresholds
  chosen on them did not carry over; the runs are in docs/recipe_search.md's git history.)
- SNLI: train = SNLI dev minus a seeded 1,000-row dev carve-out, evaluation = SNLI test.

Usage (from the repo root, after `make install`; about 2 hours on 2 CPU cores):

    .venv/bin/python scripts/reproduce_results.py --shared-data ../shared/data --work-dir build/results

(or `.venv/bin/python -m scripts.results ...`). `--datasets sst2,ag_news` limits the datasets,
`--variants early_exit,baseline` the models trained, `--report-only` re-reports already trained
models.
"""
