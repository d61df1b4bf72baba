"""`python -m bench.performance`: see the package's docstring."""

import os

# Before anything imports transformers: nothing is fetched from a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.performance.cli import main  # noqa: E402

main()
