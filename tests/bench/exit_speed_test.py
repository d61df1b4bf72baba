import importlib.util

from tests import PROJECT_ROOT

TINY_BERT = PROJECT_ROOT / "test_fixtures" / "tiny_bert"
DATA = PROJECT_ROOT / "test_fixtures" / "data" / "text_classification.tsv"


def _exit_speed():
    # A script run as a file (`bench/exit_speed.py`), imported here by its path.
    spec = importlib.util.spec_from_file_location(
        "exit_speed", PROJECT_ROOT / "bench" / "exit_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_names_the_encoder_its_depth_and_the_command(tmp_path):
    output = tmp_path / "exit_speed.md"
    argv = ["--model", str(TINY_BERT), "--data", str(DATA), "--instances", "8", "--repeats", "1"]
    _exit_speed().main(argv + ["--output", str(output)])
    text = output.read_text()
    words = " ".join(text.split())
    assert "4-layer encoder (`test_fixtures/tiny_bert`" in words
    assert "exits at layer 0 of 4" in words
    rows = [
        line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 32 |")
    ]
    assert len(rows) == 2 and all(row.endswith("x |") for row in rows)
    assert f"`.venv/bin/python bench/exit_speed.py {' '.join(argv)} --output {output}`" in text
    assert [path.name for path in tmp_path.iterdir()] == ["exit_speed.md"]  # no temporary left
