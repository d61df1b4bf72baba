"""
What must happen before allennlp imports anything, so it cannot live inside `early_exit` (whose
`__init__` imports allennlp): a quiet console and this package's subcommands found from any folder.

It runs in two ways:

- `early_exit_startup.pth`, which the package's wheel puts into site-packages (setup.py; every
  `pip install` of the package, editable as `make install` runs it, and `pip uninstall` removes
  it), imports it when Python starts: then plain `allennlp ...` is quiet and finds `calibrate`
  and `sweep-thresholds` in any folder.
- the `early-exit` command (a console script of this package) calls `main()`: allennlp's command
  line with both in place, also where Python does not run site-packages' .pth files
  (`python -S`, a `pip install --target` folder on PYTHONPATH).

allennlp 2.10.1 finds plugins only through a `.allennlp_plugins` file in the current folder,
`~/.allennlp/plugins`, or three fixed package names; none of them can be shipped by an installed
package without writing into the user's folders, hence these two ways.

Imports only the standard library (it runs in every Python process of the environment) and changes
nothing until the named modules are imported.
"""

import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Callable, Dict, Iterator, Optional, Sequence

PLUGIN = "early_exit"


def quiet_dependency_warnings() -> None:
    """Filters, by module and message, the warnings that dependencies print on every command."""
    # torchvision 0.16.2 is installed only as an import shim (allennlp.data imports it; this
    # package never loads images, and PyPI's newer wheels link CUDA torch): its compiled image
    # extension does not match torch 2.x, which it says at import.
    warnings.filterwarnings(
        "ignore",
        message="Failed to load image Python extension",
        category=UserWarning,
        module=r"torchvision\.",
    )
    # fairscale 0.4.6 (imported by allennlp.nn.parallel, used only for FSDP training) calls
    # `torch.cuda.amp.custom_fwd/bwd` at import, deprecated since torch 2.4; nothing to act on.
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated",
        category=FutureWarning,
        module=r"fairscale\.",
    )
    # allennlp's trainer calls `torch.cuda.amp.autocast` (deprecated since torch 2.4) in every
    # `allennlp train`, and the `huggingface_adamw` optimizer is transformers' own AdamW, which
    # warns that it will go: allennlp 2.10.1 is final, nothing a user can change.
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
        category=FutureWarning,
        module=r"allennlp\.",
    )
    warnings.filterwarnings(
        "ignore",
        message="This implementation of AdamW is deprecated",
        category=FutureWarning,
        module=r"transformers\.optimization",
    )


def _without_nltk_downloads(module: ModuleType, run: Callable[[], None]) -> None:
    """
    allennlp-models' NarrativeQA tools call `nltk.download("punkt")` and `("wordnet")` at import,
    which allennlp's plugin loading triggers in every command: a network attempt (eight lines of
    `[nltk_data] Error loading ...` offline) for a metric this package never uses. The calls are
    skipped while that one module is imported; nltk itself is left as it is.
    """
    import nltk

    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        run()
    finally:
        nltk.download = download


def _with_this_plugin(module: ModuleType, run: Callable[[], None]) -> None:
    """
    allennlp's plugin discovery, with this package added to what it finds in `.allennlp_plugins`
    and `~/.allennlp/plugins`: its subcommands are then found from any folder.
    """
    run()
    discover = module.discover_plugins

    def discover_plugins() -> Iterator[str]:
        found = list(discover())
        yield from found
        if PLUGIN not in found:
            yield PLUGIN

    module.discover_plugins = discover_plugins


# module name -> what to do around its import
_AROUND_IMPORT: Dict[str, Callable[[ModuleType, Callable[[], None]], None]] = {
    "allennlp_models.rc.tools.narrativeqa": _without_nltk_downloads,
    "allennlp.common.plugins": _with_this_plugin,
}


class _AroundImport(importlib.abc.MetaPathFinder):
    """Runs `_AROUND_IMPORT[name]` around the import of each of those modules (once each)."""

    def find_spec(
        self, name: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        around = _AROUND_IMPORT.get(name)
        if around is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_around(module: ModuleType) -> None:
            around(module, lambda: exec_module(module))

        spec.loader.exec_module = exec_around  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Both of the above, before allennlp is imported (idempotent)."""
    quiet_dependency_warnings()
    if not any(isinstance(finder, _AroundImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AroundImport())


def main() -> None:
    """The `early-exit` command: allennlp's command line with this package loaded."""
    install()
    import allennlp.__main__  # noqa: F401  (allennlp's logging set-up, as under `allennlp`)
    from allennlp.commands import main as allennlp_main
    from allennlp.common.util import install_sigterm_handler

    install_sigterm_handler()
    allennlp_main(prog="early-exit")
