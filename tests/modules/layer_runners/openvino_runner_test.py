"""
The "openvino" layer runner against the "torch" runner: the same layer outputs within 1e-4 on the
tiny BERT and DistilBERT, the same exits at batch size 1, 7 and carried, and one clear error for
what it cannot do. Its graphs and their cache are the onnxruntime runner's (`graph_cache_test.py`).
"""

import pytest
import torch
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError

from early_exit.modules.layer_runners import LayerRunner, OpenVinoLayerRunner
from tests import TINY_BERT
from tests.modules.layer_runners.onnxruntime_runner_test import (
    exits_equal_the_torch_runner_on_distilbert,
    exits_equal_the_torch_runner_per_batch_and_carried,
    layers_of_runner_and_torch,
    small_and_large_calls_agree,
    unpackable_layers_are_refused,
)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_packed_layers_agree_with_the_torch_runner(family, tiny_distilbert, tmp_path):
    path = TINY_BERT if family == "bert" else tiny_distilbert
    got, expected = layers_of_runner_and_torch(path, OpenVinoLayerRunner(cache_dir=str(tmp_path)))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_exits_equal_the_torch_runner_per_batch_and_carried(batch_size, tmp_path):
    exits_equal_the_torch_runner_per_batch_and_carried(
        batch_size, {"type": "openvino", "cache_dir": str(tmp_path)}, "openvino fp32"
    )


def test_exits_equal_the_torch_runner_on_distilbert(tiny_distilbert, tmp_path):
    exits_equal_the_torch_runner_on_distilbert(
        tiny_distilbert, {"type": "openvino", "cache_dir": str(tmp_path)}
    )


def test_small_and_large_calls_compute_the_same_layer(tmp_path):
    encoder, small, first = small_and_large_calls_agree(
        OpenVinoLayerRunner(cache_dir=str(tmp_path))
    )
    with torch.inference_mode():
        # A call's output is its own: the next call of the same layer does not overwrite it.
        again = encoder.run_packed_layer(1, small)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert first.data_ptr() != again.data_ptr()


def test_it_is_picked_by_name_and_keeps_the_models_temperatures():
    runner = LayerRunner.from_params(Params({"type": "openvino", "threads": 1}))
    assert isinstance(runner, OpenVinoLayerRunner) and runner.threads == 1
    assert runner.calibration_key() is None


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"precision": "int8"},
            r"layer_runner openvino: precision must be one of fp32, got 'int8'; for int8 use "
            r'\{"type": "onnxruntime", "precision": "int8"\}',
        ),
        ({"threads": 0}, "layer_runner openvino: threads must be a positive integer, got 0"),
    ],
)
def test_bad_settings_are_one_clear_error(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        OpenVinoLayerRunner(**settings)


def test_a_gpu_is_refused_with_what_to_use_instead():
    with pytest.raises(
        ConfigurationError,
        match=r'layer_runner \{"type": "openvino"\} runs on the CPU.*use \{"type": "cuda"\}',
    ):
        OpenVinoLayerRunner().check_device(torch.device("cuda", 0))


def test_layers_that_cannot_be_packed_are_refused(tmp_path):
    unpackable_layers_are_refused(
        tmp_path,
        OpenVinoLayerRunner(),
        r'layer_runner \{"type": "openvino"\} .*cannot be packed.*use \{"type": "torch"\}',
    )
