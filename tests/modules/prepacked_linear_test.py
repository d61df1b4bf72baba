import copy

import pytest
import torch

from early_exit.modules import LayerwiseTransformer
from early_exit.modules.prepacked_linear import ONEDNN_LINEAR, PrepackedLinear
from tests import TINY_BERT


def test_every_linear_of_the_layers_is_prepacked_with_the_same_state_dict():
    plain = LayerwiseTransformer(TINY_BERT, 4, keep_pooler=False, prepack_weights=False)
    encoder = LayerwiseTransformer(TINY_BERT, 4, keep_pooler=False)
    linears = [module for module in encoder.layers.modules() if isinstance(module, torch.nn.Linear)]
    assert linears and all(type(module) is PrepackedLinear for module in linears)
    assert all(module.prepack for module in linears)
    assert not any(
        module.prepack for module in plain.layers.modules() if hasattr(module, "prepack")
    )
    reference = plain.state_dict()
    assert list(encoder.state_dict()) == list(reference)
    assert all(torch.equal(value, reference[key]) for key, value in encoder.state_dict().items())


@pytest.mark.skipif(not ONEDNN_LINEAR, reason="this torch has no oneDNN")
def test_prepacked_linear_follows_the_weights_and_stays_out_of_the_state_dict():
    encoder = LayerwiseTransformer(TINY_BERT, 4, keep_pooler=False).eval()
    keys = set(encoder.state_dict())
    dense = encoder.layers[0].intermediate.dense
    reference = torch.nn.Linear(dense.in_features, dense.out_features)
    reference.load_state_dict(dense.state_dict())
    inputs = torch.randn(9, dense.in_features)  # (num_tokens, hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(dense(inputs), reference(inputs), atol=1e-5, rtol=0)
        first = dense._reordered._value
        dense(inputs)
        assert dense._reordered._value is first  # reordered once
        dense.weight.mul_(-2.0)  # as an optimizer step or load_state_dict changes it, in place
        reference.weight.mul_(-2.0)
        torch.testing.assert_close(dense(inputs), reference(inputs), atol=1e-5, rtol=0)
        assert dense._reordered._value is not first
    assert set(encoder.state_dict()) == keys
    copied = copy.deepcopy(encoder)  # the opaque oneDNN weights are not part of the module
    assert copied.layers[0].intermediate.dense._reordered._value is None
    with torch.no_grad():
        torch.testing.assert_close(
            copied.layers[0].intermediate.dense(inputs), reference(inputs), atol=1e-5, rtol=0
        )


def test_with_gradients_or_prepacking_off_it_is_torch_linear():
    linear = PrepackedLinear.from_linear(torch.nn.Linear(6, 4))
    inputs = torch.randn(3, 6)
    output = linear(inputs)  # gradients on: torch's linear, so that they flow
    output.sum().backward()
    assert linear.weight.grad is not None
    assert linear._reordered._value is None
    linear.prepack = False
    with torch.no_grad():
        torch.testing.assert_close(
            linear(inputs), torch.nn.functional.linear(inputs, linear.weight, linear.bias)
        )
    assert linear._reordered._value is None


def test_from_linear_shares_the_parameters():
    original = torch.nn.Linear(5, 2)
    wrapped = PrepackedLinear.from_linear(original)
    assert wrapped.weight is original.weight and wrapped.bias is original.bias
    no_bias = PrepackedLinear.from_linear(torch.nn.Linear(5, 2, bias=False))
    assert no_bias.bias is None
