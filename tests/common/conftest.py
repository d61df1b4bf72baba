import importlib

import pytest
from allennlp.commands import train as allennlp_train
from allennlp.common import util as allennlp_util
from allennlp.common.params import Params

from early_exit import allennlp_patches
from early_exit.common.archive_errors import LOAD_ARCHIVE_MODULES


@pytest.fixture
def command_line_patches(monkeypatch):
    """
    The error patches that importing `early_exit` applies under the `allennlp` command line only
    (not in this test process), applied for one test and undone after it.
    """
    for name in LOAD_ARCHIVE_MODULES:
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "load_archive", module.load_archive)
    monkeypatch.setattr(Params, "from_file", Params.__dict__["from_file"])  # the classmethod
    monkeypatch.setattr(
        allennlp_train, "train_model_from_file", allennlp_train.train_model_from_file
    )
    monkeypatch.setattr(allennlp_util, "int_to_device", allennlp_util.int_to_device)
    allennlp_patches.install_archive_errors()
    allennlp_patches.install_configuration_errors()
    allennlp_patches.install_device_check()
