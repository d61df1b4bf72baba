"""
The engine on a CUDA device, against the CPU: every policy's exits equal and probabilities within
float noise, one batch, batch size 1 and carried. Skipped without a CUDA device
(`bench/gpu_check.sh` runs it where there is one).
"""

import copy

import pytest
import torch

from tests.models.batch_stream_test import batches_of, build
from tests.models.inference_engine_test import (
    POLICY_TYPES,
    _concatenated,
    _every_head,
    _policies,
    _vary_the_heads,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _on(device, batches):
    return [
        {
            "tokens": {
                "tokens": {key: value.to(device) for key, value in b["tokens"]["tokens"].items()}
            }
        }
        for b in batches
    ]


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_cuda_decides_as_the_cpu(policy_type):
    model, instances, vocab = build()
    whole = batches_of(instances, vocab, len(instances))
    _vary_the_heads(model, whole)
    policy = _policies(_every_head(model, whole))[policy_type]
    model.exit_policy = policy
    fives = batches_of(instances, vocab, 5)
    gpu = copy.deepcopy(model).to("cuda")
    with torch.inference_mode():
        expected = _concatenated([model(**batch) for batch in fives])
        for batches in (_on("cuda", fives), _on("cuda", batches_of(instances, vocab, 1))):
            got = _concatenated([gpu(**batch) for batch in batches])
            assert got["exit_head"].device.type == "cuda"
            assert torch.equal(got["exit_head"].cpu(), expected["exit_head"])
            torch.testing.assert_close(got["probs"].cpu(), expected["probs"], atol=1e-4, rtol=0)
        carried = _concatenated(list(gpu.forward_stream(_on("cuda", fives), min_tokens=60)))
        assert torch.equal(carried["exit_head"].cpu(), expected["exit_head"])
