"""
Every example of the README and the guides runs as written, so the docs cannot drift from the code:
their ```bash and ```python blocks, in order, from a folder laid out like the repository root (its
`test_fixtures/`, `training_config/`, `data/` and `.allennlp_plugins`) with this checkout's package.
Each block must exit with status 0 and leave every file its commands name as an output. The README's
walk-through, which trains the tiny model, runs once per test run (also under pytest-xdist); each
guide then runs on a copy of the `runs/` it wrote. A block that needs real data, GPUs or hours starts
with `# not run by the docs test: <why>`, which the reader sees too.

The examples' `allennlp` runs allennlp's own entry point in a process forked from one that has
imported it (`tests/docs/allennlp_server.py`): the same command, a sixth of the time. So this test
does not check how a fresh `allennlp` process finds the package (tests/commands do).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import pytest
from filelock import FileLock

from tests import PROJECT_ROOT
from tests.docs.allennlp_server import write_client
from tests.docs.documents import GENERATED, GUIDES, NOT_RUN, README, Block, fenced_blocks
from tests.sweep.trained_models import shared_dir

LINKED = ("test_fixtures", "training_config", "data")
OUTPUT_OPTIONS = (
    "-s",
    "--serialization-dir",
    "--output-file",
    "--output-dir",
    "--predictions-output-file",
)
# Languages a shell example could hide in; the docs use ```bash for every shell example.
OTHER_SHELLS = ("sh", "shell", "console", "zsh")


def _runnable(document: Path) -> List[Block]:
    return [block for block in fenced_blocks(document) if block.runs]


def _workspace(folder: Path) -> Path:
    """`folder` laid out like the repository root, as a user runs the examples."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (folder / name).symlink_to(PROJECT_ROOT / name)
    shutil.copyfile(PROJECT_ROOT / ".allennlp_plugins", folder / ".allennlp_plugins")
    return folder


def _environment(bin_dir: Optional[Path] = None) -> dict:
    """`bin_dir`, then this interpreter's `python` first on the path; this checkout's package."""
    env = dict(os.environ)
    first = [str(bin_dir)] if bin_dir else []
    env["PATH"] = os.pathsep.join([*first, str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _outputs(block: Block) -> List[str]:
    """The paths a bash block's commands name as outputs (`-s`, `--output-file`, ...)."""
    if block.language != "bash":
        return []
    words = shlex.split(block.text.replace("\\\n", " "), comments=True)
    return [value for option, value in zip(words, words[1:]) if option in OUTPUT_OPTIONS]


def _run(block: Block, folder: Path, bin_dir: Path) -> Optional[str]:
    """Runs `block` in `folder` with `bin_dir`'s `allennlp`; what went wrong, or None."""
    if block.language == "bash":
        argv = ["bash", "-eu", "-o", "pipefail", "-c", block.text]
    else:
        argv = [sys.executable, "-c", block.text]
    result = subprocess.run(
        argv,
        cwd=folder,
        env=_environment(bin_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        return (
            f"{block.where}: exit status {result.returncode}\n{block.text}\n"
            f"--- the end of its stderr ---\n{result.stderr[-4000:]}"
        )
    missing = [path for path in _outputs(block) if not (folder / path).exists()]
    if missing:
        return f"{block.where}: exit status 0, but it wrote no {', '.join(missing)}\n{block.text}"
    return None


def _run_all(blocks: List[Block], folder: Path, bin_dir: Path) -> Optional[str]:
    """Runs `blocks` in order until one fails (the later ones use what the earlier wrote)."""
    for block in blocks:
        failure = _run(block, folder, bin_dir)
        if failure is not None:
            return failure
    return None


@pytest.fixture(scope="session")
def allennlp_bin():
    """A folder whose `allennlp` runs its commands in a server that has imported allennlp."""
    folder = Path(tempfile.mkdtemp(prefix="early_exit_docs_"))  # short: a socket path's limit
    socket_path, log = folder / "allennlp.sock", folder / "server.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.docs.allennlp_server", str(socket_path)],
            cwd=PROJECT_ROOT,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while not socket_path.exists():
            assert server.poll() is None, f"the allennlp server stopped:\n{log.read_text()}"
            assert (
                time.monotonic() < deadline
            ), f"the allennlp server did not start:\n{log.read_text()}"
            time.sleep(0.1)
        write_client(folder, socket_path)
        yield folder
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def readme_walkthrough(tmp_path_factory, allennlp_bin) -> dict:
    """The README's examples, run once per test run: its folder and the first failure, if any."""
    root = shared_dir(tmp_path_factory)
    folder, record = root / "docs_readme", root / "docs_readme.json"
    with FileLock(str(root / "docs_readme.lock")):
        if not record.exists():
            failure = _run_all(_runnable(README), _workspace(folder), allennlp_bin)
            record.write_text(json.dumps({"folder": str(folder), "failure": failure}))
    return json.loads(record.read_text())


def test_the_readme_walkthrough_runs_as_written(readme_walkthrough):
    assert len(_runnable(README)) >= 5, "the walk-through's five steps are not run"
    assert readme_walkthrough["failure"] is None, readme_walkthrough["failure"]


@pytest.mark.parametrize(
    "guide",
    [guide for guide in GUIDES if _runnable(guide)],
    ids=lambda guide: guide.name,
)
def test_the_examples_of_a_guide_run_as_written(guide, readme_walkthrough, allennlp_bin, tmp_path):
    if readme_walkthrough["failure"] is not None:
        pytest.fail(f"the README's walk-through failed first:\n{readme_walkthrough['failure']}")
    folder = _workspace(tmp_path / "repository")
    shutil.copytree(Path(readme_walkthrough["folder"]) / "runs", folder / "runs", symlinks=True)
    failure = _run_all(_runnable(guide), folder, allennlp_bin)
    assert failure is None, failure


def test_every_document_under_docs_is_a_guide_or_generated():
    documents = set((PROJECT_ROOT / "docs").glob("*.md"))
    assert sorted(map(str, documents - set(GUIDES) - set(GENERATED))) == []
    assert sorted(map(str, (set(GUIDES) | set(GENERATED)) - documents)) == []


def test_the_examples_left_out_say_why_and_none_uses_the_tiny_model():
    for document in [README, *GUIDES]:
        for block in fenced_blocks(document):
            assert block.language not in OTHER_SHELLS, f"{block.where}: use ```bash"
            if block.language in ("bash", "python") and not block.runs:
                reason = block.text.splitlines()[0][len(NOT_RUN) :].strip()
                assert reason, f"{block.where}: say why the block is not run"
                for tiny in ("test_fixtures/", "runs/tiny"):
                    assert tiny not in block.text, f"{block.where} uses {tiny}: let it run"


def test_outputs_are_found_in_continued_lines():
    block = Block(
        README,
        1,
        "bash",
        "allennlp predict a.tar.gz in.jsonl \\\n    --output-file out/p.jsonl  # comment\n"
        "allennlp train c.jsonnet -s out/model",
    )
    assert _outputs(block) == ["out/p.jsonl", "out/model"]
