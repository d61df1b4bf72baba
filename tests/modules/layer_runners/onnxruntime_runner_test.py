"""
The "onnxruntime" layer runner against the "torch" runner: the same layer outputs (fp32 within
1e-4), the same exits at batch size 1, 7 and carried, int8 with the same labels, a graph cache
that is reused and follows the weights, and one clear error for what it cannot do.
"""

import json
import os
from typing import Any, Dict, Tuple

import pytest
import torch
import transformers
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from allennlp.data import Vocabulary

from early_exit.models import EarlyExitClassifier
from early_exit.modules import LayerwiseTransformer, PackedRows
from early_exit.modules.layer_runners import LayerRunner, OnnxRuntimeLayerRunner, TorchLayerRunner
from early_exit.modules.layer_runners.onnxruntime_runner import SMALL_CALL_TOKENS
from tests import TINY_BERT, run_allennlp
from tests.models.batch_stream_test import (
    assert_same_outputs,
    batches_of,
    build,
    median_first_head_threshold,
    threshold_in_a_gap,
)
from tests.sweep.trained_models import TEXT_DATA, TEXT_JSONL, trained_archive


def _packed_inputs(encoder: LayerwiseTransformer) -> PackedRows:
    torch.manual_seed(1)
    token_ids = torch.randint(5, 100, (5, 7))  # (batch_size, num_tokens)
    mask = torch.ones_like(token_ids, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    with torch.no_grad():
        hidden = encoder.embed(token_ids)  # (batch_size, num_tokens, hidden_size)
    return PackedRows.from_padded(torch.arange(5), hidden, mask)


def _all_layers(encoder: LayerwiseTransformer, packed: PackedRows) -> torch.Tensor:
    hidden = packed.hidden
    with torch.inference_mode():
        for index in range(encoder.num_layers):
            rows = PackedRows.from_tokens(packed.rows, hidden, packed.lengths)
            hidden = encoder.run_packed_layer(index, rows)
    return hidden  # (num_tokens, hidden_size)


def layers_of_runner_and_torch(path: str, runner: LayerRunner) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The last layer's output of a 4-layer encoder at `path` on the same packed rows, under
    `runner` and under the torch runner: `(got, expected)`, each `(num_tokens, hidden_size)`.
    """
    encoder = LayerwiseTransformer(path, num_layers=4, keep_pooler=False).eval()
    packed = _packed_inputs(encoder)
    expected = _all_layers(encoder, packed)
    encoder.use_layer_runner(runner)
    got = _all_layers(encoder, packed)
    assert got.shape == expected.shape
    return got, expected


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_packed_layers_agree_with_the_torch_runner(family, precision, tiny_distilbert, tmp_path):
    path = TINY_BERT if family == "bert" else tiny_distilbert
    runner = OnnxRuntimeLayerRunner(precision, cache_dir=str(tmp_path))
    got, expected = layers_of_runner_and_torch(path, runner)
    if precision == "fp32":
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    else:  # int8 weights move the outputs, but not far (a random layer norm keeps them O(1))
        assert 1e-6 < float((got - expected).abs().max()) < 0.5


@pytest.mark.parametrize("batch_size", [1, 7])
def test_fp32_exits_equal_the_torch_runner_per_batch_and_carried(batch_size, tmp_path):
    exits_equal_the_torch_runner_per_batch_and_carried(
        batch_size, {"type": "onnxruntime", "cache_dir": str(tmp_path)}, "onnxruntime fp32"
    )


def exits_equal_the_torch_runner_per_batch_and_carried(
    batch_size: int, runner_config: Dict[str, Any], description: str
) -> None:
    """
    Exits and outputs of `runner_config` (described as `description`) equal the torch runner's on
    the tiny BERT's batches of `batch_size`, batch by batch and carried.
    """
    model, instances, vocab = build()
    batches = batches_of(instances, vocab, batch_size)
    model.confidence_threshold = median_first_head_threshold(model, batches)
    with torch.inference_mode():
        expected = [model(**batch) for batch in batches]
        assert len({int(head) for out in expected for head in out["exit_head"]}) > 1
        model.layer_runner = runner_config
        assert model.layer_runner.describe() == description
        per_batch = [model(**batch) for batch in batches]
        carried = list(model.forward_stream(batches, min_tokens=40))
    assert_same_outputs(expected, per_batch)
    assert_same_outputs(expected, carried)


def test_int8_predicts_the_labels_of_the_full_model(tmp_path):
    model, instances, vocab = build(confidence_threshold=1.0)
    batches = batches_of(instances, vocab, 8)
    with torch.inference_mode():
        expected = torch.cat([model(**batch)["probs"] for batch in batches])
        model.layer_runner = {
            "type": "onnxruntime",
            "precision": "int8",
            "cache_dir": str(tmp_path),
        }
        got = torch.cat([model(**batch)["probs"] for batch in batches])
    assert torch.equal(got.argmax(dim=-1), expected.argmax(dim=-1))
    assert not torch.equal(got, expected)  # it did run in int8


def test_the_graphs_are_cached_by_weights_and_settings(tmp_path, caplog):
    encoder = LayerwiseTransformer(TINY_BERT, num_layers=2, keep_pooler=False).eval()
    packed = _packed_inputs(encoder)
    runner = OnnxRuntimeLayerRunner("int8", cache_dir=str(tmp_path))
    encoder.use_layer_runner(runner)
    first = _all_layers(encoder, packed)
    cached = sorted(os.listdir(tmp_path))
    assert len(cached) == 2 and all(name.endswith(".onnx") for name in cached)

    # A second model on the same weights (a second `allennlp predict`) exports nothing.
    again = LayerwiseTransformer(TINY_BERT, num_layers=2, keep_pooler=False).eval()
    again.use_layer_runner(OnnxRuntimeLayerRunner("int8", cache_dir=str(tmp_path)))
    mtimes = {name: os.stat(tmp_path / name).st_mtime_ns for name in cached}
    caplog.clear()
    with caplog.at_level("DEBUG"):
        torch.testing.assert_close(_all_layers(again, packed), first, atol=0, rtol=0)
    [message] = caplog.messages  # one line for the load
    assert message.startswith(
        f"layer_runner onnxruntime int8: 2 layer graph(s) reused from {tmp_path}"
    )
    assert message.endswith("(no export)")
    assert {name: os.stat(tmp_path / name).st_mtime_ns for name in cached} == mtimes

    # Other weights (changed in place, as a training step does) make a new graph for that layer,
    # which replaces the one this runner made before (validation between epochs leaves one set).
    with torch.no_grad():
        encoder.layers[1].output.dense.weight.mul_(2.0)
    changed = _all_layers(encoder, packed)
    after = set(os.listdir(tmp_path))
    assert len(after) == 2 and len(after & set(cached)) == 1  # layer 0's kept, layer 1's new
    assert not torch.allclose(changed, first)

    # Another precision is another graph.
    encoder.use_layer_runner(OnnxRuntimeLayerRunner("fp32", cache_dir=str(tmp_path)))
    _all_layers(encoder, packed)
    assert len(os.listdir(tmp_path)) == 4


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, caplog):
    encoder = LayerwiseTransformer(TINY_BERT, num_layers=2, keep_pooler=False).eval()
    packed = _packed_inputs(encoder)
    encoder.use_layer_runner(OnnxRuntimeLayerRunner("fp32", cache_dir=str(tmp_path / "ok")))
    expected = _all_layers(encoder, packed)
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    runner = OnnxRuntimeLayerRunner("fp32", cache_dir=str(blocked / "cache"))
    encoder.use_layer_runner(runner)
    with caplog.at_level("WARNING"):
        torch.testing.assert_close(_all_layers(encoder, packed), expected, atol=0, rtol=0)
    assert caplog.text.count("cannot write its graphs to") == 1  # once, not per layer
    assert str(blocked / "cache") in caplog.text and "cache_dir" in caplog.text
    assert len(os.listdir(runner.graphs.fallback_dir)) == 2


def test_with_gradients_the_layers_run_in_torch(tmp_path):
    encoder = LayerwiseTransformer(TINY_BERT, num_layers=2, keep_pooler=False).eval()
    encoder.use_layer_runner(OnnxRuntimeLayerRunner("int8", cache_dir=str(tmp_path)))
    packed = _packed_inputs(encoder)
    output = encoder.run_packed_layer(0, packed)
    assert output.requires_grad
    assert os.listdir(tmp_path) == []


def test_it_is_picked_by_name_and_the_torch_runner_is_the_default():
    runner = LayerRunner.from_params(Params({"type": "onnxruntime", "precision": "int8"}))
    assert isinstance(runner, OnnxRuntimeLayerRunner)
    assert runner.calibration_key() == "onnxruntime_int8"
    assert OnnxRuntimeLayerRunner("fp32").calibration_key() is None
    assert isinstance(LayerRunner.from_params(Params({})), TorchLayerRunner)
    assert TorchLayerRunner().calibration_key() is None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"precision": "int4"}, "precision must be one of fp32, int8, got 'int4'"),
        ({"threads": 0}, "threads must be a positive integer, got 0"),
    ],
)
def test_bad_settings_are_one_clear_error(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        OnnxRuntimeLayerRunner(**settings)


def test_a_gpu_is_refused_with_what_to_use_instead():
    with pytest.raises(ConfigurationError, match=r'runs on the CPU.*use \{"type": "cuda"\}'):
        OnnxRuntimeLayerRunner().check_device(torch.device("cuda", 0))
    OnnxRuntimeLayerRunner().check_device(torch.device("cpu"))


def test_layers_that_cannot_be_packed_are_refused(tmp_path):
    unpackable_layers_are_refused(
        tmp_path, OnnxRuntimeLayerRunner(), r'cannot be packed.*use \{"type": "torch"\}'
    )


def unpackable_layers_are_refused(tmp_path, runner: LayerRunner, message: str) -> None:
    """An encoder with relative positions under `runner` is refused with `message`."""
    config = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        position_embedding_type="relative_key",
    )
    transformers.AutoModel.from_config(config).save_pretrained(str(tmp_path / "relative"))
    with pytest.raises(ConfigurationError, match=message):
        LayerwiseTransformer(
            str(tmp_path / "relative"), num_layers=2, keep_pooler=False, layer_runner=runner
        )


@pytest.mark.parametrize(
    "command, option",
    [
        (
            "evaluate",
            [
                "-o",
                json.dumps({"model.layer_runner": {"type": "onnxruntime", "precision": "int4"}}),
            ],
        ),
        (
            "predict",
            [
                "--predictor-args",
                json.dumps({"layer_runner": {"type": "onnxruntime", "precision": "int4"}}),
            ],
        ),
    ],
)
def test_a_bad_runner_is_one_error_line_on_the_command_line(command, option, tmp_path_factory):
    archive = trained_archive(tmp_path_factory, "text")
    data = TEXT_DATA if command == "evaluate" else TEXT_JSONL
    extra = ["--output-file", str(tmp_path_factory.mktemp("out") / "out.json")]
    result = run_allennlp(command, archive, data, *option, *extra)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "precision must be one of fp32, int8, got 'int4'" in errors[0]


def test_small_and_large_calls_compute_the_same_layer(tmp_path):
    # Calls under SMALL_CALL_TOKENS tokens run on a one-thread session, larger ones on torch's
    # threads: both the same graph.
    small_and_large_calls_agree(OnnxRuntimeLayerRunner("fp32", cache_dir=str(tmp_path)))


def small_and_large_calls_agree(
    runner: LayerRunner,
) -> Tuple[LayerwiseTransformer, PackedRows, torch.Tensor]:
    """
    Layer 1 under `runner` on a call under `SMALL_CALL_TOKENS` tokens and one over it equals the
    torch runner's, and the small call's rows are the large one's first: the encoder, the small
    rows and the small call's output, for more checks.
    """
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
        encoder.use_layer_runner(runner)
        got = [encoder.run_packed_layer(1, rows) for rows in (small, large)]
    for one, other in zip(got, expected):
        torch.testing.assert_close(one, other, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1][: got[0].shape[0]], got[0], atol=1e-5, rtol=1e-5)
    return encoder, small, got[0]


def test_fp32_exits_equal_the_torch_runner_on_distilbert(tiny_distilbert, tmp_path):
    exits_equal_the_torch_runner_on_distilbert(
        tiny_distilbert, {"type": "onnxruntime", "cache_dir": str(tmp_path)}
    )


def exits_equal_the_torch_runner_on_distilbert(tiny_distilbert, runner_config):
    """
    Exits and outputs of `runner_config` equal the torch runner's on a tiny DistilBERT: one batch
    of 7, each row alone, and the rows carried.
    """
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(["a", "b", "c"], "labels")
    torch.manual_seed(3)
    model = EarlyExitClassifier(vocab, tiny_distilbert, exit_layers=[0, 2, 3]).eval()
    torch.manual_seed(4)
    token_ids = torch.randint(5, 100, (7, 9))  # (batch_size, num_tokens)
    mask = torch.arange(9).unsqueeze(0) < torch.tensor([9, 4, 7, 2, 9, 5, 8]).unsqueeze(1)
    batch = {"tokens": {"tokens": {"token_ids": token_ids * mask, "mask": mask}}}
    singles = [
        {"tokens": {"tokens": {"token_ids": token_ids[i : i + 1, :n], "mask": mask[i : i + 1, :n]}}}
        for i, n in enumerate(mask.sum(dim=1).tolist())
    ]
    with torch.inference_mode():
        confidence = model(**batch, settings=model.inference_settings().replace(run_all_heads=True))
        model.confidence_threshold = threshold_in_a_gap(
            confidence["head_probs"][:, 0].max(dim=-1).values, 0.4
        )
        runs = []
        for runner in ({"type": "torch"}, runner_config):
            model.layer_runner = runner
            runs.append(
                [model(**batch)]
                + [model(**single) for single in singles]
                + list(model.forward_stream(singles, min_tokens=10))
            )
    assert len(set(runs[0][0]["exit_head"].tolist())) > 1
    assert_same_outputs(runs[0][:1], runs[1][:1])
    assert_same_outputs(runs[0][1:], runs[1][1:])


def test_runner_temperatures_of_the_wrong_size_are_named_in_the_error():
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(["a", "b"], "labels")
    with pytest.raises(
        ConfigurationError, match=r"runner_temperatures\['onnxruntime_int8'\] must have one value"
    ):
        EarlyExitClassifier(
            vocab, TINY_BERT, exit_layers=[0, 3], runner_temperatures={"onnxruntime_int8": [1.0]}
        )
