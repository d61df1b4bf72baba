"""
Holding a compute budget on a drifting stream (docs/results.md, its `budget` section): the
`compute_budget` exit policy against the fixed threshold the dev sweep picks for the budget, and
what hindsight could reach, for the SST-2 and AG News models. Every head's outputs are collected
once per dataset (`budget_streams.collect`); the policies then run on arrays through
`stream_exit_heads`, the policy's own code (a test checks it against the model's decisions).

Usage (from the repo root, after `scripts/reproduce_results.py` trained the models; about ten
minutes on 2 cores, most of it the controller candidates):

    .venv/bin/python -m scripts.results.budget --work-dir build/results

The section also measures the controller candidates (windows and gains) the policy's defaults
were chosen from.
"""

from pathlib import Path
from typing import List

import torch

from early_exit.modules.exit_policies.compute_budget import DEFAULT_WINDOW


def main(argv: List[str] = None) -> None:
    from scripts.results.cli import data_parser

    parser = data_parser(__doc__)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where every head's outputs are kept (default: <work-dir>/budget)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    from scripts.results.budget_report import write_section

    write_section(args, DEFAULT_WINDOW)


if __name__ == "__main__":
    main()
