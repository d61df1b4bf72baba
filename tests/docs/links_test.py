"""
Every link between the project's Markdown documents resolves: the file (or folder) exists, and an
anchor names a heading of the target as GitHub spells it. The README links every guide.
"""

import re
import subprocess
from pathlib import Path
from typing import List, Set

import pytest

from tests import PROJECT_ROOT
from tests.docs.documents import GENERATED, GUIDES, README, without_code

_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _documents() -> List[Path]:
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "*.md"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        tracked = []
    return sorted({README, *GUIDES, *GENERATED} | {PROJECT_ROOT / path for path in tracked})


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> Set[str]:
    seen: Set[str] = set()
    for line in without_code(document.read_text(), inline=False).splitlines():
        match = re.match(r"#{1,6} +(.*)", line)
        if match:
            base = anchor = slug(match[1])
            number = 0
            while anchor in seen:  # GitHub numbers a repeated heading's anchor
                number += 1
                anchor = f"{base}-{number}"
            seen.add(anchor)
    return seen


def test_slugs_are_githubs():
    assert slug("1. Train") == "1-train"
    assert slug("Faster layers: the layer runner") == "faster-layers-the-layer-runner"
    assert slug("Predict (`allennlp predict`)") == "predict-allennlp-predict"


@pytest.mark.parametrize(
    "document", _documents(), ids=lambda path: str(path.relative_to(PROJECT_ROOT))
)
def test_every_link_of_a_document_resolves(document):
    broken = []
    for match in _LINK.finditer(without_code(document.read_text())):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto: ... are not checked (no network)
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert broken == []


def test_the_readme_links_every_guide():
    links = {
        (README.parent / match["target"].partition("#")[0]).resolve()
        for match in _LINK.finditer(README.read_text())
    }
    assert [str(guide) for guide in GUIDES if guide not in links] == []
