import pytest
import torch

from early_exit.metrics.exit_statistics import ExitStatistics


def test_counting_python_heads_equals_calling_with_a_tensor():
    heads = [0, 2, 2, 1, 0, 2, 2]
    from_tensor, from_ints = ExitStatistics([0, 3, 5], 6), ExitStatistics([0, 3, 5], 6)
    from_tensor(torch.tensor(heads[:3]))
    from_tensor(torch.tensor(heads[3:]))
    from_ints.count(heads[:3])
    from_ints.count(heads[3:])
    expected = from_tensor.get_metric()
    assert from_ints.get_metric() == expected
    assert expected["exit_fraction_layer_5"] == pytest.approx(4 / 7)
    assert expected["relative_compute"] == pytest.approx((2 * 1 + 4 + 4 * 6) / 7 / 6)


def test_both_kinds_of_count_add_up_and_reset_clears_them():
    metric = ExitStatistics([0, 1], 2)
    metric.count([0, 0, 1])
    metric(torch.tensor([1]))
    assert metric.get_metric()["exit_fraction_layer_0"] == pytest.approx(0.5)
    metric.count([1])  # still pending when reset
    assert metric.get_metric(reset=True)["exit_fraction_layer_1"] == pytest.approx(0.6)
    assert metric.get_metric()["relative_compute"] == 0.0
    metric.count([0])
    assert metric.get_metric()["exit_fraction_layer_0"] == 1.0


def test_a_head_that_does_not_exist_is_an_error():
    with pytest.raises(ValueError, match="exit head 2 is not one of the 2 heads"):
        ExitStatistics([0, 1], 2).count([0, 2])
