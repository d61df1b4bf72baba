import pytest
import torch

from early_exit.modules.exit_head import ExitHead


def _head_and_layers():
    torch.manual_seed(0)
    head = ExitHead(8, num_mixed_layers=3, num_labels=2, dropout=0.1).eval()
    with torch.no_grad():
        for parameter in head.scalar_mix.scalar_parameters:
            parameter.normal_()
        head.scalar_mix.gamma.fill_(1.7)
    return head, [torch.randn(4, 8) for _ in range(4)]  # one more layer than the head mixes


def _scalar_mix_reference(head, layers):
    return head.classifier(head.scalar_mix(layers[: head.num_mixed_layers]))


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_inference_mixing_equals_scalar_mix(mode):
    head, layers = _head_and_layers()
    context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with context:
        logits = head(layers)
    torch.testing.assert_close(logits, _scalar_mix_reference(head, layers), atol=1e-6, rtol=0)


def test_cached_mixing_weights_follow_parameter_changes():
    head, layers = _head_and_layers()
    with torch.no_grad():
        before = head(layers)
        first = head._mixing_weights_cache._value
        head(layers)
        assert head._mixing_weights_cache._value is first  # computed once
        head.scalar_mix.scalar_parameters[0].add_(3.0)  # in place, as an optimizer step
        changed = head(layers)
        assert not torch.allclose(changed, before, atol=1e-3)
        torch.testing.assert_close(changed, _scalar_mix_reference(head, layers), atol=1e-6, rtol=0)
        head.load_state_dict(_head_and_layers()[0].state_dict())
        torch.testing.assert_close(head(layers), before, atol=1e-6, rtol=0)


def test_training_and_gradients_use_scalar_mix_so_the_mixing_weights_learn():
    head, layers = _head_and_layers()
    head.train()
    head(layers).sum().backward()
    assert all(p.grad is not None for p in head.scalar_mix.scalar_parameters)
    assert head._mixing_weights_cache._value is None
    head.eval()
    head.zero_grad()
    head(layers).sum().backward()  # eval with gradients on (calibration, attribution)
    assert head.scalar_mix.gamma.grad is not None


def test_dropout_drops_features_in_training_only():
    head = ExitHead(64, num_mixed_layers=1, num_labels=2, dropout=0.5)
    layers = [torch.randn(16, 64)]
    torch.manual_seed(1)
    first, second = head(layers), head(layers)  # training: a different dropout mask each call
    assert not torch.allclose(first, second)
    head.eval()
    expected = head.classifier(layers[0])  # no dropout at all
    torch.testing.assert_close(head(layers), expected, atol=0, rtol=0)
