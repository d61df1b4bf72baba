"""
A failed write of `allennlp train` (a full disk, for real: /dev/full answers every write with
ENOSPC) names the file in one `error: ...` line, whichever of allennlp's writers hit it.
"""

import json
import logging
import os
import sys
from pathlib import Path

import pytest
import torch
from allennlp.common import logging as allennlp_logging
from allennlp.common import util as allennlp_util
from allennlp.common.meta import Meta
from allennlp.common.params import Params
from allennlp.data import Vocabulary
from allennlp.models import archival
from allennlp.training import GradientDescentTrainer
from allennlp.training.checkpointer import Checkpointer
from allennlp.training.trainer import TrainerCheckpoint

from early_exit.common.files import OutputWriteError
from tests import run_allennlp
from tests.common.cli_errors_test import _error_line
from tests.sweep.trained_models import TEXT_CONFIG

FULL = "/dev/full"


# The named failed writes are among the patches the command line alone applies.
pytestmark = pytest.mark.usefixtures("command_line_patches")


def _full(path: Path) -> Path:
    """`path` as a file on a full disk: a link to /dev/full."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(FULL)
    return path


def test_configuration_meta_and_metrics_name_their_file():
    for write in (
        lambda: Params({"a": 1}).to_file(FULL),
        lambda: Meta.new().to_file(FULL),
        lambda: allennlp_util.dump_metrics(FULL, {"accuracy": 1.0}),
    ):
        with pytest.raises(OutputWriteError, match="^cannot write /dev/full: No space left on"):
            write()


def test_the_vocabulary_names_its_folder(tmp_path):
    folder = tmp_path / "vocabulary"
    _full(folder / "non_padded_namespaces.txt")
    with pytest.raises(OutputWriteError, match=f"^cannot write {folder}: No space left on"):
        Vocabulary().save_to_files(str(folder))


def test_the_best_weights_name_their_file():
    class Trainer:
        _ddp_wrapped_model = None
        model = torch.nn.Linear(64, 64)

    # torch's writer: "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
    with pytest.raises(OutputWriteError, match="^cannot write /dev/full: unexpected pos"):
        GradientDescentTrainer._save_model_state(Trainer(), FULL)


def test_a_checkpoint_names_its_files(tmp_path):
    class Trainer:
        def get_checkpoint_state(self):
            state = {"epochs_completed": 1, "batches_in_epoch_completed": 0}
            return TrainerCheckpoint(torch.nn.Linear(64, 64).state_dict(), state)

    _full(tmp_path / "training_state_e1_b0.th")
    with pytest.raises(OutputWriteError) as raised:
        Checkpointer(str(tmp_path)).save_checkpoint(Trainer())
    assert str(raised.value).startswith(
        f"cannot write {tmp_path}/model_state_e1_b0.th or {tmp_path}/training_state_e1_b0.th: "
    )


def test_the_archive_names_its_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"type": "basic_classifier"}}))
    (tmp_path / "best.th").write_bytes(b"weights")
    _full(tmp_path / "model.tar.gz")
    with pytest.raises(OutputWriteError, match=f"^cannot write {tmp_path}/model.tar.gz: No space"):
        archival.archive_model(tmp_path)
    with pytest.raises(OutputWriteError, match="^cannot write /dev/full: No space"):
        archival.archive_model(tmp_path, archive_path=FULL)


def test_the_log_file_names_itself_once_and_is_left(tmp_path, monkeypatch, capsys):
    # allennlp's logging set-up replaces the root logger's handlers and level, and the hook
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    log = _full(tmp_path / "out.log")
    allennlp_logging.prepare_global_logging(tmp_path)
    for number in range(3):
        logging.getLogger("allennlp").info("record %d", number)
    errors = capsys.readouterr().err
    assert "Logging error" not in errors and "Traceback" not in errors
    warnings = [line for line in errors.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: cannot write {log}: No space left on device; stopped writing it"]


def test_train_on_a_full_disk_ends_with_one_error_line_naming_the_file(tmp_path):
    # `--recover` into a folder prepared as allennlp would start it, whose archive is on a full
    # disk: the run trains, then fails to write model.tar.gz.
    serialization_dir = tmp_path / "model"
    serialization_dir.mkdir()
    overrides = json.dumps({"trainer.num_epochs": 1})
    Params.from_file(str(TEXT_CONFIG), overrides).to_file(str(serialization_dir / "config.json"))
    archive = _full(serialization_dir / "model.tar.gz")
    result = run_allennlp(
        "train", TEXT_CONFIG, "-s", serialization_dir, "--recover", "-o", overrides
    )
    assert _error_line(result) == f"error: cannot write {archive}: No space left on device"
    assert os.path.islink(archive)  # nothing written over it
