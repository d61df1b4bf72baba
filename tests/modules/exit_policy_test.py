import pytest
import torch

from early_exit.modules.exit_policy import exits_at_head, one_row_exits, scaled_probabilities

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
def test_one_row_rule_takes_the_tensor_rules_decision_at_and_around_the_threshold(threshold, dtype):
    for probs in _rows_around(threshold, dtype):
        expected = bool(exits_at_head(probs, threshold, is_last_head=False)[0])
        assert one_row_exits(probs, threshold) is expected


def test_the_one_row_rule_does_not_compare_in_double():
    # float32(0.7) is below 0.7: the tensor rule exits (it compares in float32), a comparison of
    # the probability with the unrounded threshold would not.
    probs = torch.tensor([[0.7, 0.3]])
    assert float(probs.max()) < 0.7
    assert bool(exits_at_head(probs, 0.7, is_last_head=False)[0])
    assert one_row_exits(probs, 0.7)


def test_threshold_one_never_exits_even_where_a_probability_is_one():
    assert not one_row_exits(torch.tensor([[1.0, 0.0]]), 1.0)
    assert one_row_exits(torch.tensor([[1.0, 0.0]]), 0.9999)


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
