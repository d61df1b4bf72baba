"""
Regenerates docs/recipe_search.md: each dataset's adopted MiniLM recipe
(`training_config/<dataset>_minilm.jsonnet`) against one change at a time, trained on the splits of
docs/results.md, thresholds chosen on dev, reported on the evaluation split, and the rule that picks
a recipe from the dev columns. The code is `scripts/results/recipes.py` (the changes are
`RECIPE_CHANGES` in `scripts/results/settings.py`).

Usage (from the repo root, after `make install`; about 25 min per SST-2 or AG News model on one
core, two at a time):

    .venv/bin/python scripts/recipe_search.py --shared-data ../shared/data --work-dir build/results

`--datasets sst2,ag_news` limits the datasets, `--changes encoder_lr_5e-5,two_epochs` the changes,
`--train-only` stops after training, `--report-only` reports what is trained.
"""

import sys
from pathlib import Path

# The repository root first: `scripts.results` and this checkout's `early_exit`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.results.recipes import main  # noqa: E402

if __name__ == "__main__":
    main()
