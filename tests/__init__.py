import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_ROOT = PROJECT_ROOT / "test_fixtures"
TINY_BERT = str(FIXTURES_ROOT / "tiny_bert")


def run_allennlp(*args, timeout: int = 300) -> "subprocess.CompletedProcess":
    """Runs `python -m allennlp ARGS --include-package early_exit` from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "allennlp", *map(str, args), "--include-package", "early_exit"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
