import importlib.metadata

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
