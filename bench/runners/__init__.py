"""
Early exit under each layer runner against what a user would deploy instead, on the same trained
weights: see `bench/runners/cli.py` and bench/README.md.
"""
