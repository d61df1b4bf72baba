import os
import tempfile

# Nothing may be fetched from a model hub while testing: every test uses the tiny local BERT.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Forked data-loader workers and the fast tokenizers' own threads do not mix; keep the logs quiet.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The onnxruntime layer runner's exported graphs: one folder for the run, never the user's cache.
os.environ.setdefault("EARLY_EXIT_CACHE", tempfile.mkdtemp(prefix="early_exit_test_cache_"))

# Property-based tests (hypothesis): the same examples on every run, no example database written
# and no per-example deadline (timings vary on shared machines). `HYPOTHESIS_PROFILE=explore`
# searches more widely and at random.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "default",
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

import importlib

import pytest  # noqa: E402
from allennlp.commands import train as allennlp_train  # noqa: E402
from allennlp.common import logging as allennlp_logging  # noqa: E402
from allennlp.common import util as allennlp_util  # noqa: E402
from allennlp.common.params import Params  # noqa: E402

from early_exit import allennlp_patches  # noqa: E402
from early_exit.common.archive_errors import LOAD_ARCHIVE_MODULES  # noqa: E402


@pytest.fixture
def command_line_patches(monkeypatch):
    """
    The error patches that importing `early_exit` applies under the `allennlp` command line only
    (`allennlp_patches.ERROR_PATCHES`, not in this test process but the excepthook), applied for
    one test and undone after it: every name they rebind is saved first.
    """
    for name in LOAD_ARCHIVE_MODULES:
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "load_archive", module.load_archive)
    monkeypatch.setattr(Params, "from_file", Params.__dict__["from_file"])  # the classmethod
    monkeypatch.setattr(
        allennlp_train, "train_model_from_file", allennlp_train.train_model_from_file
    )
    monkeypatch.setattr(allennlp_util, "int_to_device", allennlp_util.int_to_device)
    for owner, name, _ in allennlp_patches._TRAIN_WRITERS:
        monkeypatch.setattr(owner, name, getattr(owner, name))
    monkeypatch.setattr(
        allennlp_logging, "prepare_global_logging", allennlp_logging.prepare_global_logging
    )
    for install_error_patch in allennlp_patches.ERROR_PATCHES:
        if install_error_patch is not allennlp_patches.install_cli_error_hook:
            install_error_patch()
