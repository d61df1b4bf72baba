"""
The "cuda" layer runner where there may be no GPU: refused without a CUDA device (one line naming
the option and what to use instead, also on the command line), its settings checked, and its
precision logic (autocast at inference, float32 out, its own temperatures) on the CPU, where
autocast runs too. Against the CPU on a real GPU: `cuda_runner_device_test.py`.
"""

import json

import pytest
import torch
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError

from early_exit.modules.layer_runners import CudaLayerRunner, LayerRunner
from tests import run_allennlp
from tests.models.batch_stream_test import assert_same_outputs, batches_of, build
from tests.sweep.trained_models import TEXT_DATA, trained_archive


def test_without_a_cuda_device_it_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigurationError) as error:
        LayerRunner.from_params(Params({"type": "cuda", "precision": "fp16"}))
    message = str(error.value)
    assert "\n" not in message
    assert 'layer_runner {"type": "cuda"} needs a CUDA device' in message
    assert 'use {"type": "torch"}' in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_a_cuda_device_the_command_line_says_so_in_one_line(tmp_path_factory):
    archive = trained_archive(tmp_path_factory, "text")
    output = tmp_path_factory.mktemp("out") / "metrics.json"
    result = run_allennlp(
        "evaluate",
        archive,
        TEXT_DATA,
        "--output-file",
        output,
        "-o",
        json.dumps({"model.layer_runner": {"type": "cuda"}}),
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not output.exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "needs a CUDA device" in errors[0], result.stderr[-3000:]
    assert 'use {"type": "torch"}' in errors[0]


@pytest.fixture
def as_if_on_a_gpu(monkeypatch):
    """The runner built and run on the CPU (autocast exists there too, in bfloat16)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(CudaLayerRunner, "check_device", lambda self, device: None)


def test_bad_precision_is_one_clear_error(as_if_on_a_gpu):
    with pytest.raises(ConfigurationError, match="precision must be one of fp32, fp16, bf16"):
        CudaLayerRunner("int8")


def test_a_model_on_the_cpu_is_refused_with_what_to_use_instead(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    runner = CudaLayerRunner()
    with pytest.raises(ConfigurationError, match=r"--cuda-device 0.*use \{\"type\": \"torch\"\}"):
        runner.check_device(torch.device("cpu"))
    runner.check_device(torch.device("cuda", 0))


def test_half_precision_has_temperatures_of_its_own(as_if_on_a_gpu):
    assert CudaLayerRunner("fp32").calibration_key() is None
    assert CudaLayerRunner("fp16").calibration_key() == "cuda_fp16"
    runner = LayerRunner.from_params(Params({"type": "cuda", "precision": "bf16"}))
    assert runner.calibration_key() == "cuda_bf16" and runner.describe() == "cuda bf16"


def test_fp32_computes_what_the_torch_runner_computes(as_if_on_a_gpu):
    model, instances, vocab = build(confidence_threshold=0.6)
    batches = batches_of(instances, vocab, 7)
    with torch.inference_mode():
        expected = [model(**batch) for batch in batches]
        model.layer_runner = {"type": "cuda"}
        got = [model(**batch) for batch in batches]
    assert_same_outputs(expected, got)


def test_bf16_runs_the_layers_in_half_precision_with_float32_between_them(as_if_on_a_gpu):
    model, instances, vocab = build(confidence_threshold=1.0)
    batches = batches_of(instances, vocab, 8)
    dtypes = []
    # What the layers' matrix products run in, and what a layer hands on.
    model.encoder.layers[0].intermediate.dense.register_forward_hook(
        lambda module, args, output: dtypes.append(output.dtype)
    )
    with torch.inference_mode():
        expected = torch.cat([model(**batch)["probs"] for batch in batches])
        model.layer_runner = {"type": "cuda", "precision": "bf16"}
        outputs = [model(**batch) for batch in batches]
        hidden = model.encoder.run_layer(0, torch.randn(2, 5, model.encoder.hidden_size), None)
    got = torch.cat([output["probs"] for output in outputs])
    assert set(dtypes[: len(batches)]) == {torch.float32}
    assert set(dtypes[len(batches) :]) == {torch.bfloat16}
    assert hidden.dtype == torch.float32 and got.dtype == torch.float32
    assert not torch.equal(got, expected)  # it did run in bfloat16
    torch.testing.assert_close(got, expected, atol=0.05, rtol=0)
    # Training, and anything with gradients, stays float32.
    dtypes.clear()
    model.train()
    model(**batches[0])
    assert set(dtypes) == {torch.float32}
