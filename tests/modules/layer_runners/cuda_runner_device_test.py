"""
The "cuda" layer runner on a CUDA device against the "torch" runner on the CPU: fp32 layer outputs
within 1e-4 and the same exits at batch size 1, 7 and carried (packed and padded rows); fp16 and
bf16 the same labels on the fixture data. Skipped without a CUDA device (`bench/gpu_check.sh`
runs it where there is one).
"""

import copy

import pytest
import torch

from early_exit.modules import LayerwiseTransformer, PackedRows
from early_exit.modules.layer_runners import CudaLayerRunner
from tests import TINY_BERT
from tests.models.batch_stream_test import batches_of, build, median_first_head_threshold
from tests.modules.layer_runners.onnxruntime_runner_test import _packed_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _on(device, batches):
    return [
        {"tokens": {"tokens": {k: v.to(device) for k, v in b["tokens"]["tokens"].items()}}}
        for b in batches
    ]


def _layers(encoder: LayerwiseTransformer, packed: PackedRows, device: str) -> torch.Tensor:
    rows, hidden, lengths = (t.to(device) for t in (packed.rows, packed.hidden, packed.lengths))
    with torch.inference_mode():
        for index in range(encoder.num_layers):
            hidden = encoder.run_packed_layer(index, PackedRows.from_tokens(rows, hidden, lengths))
    return hidden.cpu()  # (num_tokens, hidden_size)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_fp32_layers_on_the_gpu_agree_with_the_cpu(family, tiny_distilbert):
    path = TINY_BERT if family == "bert" else tiny_distilbert
    encoder = LayerwiseTransformer(path, num_layers=4, keep_pooler=False).eval()
    packed = _packed_inputs(encoder)
    expected = _layers(encoder, packed, "cpu")
    encoder.to("cuda").use_layer_runner(CudaLayerRunner("fp32"))
    torch.testing.assert_close(_layers(encoder, packed, "cuda"), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("packed", [True, False])
def test_fp32_exits_equal_the_cpu_per_batch_and_carried(packed):
    model, instances, vocab = build()
    sevens, ones = (batches_of(instances, vocab, size) for size in (7, 1))
    model.confidence_threshold = median_first_head_threshold(model, sevens)
    model.packed = packed
    gpu = copy.deepcopy(model).to("cuda")
    gpu.layer_runner = {"type": "cuda"}
    with torch.inference_mode():
        expected = [model(**batch) for batch in sevens]
        assert len({int(head) for out in expected for head in out["exit_head"]}) > 1
        runs = [
            [gpu(**batch) for batch in _on("cuda", sevens)],
            [gpu(**batch) for batch in _on("cuda", ones)],
            list(gpu.forward_stream(_on("cuda", sevens), min_tokens=40)),
        ]
    want = {key: torch.cat([out[key] for out in expected]) for key in ("exit_head", "probs")}
    for run in runs:
        got = {key: torch.cat([out[key] for out in run]).cpu() for key in ("exit_head", "probs")}
        assert torch.equal(got["exit_head"], want["exit_head"])
        torch.testing.assert_close(got["probs"], want["probs"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_predicts_the_labels_of_the_cpu(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model, instances, vocab = build(confidence_threshold=1.0)
    batches = batches_of(instances, vocab, 8)
    gpu = copy.deepcopy(model).to("cuda")
    with torch.inference_mode():
        expected = torch.cat([model(**batch)["probs"] for batch in batches])
        gpu.layer_runner = {"type": "cuda", "precision": precision}
        assert gpu.layer_runner.calibration_key() == f"cuda_{precision}"
        got = torch.cat([gpu(**batch)["probs"] for batch in _on("cuda", batches)]).cpu()
    assert got.dtype == torch.float32
    assert torch.equal(got.argmax(dim=-1), expected.argmax(dim=-1))
    assert not torch.allclose(got, expected, atol=1e-6, rtol=0)  # it did run in half precision
