"""Benchmarks of the early-exit package (see bench/README.md); not installed with it."""
