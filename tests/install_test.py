import subprocess
import sys

from tests import PROJECT_ROOT


def test_allennlp_test_install_loads_the_plugin_without_errors():
    result = subprocess.run(
        [sys.executable, "-m", "allennlp", "test-install", "--include-package", "early_exit"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Plugin early_exit available" in output
    assert "Plugin early_exit could not be loaded" not in output
