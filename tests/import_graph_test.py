"""
The package reads as layers, bottom to top, and no module imports from a layer above its own (any
import, also one inside a function), nor is there an import cycle among its modules. The scripts
(`scripts/`) and benchmarks (`bench/`) sit on top: the package never imports them, and there is no
import cycle among their modules either (counting imports inside functions too, which is how a
cycle hides there).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

from tests import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "early_exit"
# The folders of Python modules this test reads, named by their top-level import name.
ROOTS = ("early_exit", "scripts", "bench")

# Bottom to top. A module belongs to the layer of the longest prefix of its name listed here.
LAYERS: List[List[str]] = [
    ["early_exit.common"],  # helpers that import nothing else of the package
    [  # data and the pieces of the model
        "early_exit.dataset_readers",
        "early_exit.data",
        "early_exit.modules",
        "early_exit.metrics",  # what the model and the calibration report (allennlp Metrics)
    ],
    ["early_exit.models"],  # the model, its inference engine, loading archives, every-head runs
    ["early_exit.calibration", "early_exit.training"],  # temperature scaling, the callback
    ["early_exit.predictors", "early_exit.sweep"],
    ["early_exit.commands"],
    ["early_exit.allennlp_patches", "early_exit"],  # the allennlp integration, the package
    ["scripts", "bench"],  # results, demos and benchmarks: users of the package
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _imports(path: Path, module_level_only: bool) -> Set[str]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in ROOTS:
                names.add(node.module)
                # `from early_exit import allennlp_patches`: a module (or package), not a name
                for alias in node.names:
                    path = PROJECT_ROOT / (node.module + "." + alias.name).replace(".", "/")
                    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
                        names.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] in ROOTS)
    return names


def _modules(roots=ROOTS) -> Dict[str, Path]:
    paths = [path for root in roots for path in sorted((PROJECT_ROOT / root).rglob("*.py"))]
    return {_module_name(path): path for path in paths}


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module, path in _modules().items():
        for imported in _imports(path, module_level_only=False):
            if _layer(imported) > _layer(module):
                upward.append(f"{module} imports {imported}")
    assert upward == []


def _cycles(roots, module_level_only: bool) -> List[str]:
    modules = _modules(roots)
    graph = {
        module: {
            name for name in _imports(path, module_level_only=module_level_only) if name in modules
        }
        for module, path in modules.items()
    }
    # A package imports its __init__ chain anyway: only edges between distinct modules count, and
    # an edge from a package's __init__ to its own submodules is its normal registration.
    state: Dict[str, str] = {}
    cycles = []

    def visit(module: str, stack: List[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if imported == module or imported.startswith(module + "."):
                continue  # a package importing its own submodules
            if state.get(imported) == "open":
                cycles.append(" -> ".join(stack[stack.index(imported) :] + [imported]))
            elif imported not in state:
                visit(imported, stack + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_there_is_no_import_cycle():
    assert _cycles(("early_exit",), module_level_only=True) == []


def test_there_is_no_import_cycle_in_the_scripts_and_benchmarks():
    assert _cycles(("scripts", "bench"), module_level_only=False) == []


def test_the_cycle_check_sees_a_cycle_through_imports_inside_functions(tmp_path, monkeypatch):
    """The recipe search's rule once lived in its CLI module, which its report imported back."""
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "search.py").write_text("def main():\n    from scripts.report import page\n")
    (root / "report.py").write_text("from scripts.search import main\n")
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_ROOT", tmp_path)
    assert _cycles(("scripts",), module_level_only=False) == [
        "scripts.report -> scripts.search -> scripts.report"
    ]
    assert _cycles(("scripts",), module_level_only=True) == []


def test_every_module_is_in_a_layer_and_the_test_sees_the_package():
    modules = _modules()
    assert "early_exit.models.inference_engine" in modules
    assert {"scripts.results.recipes", "bench.performance.cli", "scripts.recipe_search"} <= set(
        modules
    )
    for module in modules:
        _layer(module)


def _layout_rows() -> List[List[str]]:
    """The "Project layout" table of docs/development.md, as cells."""
    text = (PROJECT_ROOT / "docs" / "development.md").read_text()
    table = text.split("## Project layout", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in table.splitlines()]
    return [[cell.strip() for cell in row] for row in rows if len(row) == 3][2:]


def test_the_layout_table_gives_each_path_its_layer():
    numbered = {}
    for layer, paths, _ in _layout_rows():
        for path in re.findall(r"`(early_exit/[^`]*)`", paths):
            numbered[path.rstrip("/").removesuffix(".py").replace("/", ".")] = layer
    assert numbered, "no layered row in the Project layout table of docs/development.md"
    assert {module: str(_layer(module)) for module in numbered} == numbered
    # Every subpackage and top-level module of the package is in the table (as itself or within
    # a listed folder).
    parts = {
        _module_name(path)
        for path in list(PACKAGE.glob("*/__init__.py")) + list(PACKAGE.glob("*.py"))
        if path.name != "__init__.py" or path.parent != PACKAGE
    }
    missing = [
        part
        for part in sorted(parts)
        if not any(
            part == m or m.startswith(part + ".") or part.startswith(m + ".") for m in numbered
        )
    ]
    assert missing == []


def test_the_layout_table_names_every_tracked_folder():
    try:
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    folders = {path.split("/")[0] for path in tracked if "/" in path}
    named = {
        path.split("/")[0]
        for _, paths, _ in _layout_rows()
        for path in re.findall(r"`([^`]*)`", paths)
    }
    assert sorted(folders - named) == []
