import logging
import math
from types import SimpleNamespace

import numpy
import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.calibration import temperature_scaling
from early_exit.calibration.temperature_scaling import (
    TemperatureFit,
    expected_calibration_error,
    fit_head_temperatures,
    fit_temperature,
    negative_log_likelihood,
)
from early_exit.models.head_outputs import HeadOutputs
from early_exit.metrics.expected_calibration_error import ExpectedCalibrationError


def calibrated_logits(num_instances: int = 5000, num_labels: int = 3, seed: int = 0):
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(num_instances, num_labels, generator=generator)
    labels = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
    return logits, labels


def assert_sane(fit: TemperatureFit, low: float = 0.05, high: float = 20.0) -> None:
    values = [fit.temperature, fit.nll_before, fit.nll_after, fit.ece_before, fit.ece_after]
    assert all(math.isfinite(value) for value in values), fit
    assert low <= fit.temperature <= high + 1e-6
    assert fit.nll_after <= fit.nll_before


def test_over_confident_logits_get_a_temperature_above_one():
    logits, labels = calibrated_logits()
    fit = fit_temperature(3.0 * logits, labels)
    assert_sane(fit)
    assert fit.temperature > 1.0
    assert fit.temperature == pytest.approx(3.0, rel=0.1)
    assert fit.nll_after < fit.nll_before
    assert fit.ece_after < fit.ece_before
    assert fit.num_instances == 5000
    assert fit.warning is None


def test_under_confident_logits_get_a_temperature_below_one():
    logits, labels = calibrated_logits(seed=1)
    fit = fit_temperature(logits / 3.0, labels)
    assert_sane(fit)
    assert fit.temperature < 1.0
    assert fit.temperature == pytest.approx(1 / 3.0, rel=0.1)
    assert fit.nll_after < fit.nll_before
    assert fit.ece_after < fit.ece_before


def test_calibrated_logits_keep_a_temperature_close_to_one():
    logits, labels = calibrated_logits(seed=2)
    fit = fit_temperature(logits, labels)
    assert_sane(fit)
    assert fit.temperature == pytest.approx(1.0, abs=0.08)
    assert fit.nll_after == pytest.approx(fit.nll_before, abs=1e-3)


def test_temperature_is_float32_and_reported_values_use_it():
    logits, labels = calibrated_logits(num_instances=500, seed=3)
    fit = fit_temperature(2.0 * logits, labels)
    assert fit.temperature == float(numpy.float32(fit.temperature))
    stored = float(torch.tensor([fit.temperature], dtype=torch.float)[0])
    assert stored == fit.temperature
    assert fit.nll_after == negative_log_likelihood(2.0 * logits, labels, fit.temperature)


def test_separable_data_stop_at_the_lower_bound_with_a_warning(caplog):
    logits, _ = calibrated_logits(num_instances=200, seed=4)
    labels = logits.argmax(dim=-1)  # every prediction is correct
    with caplog.at_level(logging.WARNING):
        fit = fit_temperature(logits, labels, name="head 0 (layer 0)")
    assert_sane(fit)
    assert fit.temperature == pytest.approx(0.05)
    assert fit.temperature > 0
    assert "lower bound" in fit.warning
    assert any(
        "head 0 (layer 0)" in record.getMessage() and "lower bound" in record.getMessage()
        for record in caplog.records
    )


def test_the_range_is_configurable():
    logits, _ = calibrated_logits(num_instances=200, seed=5)
    fit = fit_temperature(logits, logits.argmax(dim=-1), min_temperature=0.25, max_temperature=4)
    assert fit.temperature == pytest.approx(0.25)
    assert "lower bound" in fit.warning


def test_confidently_wrong_predictions_stop_at_the_upper_bound(caplog):
    logits, _ = calibrated_logits(num_instances=200, seed=6)
    labels = logits.argmin(dim=-1)  # every prediction is wrong
    with caplog.at_level(logging.WARNING):
        fit = fit_temperature(logits, labels)
    assert_sane(fit)
    assert fit.temperature == pytest.approx(20.0)
    assert "upper bound" in fit.warning
    assert "upper bound" in caplog.text


@pytest.mark.parametrize(
    "logits, labels",
    [
        ([[2.0, -1.0]], [0]),  # a single instance, predicted correctly
        ([[2.0, -1.0]], [1]),  # a single instance, predicted wrongly
        ([[2.0, -1.0], [0.5, 0.1], [-0.3, 0.2], [1.0, 1.0]], [0, 0, 0, 0]),  # a single class
        ([[2.0, -1.0, 0.0], [0.1, 0.5, 0.0], [0.0, 0.0, 3.0]], [0, 1, 2]),  # all correct
        ([[0.0, 0.0, 0.0]] * 5, [0, 1, 2, 0, 1]),  # constant logits: T changes nothing
        ([[1e4, -1e4]] * 3 + [[-1e4, 1e4]], [0, 0, 0, 0]),  # huge logits
    ],
)
def test_degenerate_data_give_a_warning_and_sane_temperatures(logits, labels, caplog):
    with caplog.at_level(logging.WARNING):
        fit = fit_temperature(torch.tensor(logits), torch.tensor(labels))
    assert_sane(fit)
    assert fit.warning
    assert fit.warning in caplog.text


def test_constant_logits_keep_temperature_one():
    fit = fit_temperature(torch.zeros(100, 2), torch.arange(100) % 2)
    assert fit.temperature == 1.0
    assert "keeping T = 1" in fit.warning


def test_never_worse_than_temperature_one_when_one_is_the_optimum():
    # Logits (0, log 3) give P(class 1) = 0.75, and exactly 3 in 4 labels are 1: the NLL is
    # minimal at T = 1 exactly, so any other temperature the search returns is (a little) worse.
    logits = torch.tensor([[0.0, math.log(3.0)]]).repeat(400, 1)
    labels = torch.tensor([1, 1, 1, 0]).repeat(100)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == 1.0
    assert fit.nll_after == fit.nll_before == negative_log_likelihood(logits, labels, 1.0)
    assert "keeping T = 1" in fit.warning


def test_never_worse_than_temperature_one_when_the_search_goes_wrong(monkeypatch):
    logits, labels = calibrated_logits(num_instances=1000, seed=7)

    def bad_search(function, bounds, method, options):
        return SimpleNamespace(x=math.log(15.0))  # far from the optimum (about 1)

    monkeypatch.setattr(temperature_scaling, "minimize_scalar", bad_search)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == 1.0
    assert fit.nll_after == fit.nll_before
    assert "keeping T = 1" in fit.warning


@pytest.mark.parametrize("low, high", [(2.0, 20.0), (0.0, 20.0), (0.05, 0.9), (0.5, math.inf)])
def test_a_range_without_one_or_zero_is_rejected(low, high):
    logits, labels = calibrated_logits(num_instances=10)
    with pytest.raises(ConfigurationError, match="temperature range"):
        fit_temperature(logits, labels, min_temperature=low, max_temperature=high)


def test_bad_input_raises_value_errors():
    with pytest.raises(ValueError, match="no instances"):
        fit_temperature(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels must be in"):
        fit_temperature(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="expected logits"):
        fit_temperature(torch.zeros(2, 2), torch.tensor([0, 1, 0]))


def test_fit_head_temperatures_fits_each_head():
    logits, labels = calibrated_logits(num_instances=2000, seed=8)
    head_logits = torch.stack([3.0 * logits, logits / 2.0], dim=1)  # (2000, 2 heads, 3 labels)
    fits = fit_head_temperatures(HeadOutputs(head_logits, labels), exit_layers=[2, 5])
    assert len(fits) == 2
    assert fits[0].temperature > 1.0 > fits[1].temperature
    single = fit_temperature(head_logits[:, 1], labels)
    assert fits[1] == single


def test_fit_head_temperatures_needs_labels():
    with pytest.raises(ValueError, match="gold labels"):
        fit_head_temperatures(HeadOutputs(torch.zeros(3, 2, 2), None))


def test_expected_calibration_error_agrees_with_the_metric():
    logits, labels = calibrated_logits(num_instances=300, seed=9)
    probabilities = torch.softmax(2.0 * logits, dim=-1)
    metric = ExpectedCalibrationError()
    metric(probabilities, labels)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(
        metric.get_metric(), abs=1e-6
    )
