import json
import logging
import sys

import pytest
import torch
from allennlp.commands import train as allennlp_train
from allennlp.common import util as allennlp_util
from allennlp.common.checks import ConfigurationError, check_for_gpu
from allennlp.common.params import Params

from early_exit.common.config_errors import (
    check_cuda_device,
    checked_overrides,
    configuration_errors_named,
    overridden_values_checked,
)
from tests.sweep.trained_models import TEXT_CONFIG


def test_overrides_are_parsed_or_named():
    assert checked_overrides('{"trainer.num_epochs": 1}') == {"trainer.num_epochs": 1}
    assert checked_overrides("") == {} and checked_overrides({"a": 1}) == {"a": 1}
    with pytest.raises(ConfigurationError, match=r"the overrides \{bad are not valid JSON .*1:5"):
        checked_overrides("{bad")
    with pytest.raises(ConfigurationError, match=r"the overrides \[1\] are a JSON list"):
        checked_overrides("[1]")


def test_a_configuration_file_that_is_missing_a_directory_or_bad_jsonnet_is_named(
    tmp_path, command_line_patches
):
    with pytest.raises(ConfigurationError, match=f"{tmp_path}/no.jsonnet: configuration file not"):
        Params.from_file(tmp_path / "no.jsonnet")
    with pytest.raises(ConfigurationError, match=f"{tmp_path}: a directory, not a configuration"):
        Params.from_file(tmp_path)
    broken = tmp_path / "broken.jsonnet"
    broken.write_text('{"model": {\n  "type": }\n')
    with pytest.raises(ConfigurationError, match=f"^{broken}:2:11: .*\\(Jsonnet, in {broken}\\)$"):
        Params.from_file(broken)
    with pytest.raises(ConfigurationError, match="the overrides"):
        Params.from_file(TEXT_CONFIG, "{bad")
    assert Params.from_file(TEXT_CONFIG, '{"trainer.num_epochs": 7}')["trainer"]["num_epochs"] == 7


def test_other_runtime_errors_pass_through(tmp_path):
    with pytest.raises(RuntimeError, match="something else"):
        with configuration_errors_named(TEXT_CONFIG, ""):
            raise RuntimeError("something else")


def test_wrong_types_are_named_only_where_they_are_the_configurations():
    message = "Expected lr to be numeric."
    with pytest.raises(ConfigurationError, match=f"^a.jsonnet with the overrides x: {message}$"):
        with overridden_values_checked("a.jsonnet", "x"):
            raise TypeError(message)
    with pytest.raises(ConfigurationError, match=f"^a.jsonnet: {message}$"):
        with overridden_values_checked("a.jsonnet", "", whole_run=True):
            raise TypeError(message)
    # an archive's own configuration loaded when it was trained; a run's other TypeErrors are bugs
    with pytest.raises(TypeError):
        with overridden_values_checked("model.tar.gz", ""):
            raise TypeError(message)
    with pytest.raises(TypeError):
        with overridden_values_checked("a.jsonnet", "x", whole_run=True):
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


def test_train_names_a_value_of_the_wrong_type(tmp_path, monkeypatch, command_line_patches):
    # training replaces the root logger's handlers and level, and the exception hook
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    overrides = json.dumps({"trainer.num_epochs": "two"})
    with pytest.raises(ConfigurationError, match=f"{TEXT_CONFIG} with the overrides .*num_epochs"):
        allennlp_train.train_model_from_file(TEXT_CONFIG, tmp_path / "model", overrides=overrides)


@pytest.mark.skipif(torch.cuda.is_available(), reason="about a machine without a GPU")
def test_a_gpu_the_machine_does_not_have_is_named(command_line_patches):
    with pytest.raises(ConfigurationError, match="--cuda-device 0: this machine has 0 GPU"):
        check_cuda_device(0)
    check_cuda_device(-1)
    # allennlp's own check (train's `trainer.cuda_device`) now gets to say it, under torch 2.x
    assert allennlp_util.int_to_device(0) == torch.device("cuda", 0)
    with pytest.raises(ConfigurationError, match="specified a GPU but none is available"):
        check_for_gpu(0)
