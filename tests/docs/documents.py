"""
The project's Markdown documents and their fenced examples, for the tests that keep the docs true to
the code: the hand-written ones (README and guides, whose examples run) and the generated reports.
"""

import re
from pathlib import Path
from typing import List, NamedTuple

from tests import PROJECT_ROOT

# The README first: the guides' examples use the tiny model its walk-through trains.
README = PROJECT_ROOT / "README.md"
GUIDES = [
    PROJECT_ROOT / "docs" / name
    for name in (
        "training.md",
        "prediction.md",
        "thresholds.md",
        "errors.md",
        "install.md",
        "development.md",
    )
]
# Written by a script (each names it); their code blocks are the commands that wrote them.
GENERATED = [
    PROJECT_ROOT / "docs" / name
    for name in (
        "demo.md",
        "results.md",
        "recipe_search.md",
        "performance.md",
        "layer_cost.md",
        "exit_speed.md",
    )
]
# A block whose first line is this comment (with a reason after the colon) is not run.
NOT_RUN = "# not run by the docs test:"
RUN_LANGUAGES = ("bash", "python")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)[ \t]*$")


class Block(NamedTuple):
    document: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str  # dedented, without the fences

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(PROJECT_ROOT)}, line {self.line}"

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and not self.text.startswith(NOT_RUN)


def fenced_blocks(document: Path) -> List[Block]:
    """Every fenced code block of `document`, in order (also those indented in a list item)."""
    blocks = []
    lines = document.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, body = opening["indent"], []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        assert index < len(lines), f"{document}: the block at line {len(lines)} is never closed"
        start = index - len(body)  # the opening fence's 1-based line
        blocks.append(Block(document, start, opening["language"], "\n".join(body)))
        index += 1
    return blocks


def without_code(text: str, inline: bool = True) -> str:
    """`text` without its fenced blocks and, if `inline`, its inline code (no links there)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "", line) if inline else line)
    return "\n".join(kept)
