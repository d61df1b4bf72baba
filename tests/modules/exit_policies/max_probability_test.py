import pytest
import torch

from early_exit.modules.exit_policies import MaxProbabilityPolicy, scaled_probabilities

# Thresholds that float32 rounds up (0.1, 0.3), down (0.7, 0.42) or keeps (0.5), and the ends.
THRESHOLDS = [0.0, 0.1, 0.3, 0.42, 0.5, 0.7, 0.84, 0.9999, 1.0]


def _rows_around(threshold: float, dtype: torch.dtype):
    """One-row probabilities whose maximum is the threshold in `dtype` and its two neighbours."""
    value = torch.tensor(threshold, dtype=dtype)
    for step in (value, torch.nextafter(value, torch.tensor(2.0, dtype=dtype))):
        yield torch.stack([step, torch.zeros((), dtype=dtype)]).view(1, 2)
    below = torch.nextafter(value, torch.tensor(-1.0, dtype=dtype))
    yield torch.stack([torch.zeros((), dtype=dtype), below]).view(1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_one_row_takes_the_tensor_rules_decision_at_and_around_the_threshold(threshold, dtype):
    policy = MaxProbabilityPolicy(threshold)
    rows = torch.cat(list(_rows_around(threshold, dtype)))  # (3, 2)
    batch = policy.decide(rows, None)  # the tensor rule, on three rows at once
    for index, row in enumerate(_rows_around(threshold, dtype)):
        expected = bool(batch.exits[index]) if batch.exits is not None else batch.count == 3
        assert policy.decide(row, None).count == int(expected)
        if 0.0 < threshold < 1.0:  # at and above the threshold (in `dtype`) exits; below does not
            assert expected == (index < 2)


def test_the_one_row_rule_does_not_compare_in_double():
    # float32(0.7) is below 0.7: the tensor rule exits (it compares in float32), a comparison of
    # the probability with the unrounded threshold would not.
    probs = torch.tensor([[0.7, 0.3]])
    assert float(probs.max()) < 0.7
    assert MaxProbabilityPolicy(0.7).decide(probs, None).count == 1
    assert MaxProbabilityPolicy(0.7).decide(probs.expand(2, 2), None).count == 2


def test_threshold_one_never_exits_even_where_a_probability_is_one():
    one_hot = torch.tensor([[1.0, 0.0]])
    assert MaxProbabilityPolicy(1.0).decide(one_hot, None).count == 0
    assert MaxProbabilityPolicy(1.0).never_exits_early(4)
    assert MaxProbabilityPolicy(0.9999).decide(one_hot, None).count == 1
    head_probs = one_hot.expand(3, 2).unsqueeze(0)  # (1, 3 heads, 2 labels)
    assert MaxProbabilityPolicy(1.0).exit_heads(head_probs).tolist() == [2]
    assert MaxProbabilityPolicy(0.0).exit_heads(head_probs).tolist() == [0]


@pytest.mark.parametrize("num_labels", [2, 40])
def test_exit_heads_is_the_first_confident_head(num_labels):
    torch.manual_seed(0)
    head_probs = torch.softmax(torch.randn(50, 4, num_labels) * 3, dim=-1)
    threshold = float(head_probs.max(dim=-1).values.median())
    exits = MaxProbabilityPolicy(threshold).exit_heads(head_probs).tolist()
    for row, head in enumerate(exits):
        confident = [float(p.max()) >= threshold for p in head_probs[row, :3]] + [True]
        assert head == confident.index(True)
    assert len(set(exits)) > 1


def test_sweep_grid_runs_from_the_full_model_to_the_first_head():
    grid = MaxProbabilityPolicy(1.0).sweep_grid(4)
    thresholds = [policy.threshold for policy in grid]
    assert thresholds[0] == 1.0 and thresholds[-1] == 0.0
    assert thresholds == sorted(thresholds, reverse=True)
    assert 0.9999 in thresholds and 0.42 in thresholds


def test_a_float_temperature_gives_the_same_probabilities_as_its_tensor():
    logits = torch.randn(64, 5)
    temperatures = torch.tensor([0.37, 1.7, 2.3456])
    for head, temperature in enumerate(temperatures.tolist()):
        assert torch.equal(
            scaled_probabilities(logits, temperature),
            scaled_probabilities(logits, temperatures[head]),
        )
    every_head = scaled_probabilities(logits.unsqueeze(1).expand(64, 3, 5), temperatures)
    assert torch.equal(every_head[:, 1], scaled_probabilities(logits, 1.7))


def test_one_row_with_gradients_on_decides_without_a_warning(recwarn):
    logits = torch.tensor([[2.0, 0.0]], requires_grad=True)
    probs = torch.softmax(logits, dim=-1)  # (1, 2), part of the graph
    assert MaxProbabilityPolicy(0.8).decide(probs, None).count == 1
    assert MaxProbabilityPolicy(0.9).decide(probs, None).count == 0
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]
