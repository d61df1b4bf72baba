"""
What a benchmark or results report says about the machine it ran on, and the environment its
subprocesses run in: one place for `bench/` and `scripts/`, so that their reports agree.
"""

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent.parent


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(root: Path = ROOT) -> str:
    """The checkout's short commit, marked when tracked files have uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not commit:
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


def machine_info() -> Dict[str, Any]:
    """The processor, cores, thread settings, library versions, commit and load, as a dict."""
    import allennlp
    import torch
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "allennlp": allennlp.__version__,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def machine_description() -> str:
    """One line for a report: processor, cores, torch and its threads, transformers."""
    info = machine_info()
    return (
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads), transformers {info['transformers']}"
    )


def run_command(script: str, argv: Optional[Sequence[str]] = None) -> str:
    """
    The command a report prints beside its figures, so that it runs as printed from the clone's
    root: `script` (e.g. `.venv/bin/python bench/layer_cost.py`) followed by this run's arguments,
    `argv` when the script's `main` was given them, else the command line's (`sys.argv[1:]`), each
    quoted for the shell.
    """
    arguments = sys.argv[1:] if argv is None else argv
    return " ".join([script, *(shlex.quote(argument) for argument in arguments)])


def subprocess_env(threads: Optional[int] = None) -> Dict[str, str]:
    """
    This environment, offline (no model hub), with `threads` torch threads per subprocess when
    given (two 1-thread jobs share 2 cores better than two 2-thread ones).
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env
