"""`python -m scripts.results ...`: the same as `scripts/reproduce_results.py ...`."""

from scripts.results.cli import main

main()
