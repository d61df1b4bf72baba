import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from allennlp.commands.train import train_model_from_file
from allennlp.models import archival

from early_exit.common.encoder_files import (
    ENCODER_DIR,
    ENCODER_NOTE,
    carried_transformer,
    carry_encoder,
    save_encoder_files,
)
from early_exit.dataset_readers import EarlyExitTextClassificationReader
from tests import FIXTURES_ROOT, PROJECT_ROOT, TINY_BERT
from tests.sweep.trained_models import other_model_archive

DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"
SENTENCES = FIXTURES_ROOT / "predictors" / "sentences.jsonl"
# The encoder's name in the training configuration below: a path relative to where it is trained,
# which resolves nowhere else (and which no other test loads, so no cache answers for it).
RELATIVE_ENCODER = "relative_encoder"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt")

# Runs allennlp commands one after the other in one process (a fresh process costs seconds each),
# each from its own working directory and with transformers' caches emptied as a new process would
# have them; prints one JSON line per command: whether it succeeded and the error if not.
COMMANDS_SCRIPT = """
import json, os, sys
from allennlp.commands import main
from allennlp.common import cached_transformers
import early_exit
for cwd, argv in json.loads(sys.argv[1]):
    os.chdir(cwd)
    cached_transformers._clear_caches()
    sys.argv = ["allennlp", *argv, "--include-package", "early_exit"]
    try:
        main(prog="allennlp")
        print(json.dumps({"ok": True}))
    except (Exception, SystemExit) as error:
        print(json.dumps({"ok": False, "error": repr(error)}))
"""


def _run_commands(commands):
    """`commands`: (working directory, allennlp arguments); returns one result dict per command."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), HF_HUB_OFFLINE="1")
    env["TRANSFORMERS_OFFLINE"] = "1"
    spelled = [[str(cwd), [str(arg) for arg in argv]] for cwd, argv in commands]
    result = subprocess.run(
        [sys.executable, "-c", COMMANDS_SCRIPT, json.dumps(spelled)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"ok"')]
    assert len(lines) == len(commands), result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads(line) for line in lines]


def _archive_names(archive: Path):
    with tarfile.open(archive) as tar:
        return {name[2:] if name.startswith("./") else name for name in tar.getnames()}


def _strip_encoder(archive: Path, output: Path) -> Path:
    """The archive as it was made before archives carried their encoder."""
    with tarfile.open(archive) as source, tarfile.open(output, "w:gz") as target:
        for member in source.getmembers():
            if member.name.split("/")[0] != ENCODER_DIR:
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A calibrated tiny model trained in its own directory on a relative encoder path."""
    train_dir = tmp_path_factory.mktemp("trained_here")
    shutil.copytree(TINY_BERT, train_dir / RELATIVE_ENCODER)
    shutil.copy(DATA, train_dir / "data.tsv")
    config = {
        "dataset_reader": {
            "type": "early_exit_text_classification",
            "transformer_model": RELATIVE_ENCODER,
            "max_length": 32,
        },
        "train_data_path": "data.tsv",
        "validation_data_path": "data.tsv",
        "model": {
            "type": "early_exit_classifier",
            "transformer_model": RELATIVE_ENCODER,
            "exit_layers": [0, 1, 3],
        },
        "data_loader": {"batch_size": 4},
        "trainer": {
            "optimizer": {"type": "huggingface_adamw", "lr": 1e-3},
            "num_epochs": 1,
            "cuda_device": -1,
            "callbacks": [{"type": "early_exit_temperature_calibration"}],
        },
    }
    (train_dir / "config.json").write_text(json.dumps(config))
    root = logging.getLogger()
    handlers, level, excepthook = root.handlers[:], root.level, sys.excepthook
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(train_dir)
            train_model_from_file("config.json", "run")
    finally:  # `allennlp train` replaces the root logger's handlers and the excepthook
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = excepthook
    return train_dir


def test_the_archive_carries_the_encoder_config_and_tokenizer_but_no_weights(trained):
    names = _archive_names(trained / "run" / "model.tar.gz")
    carried = {name.split("/", 1)[1] for name in names if name.startswith(ENCODER_DIR + "/")}
    assert {"config.json", "vocab.txt", "tokenizer_config.json", ENCODER_NOTE} <= carried
    assert not [name for name in carried if name.endswith(WEIGHT_SUFFIXES)]
    note = json.loads((trained / "run" / ENCODER_DIR / ENCODER_NOTE).read_text())
    assert note == {"transformer_model": RELATIVE_ENCODER}
    assert not list((trained / "run").glob(f".{ENCODER_DIR}.*"))  # no temporary left


@pytest.mark.slow
def test_the_archive_works_where_its_encoder_path_does_not_resolve(trained, tmp_path):
    """predict, evaluate, calibrate and sweep-thresholds from another directory, offline."""
    archive = shutil.copy(trained / "run" / "model.tar.gz", tmp_path / "model.tar.gz")
    old_style = _strip_encoder(trained / "run" / "model.tar.gz", tmp_path / "old.tar.gz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not (elsewhere / RELATIVE_ENCODER).exists()
    predict = ["--silent", "--batch-size", "7", "--output-file"]
    sweep = ["--output-dir", tmp_path / "sweep", "--no-timing"]
    results = _run_commands(
        [
            (elsewhere, ["predict", archive, SENTENCES, *predict, tmp_path / "carried.jsonl"]),
            (elsewhere, ["evaluate", archive, DATA, "--output-file", tmp_path / "metrics.json"]),
            (elsewhere, ["calibrate", archive, DATA, "--output-file", tmp_path / "c.tar.gz"]),
            (elsewhere, ["sweep-thresholds", tmp_path / "c.tar.gz", DATA, *sweep]),
            # An archive made before (no encoder/): where its path resolves it works as it did,
            # elsewhere not (so `elsewhere` does hide the encoder).
            (trained, ["predict", old_style, SENTENCES, *predict, tmp_path / "old.jsonl"]),
            (elsewhere, ["predict", old_style, SENTENCES, *predict, tmp_path / "failed.jsonl"]),
        ]
    )
    assert [result["ok"] for result in results] == [True] * 5 + [False], results
    predictions = (tmp_path / "carried.jsonl").read_bytes()
    assert predictions.count(b"\n") == len(SENTENCES.read_text().splitlines())
    assert predictions == (tmp_path / "old.jsonl").read_bytes()
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] > 0
    assert f"{ENCODER_DIR}/{ENCODER_NOTE}" in _archive_names(tmp_path / "c.tar.gz")
    assert (tmp_path / "sweep" / "sweep.json").exists()


def test_carried_transformer_takes_the_copy_made_from_that_name_only(tmp_path):
    assert carried_transformer("some/encoder", tmp_path) == "some/encoder"  # no copy
    assert carried_transformer("some/encoder", None) == "some/encoder"
    save_encoder_files(TINY_BERT, tmp_path)
    assert carried_transformer(TINY_BERT, tmp_path) == str(tmp_path / ENCODER_DIR)
    # An override naming another encoder wins over the copy.
    assert carried_transformer("some/encoder", tmp_path) == "some/encoder"
    (tmp_path / ENCODER_DIR / ENCODER_NOTE).write_text("not json")
    assert carried_transformer(TINY_BERT, tmp_path) == TINY_BERT


def test_save_encoder_files_replaces_an_older_copy(tmp_path):
    (tmp_path / ENCODER_DIR).mkdir()
    (tmp_path / ENCODER_DIR / "stale.txt").write_text("from an earlier run")
    save_encoder_files(TINY_BERT, tmp_path)
    assert not (tmp_path / ENCODER_DIR / "stale.txt").exists()
    assert (tmp_path / ENCODER_DIR / "vocab.txt").read_text() == (
        Path(TINY_BERT) / "vocab.txt"
    ).read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == [ENCODER_DIR]


def test_a_reader_reads_the_carried_tokenizer_when_its_path_does_not_resolve(tmp_path):
    save_encoder_files(TINY_BERT, tmp_path)
    (tmp_path / ENCODER_DIR / ENCODER_NOTE).write_text(
        json.dumps({"transformer_model": "nowhere/encoder"})
    )
    carried = EarlyExitTextClassificationReader("nowhere/encoder", serialization_dir=str(tmp_path))
    original = EarlyExitTextClassificationReader(TINY_BERT)
    text = "A great movie, with a wonderful story!"
    assert [token.text for token in carried.text_to_instance(text)["tokens"]] == [
        token.text for token in original.text_to_instance(text)["tokens"]
    ]


def test_archives_of_other_models_carry_nothing(tmp_path):
    directory = tmp_path / "other"
    other_model_archive(directory)
    archive = Path(archival.archive_model(directory))  # as importing early_exit left it
    assert not [name for name in _archive_names(archive) if name.startswith(ENCODER_DIR)]
    assert not (tmp_path / "other" / ENCODER_DIR).exists()


def test_an_unreadable_encoder_leaves_the_archive_as_before_with_a_warning(tmp_path, caplog):
    config = {"model": {"type": "early_exit_classifier", "transformer_model": "nowhere/encoder"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        assert not carry_encoder(tmp_path)
    assert "nowhere/encoder" in caplog.text
    assert list(tmp_path.iterdir()) == [tmp_path / "config.json"]


def test_archive_model_adds_the_encoder_to_what_it_was_asked_to_include(tmp_path):
    config = {"model": {"type": "early_exit_classifier", "transformer_model": TINY_BERT}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "vocabulary").mkdir()
    (tmp_path / "best.th").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("mine")
    archive = archival.archive_model(tmp_path, include_in_archive=["notes.txt"])
    names = _archive_names(Path(archive))
    assert "notes.txt" in names
    assert f"{ENCODER_DIR}/config.json" in names


def test_loading_a_carrying_archive_again_and_again_keeps_no_copy_of_its_encoder(trained):
    from allennlp.common import cached_transformers
    from allennlp.models.archival import load_archive

    caches = (cached_transformers._model_cache, cached_transformers._tokenizer_cache)
    sizes = [len(cache) for cache in caches]
    for _ in range(2):
        archive = load_archive(str(trained / "run" / "model.tar.gz"))
        assert archive.dataset_reader.text_to_instance("a good movie")["tokens"].tokens
    assert [len(cache) for cache in caches] == sizes


def test_archiving_again_where_the_encoder_does_not_resolve_keeps_the_earlier_copy(tmp_path):
    config = {"model": {"type": "early_exit_classifier", "transformer_model": "nowhere/encoder"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_encoder_files(TINY_BERT, tmp_path)
    (tmp_path / ENCODER_DIR / ENCODER_NOTE).write_text('{"transformer_model": "nowhere/encoder"}')
    assert carry_encoder(tmp_path)
    assert (tmp_path / ENCODER_DIR / "vocab.txt").exists()
