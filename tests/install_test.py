import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Optional

from tests import PROJECT_ROOT, run_allennlp


def test_allennlp_test_install_loads_the_plugin_without_errors():
    result = run_allennlp("test-install")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Plugin early_exit available" in output
    assert "Plugin early_exit could not be loaded" not in output


def test_the_environment_has_every_version_of_the_lock():
    """`make install` installs requirements.lock's versions (if not: `make install` again)."""
    lock = (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
    locked = dict(line.split("==") for line in lock if line and not line.startswith("#"))
    assert {"torch", "allennlp", "transformers", "numpy"} <= locked.keys()
    # The version an import would get: the first distribution of that name on `sys.path`
    # (setuptools appends its `_vendor` folder, with older packaging and more-itertools, once
    # it is imported; those are not what the environment installed).
    different = {
        name: (version, _installed(name))
        for name, version in locked.items()
        if _installed(name) != version
    }
    assert not different, f"locked vs installed: {different}"


def _installed(name: str):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# What a build of the package needs (the rest of the repository is not in the sdist either).
PACKAGE_SOURCES = ["setup.py", "pyproject.toml", "README.md", "early_exit_startup.py", "early_exit"]
HOOK = "early_exit_startup.pth"
# What the new environment's commands run with: nothing from this checkout on `sys.path`.
CLEAN = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def _package_source(folder: Path) -> Path:
    """A copy of what a build reads: a build's `build/` and egg-info stay out of the clone."""
    folder.mkdir()
    for name in PACKAGE_SOURCES:
        copy = shutil.copytree if (PROJECT_ROOT / name).is_dir() else shutil.copy
        ignore = (
            {"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}
        )
        copy(PROJECT_ROOT / name, folder / name, **ignore)
    return folder


def _fresh_environment(folder: Path) -> Path:
    """
    A new virtual environment that sees this one's packages as a plain `sys.path` entry: the `.pth`
    files here (`make install`'s hook and editable finder) are not run there, and `early_exit`
    is only what is installed into it.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site_packages = _python(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site_packages) / "this_environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    return python


def _python(python: Path, code: str, cwd: Optional[Path] = None) -> str:
    result = subprocess.run(
        [str(python), "-c", code], cwd=cwd, env=CLEAN, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _pip(python: Path, *arguments: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *arguments],
        env=CLEAN,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_any_pip_install_brings_the_hook_and_finds_the_subcommands_from_any_folder(tmp_path):
    """
    The wheel carries the start-up hook: installed by pip into an environment without `make
    install`'s, plain `allennlp calibrate` and `sweep-thresholds` are found in a folder without a
    plugins file; `pip uninstall` takes the hook away. The same for an editable install.
    """
    source = _package_source(tmp_path / "source")
    _pip(
        Path(sys.executable),
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
        str(source),
    )
    (wheel,) = tmp_path.glob("early_exit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "early_exit_startup" in archive.read(HOOK).decode()  # top level: site-packages

    python = _fresh_environment(tmp_path / "env")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    not_yet = "import importlib.util as u; print(u.find_spec('early_exit_startup'))"
    assert _python(python, not_yet, elsewhere) == "None"
    _pip(python, "install", "--no-deps", str(wheel))
    site_packages = Path(
        _python(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    )
    assert (site_packages / HOOK).exists() and (python.parent / "early-exit").exists()
    # The hook ran when Python started, from what the wheel installed.
    started = (
        "import sys, early_exit_startup as s; "
        "print(s.__file__, s._AroundImport in map(type, sys.meta_path))"
    )
    assert _python(python, started, elsewhere) == f"{site_packages / 'early_exit_startup.py'} True"
    assert not (elsewhere / ".allennlp_plugins").exists()
    commands = ["calibrate", "sweep-thresholds"]
    running = [  # side by side: each spends its time importing allennlp
        subprocess.Popen(
            [str(python), "-m", "allennlp", command, "--help"],
            cwd=elsewhere,
            env=CLEAN,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    for command, process in zip(commands, running):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
        assert f"usage: allennlp {command} " in output, output

    _pip(python, "uninstall", "-y", "early_exit")
    assert not (site_packages / HOOK).exists()

    # `pip install -e` (what `make install` runs) too: the hook, listed for `pip uninstall`.
    _pip(python, "install", "--no-deps", "--no-build-isolation", "-e", str(source))
    assert _python(python, started, elsewhere) == f"{source / 'early_exit_startup.py'} True"
    _pip(python, "uninstall", "-y", "early_exit")
    assert not (site_packages / HOOK).exists()
