import math

import pytest
import torch

from early_exit.modules.exit_policies import EntropyPolicy
from early_exit.modules.exit_policies.entropy import normalised_entropy


@pytest.mark.parametrize("num_labels", [2, 40])
def test_normalised_entropy_is_zero_for_one_hot_and_one_for_uniform(num_labels):
    one_hot = torch.zeros(1, num_labels)
    one_hot[0, 3 % num_labels] = 1.0
    uniform = torch.full((1, num_labels), 1.0 / num_labels)
    assert float(normalised_entropy(one_hot)) == 0.0
    assert float(normalised_entropy(uniform)) == pytest.approx(1.0, abs=1e-6)
    probs = torch.softmax(torch.randn(7, num_labels), dim=-1)
    expected = -(probs * probs.log()).sum(dim=-1) / math.log(num_labels)
    torch.testing.assert_close(normalised_entropy(probs), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_exits_at_and_below_the_threshold_in_any_precision(dtype):
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.99, 0.01]], dtype=dtype)
    entropy = normalised_entropy(probs)  # float32 even for half-precision heads
    assert entropy.dtype == torch.float32
    at = float(entropy[0])  # exactly the first row's entropy: a tie exits
    decision = EntropyPolicy(at).decide(probs, None)
    assert decision.exits.tolist() == [True, False, True] and decision.count == 2
    one_row = EntropyPolicy(at).decide(probs[:1], None)
    assert one_row.count == 1


def test_zero_never_exits_and_one_always_does():
    one_hot = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert EntropyPolicy(0.0).decide(one_hot, None).count == 0
    assert EntropyPolicy(0.0).never_exits_early(3)
    assert EntropyPolicy(1.0).decide(one_hot, None).count == 2  # even the uniform row
    head_probs = one_hot.unsqueeze(1).expand(2, 3, 2)
    assert EntropyPolicy(0.0).exit_heads(head_probs).tolist() == [2, 2]
    assert EntropyPolicy(1.0).exit_heads(head_probs).tolist() == [0, 0]


def test_one_threshold_means_the_same_for_2_and_40_labels():
    # Half of the probability on one label, the rest spread evenly: normalised, 40 labels are less
    # certain than 2, as they should be, but both sit in [0, 1].
    two = torch.tensor([[0.5, 0.5]])
    forty = torch.full((1, 40), 0.5 / 39)
    forty[0, 0] = 0.5
    assert 0.0 < float(normalised_entropy(forty)) < float(normalised_entropy(two)) <= 1.0


def test_sweep_grid_runs_from_never_to_always():
    grid = [policy.threshold for policy in EntropyPolicy(0.0).sweep_grid(4)]
    assert grid[0] == 0.0 and grid[-1] == 1.0 and grid == sorted(grid)
