"""
Everything but one build step is declared in pyproject.toml; this file adds that step: the start-up
hook `early_exit_startup.pth` is put into the wheel's top level (and so into site-packages, listed
in the installed RECORD) by every way of installing the package: a wheel or sdist (`pip install .`)
and an editable install (`pip install -e .`, which `make install` runs). `pip uninstall` removes
it with the rest. What the hook does, and why it must run when Python starts: early_exit_startup.py.
"""

from pathlib import Path
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "early_exit_startup.pth"
# Skipped without a word where the module cannot be found (an editable install whose folder has
# gone): site would print a traceback at every Python start otherwise.
PTH_LINE = (
    'import importlib.util as u; u.find_spec("early_exit_startup") '
    'and __import__("early_exit_startup").install()\n'
)


class BuildPyWithStartupHook(build_py):
    """`build_py` that also writes `early_exit_startup.pth` next to the top-level modules."""

    def run(self) -> None:
        super().run()
        path = Path(self._top_level_folder(), PTH_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PTH_LINE)

    def _top_level_folder(self) -> str:
        # A regular wheel is made from `build_lib`. An editable wheel maps the sources in place and
        # packs only what `install` writes into it (setuptools' editable_wheel points `install_lib`
        # at that folder before running build_py): a .pth in `build_lib` would be left out.
        if self.editable_mode:
            return self.get_finalized_command("install").install_lib
        return self.build_lib

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:  # not under build_lib: nothing for editable_wheel to map
            return outputs
        return [*outputs, str(Path(self.build_lib, PTH_NAME))]


setup(cmdclass={"build_py": BuildPyWithStartupHook})
