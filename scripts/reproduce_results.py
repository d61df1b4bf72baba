"""
Regenerates docs/results.md, docs/results/*.png and the README's results summary: early exit with
the CPU-sized MiniLM encoder on SST-2, AG News and SNLI. The code is the package `scripts/results/`
(see its `__init__.py` for what is trained, swept and reported, and on which splits).

Usage (from the repo root, after `make install`; about 2 hours on 2 CPU cores):

    .venv/bin/python scripts/reproduce_results.py --shared-data ../shared/data --work-dir build/results

`--datasets sst2,ag_news` limits the datasets, `--variants early_exit,baseline` the models trained,
`--report-only` re-reports already trained models.
"""

import sys
from pathlib import Path

# The repository root first: `scripts.results` and this checkout's `early_exit`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.results.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
