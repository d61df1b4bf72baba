"""
The "openvino" layer runner against the "torch" runner: the same layer outputs within 1e-4 on the
tiny BERT and DistilBERT, the same exits at batch size 1, 7 and carried, and one clear error for
what it cannot do. Its graphs and their cache are the onnxruntime runner's (`graph_cache_test.py`).
"""

import pytest
import torch
import transformers
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError

from early_exit.modules import LayerwiseTransformer, PackedRows
from early_exit.modules.layer_runners import LayerRunner, OpenVinoLayerRunner
from early_exit.modules.layer_runners.exported_graph_runner import SMALL_CALL_TOKENS
from tests import TINY_BERT
from tests.models.batch_stream_test import (
    assert_same_outputs,
    batches_of,
    build,
    median_first_head_threshold,
)
from tests.modules.layer_runners.onnxruntime_runner_test import (
    _all_layers,
    _packed_inputs,
    exits_equal_the_torch_runner_on_distilbert,
)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_packed_layers_agree_with_the_torch_runner(family, tiny_distilbert, tmp_path):
    path = TINY_BERT if family == "bert" else tiny_distilbert
    encoder = LayerwiseTransformer(path, num_layers=4, keep_pooler=False).eval()
    packed = _packed_inputs(encoder)
    expected = _all_layers(encoder, packed)
    encoder.use_layer_runner(OpenVinoLayerRunner(cache_dir=str(tmp_path)))
    got = _all_layers(encoder, packed)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_exits_equal_the_torch_runner_per_batch_and_carried(batch_size, tmp_path):
    model, instances, vocab = build()
    batches = batches_of(instances, vocab, batch_size)
    model.confidence_threshold = median_first_head_threshold(model, batches)
    with torch.inference_mode():
        expected = [model(**batch) for batch in batches]
        assert len({int(head) for out in expected for head in out["exit_head"]}) > 1
        model.layer_runner = {"type": "openvino", "cache_dir": str(tmp_path)}
        assert model.layer_runner.describe() == "openvino fp32"
        per_batch = [model(**batch) for batch in batches]
        carried = list(model.forward_stream(batches, min_tokens=40))
    assert_same_outputs(expected, per_batch)
    assert_same_outputs(expected, carried)


def test_exits_equal_the_torch_runner_on_distilbert(tiny_distilbert, tmp_path):
    exits_equal_the_torch_runner_on_distilbert(
        tiny_distilbert, {"type": "openvino", "cache_dir": str(tmp_path)}
    )


def test_small_and_large_calls_compute_the_same_layer(tmp_path):
    torch.set_num_threads(2)
    encoder = LayerwiseTransformer(TINY_BERT, num_layers=2, keep_pooler=False).eval()
    torch.manual_seed(2)
    lengths = torch.randint(3, 12, (48,))  # about 350 tokens
    hidden = torch.randn(int(lengths.sum()), encoder.hidden_size)
    large = PackedRows.from_tokens(torch.arange(48), hidden, lengths)
    assert large.num_tokens >= SMALL_CALL_TOKENS
    small = PackedRows.from_tokens(torch.arange(2), hidden[: int(lengths[:2].sum())], lengths[:2])
    with torch.inference_mode():
        expected = [encoder.run_packed_layer(1, rows) for rows in (small, large)]
        encoder.use_layer_runner(OpenVinoLayerRunner(cache_dir=str(tmp_path)))
        got = [encoder.run_packed_layer(1, rows) for rows in (small, large)]
        # A call's output is its own: the next call of the same layer does not overwrite it.
        again = encoder.run_packed_layer(1, small)
    for one, other in zip(got, expected):
        torch.testing.assert_close(one, other, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1][: got[0].shape[0]], got[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], again, atol=0, rtol=0)
    assert got[0].data_ptr() != again.data_ptr()


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
    config = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        position_embedding_type="relative_key",
    )
    transformers.AutoModel.from_config(config).save_pretrained(str(tmp_path / "relative"))
    with pytest.raises(
        ConfigurationError,
        match=r'layer_runner \{"type": "openvino"\} .*cannot be packed.*use \{"type": "torch"\}',
    ):
        LayerwiseTransformer(
            str(tmp_path / "relative"),
            num_layers=2,
            keep_pooler=False,
            layer_runner=OpenVinoLayerRunner(),
        )
