from tests import run_allennlp


def test_allennlp_test_install_loads_the_plugin_without_errors():
    result = run_allennlp("test-install")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Plugin early_exit available" in output
    assert "Plugin early_exit could not be loaded" not in output
