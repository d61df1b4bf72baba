import copy
import pickle

import torch

from early_exit.modules.tensor_cache import VersionedCache


def test_computed_once_and_again_when_a_tensor_changes_in_place_or_is_replaced():
    cache: VersionedCache[float] = VersionedCache()
    weight = torch.ones(3)
    calls = []

    def compute():
        calls.append(1)
        return float(weight.sum())

    assert cache.get((weight,), compute) == 3.0
    assert cache.get((weight,), compute) == 3.0 and len(calls) == 1
    weight.mul_(2.0)  # in place: an optimizer step, load_state_dict
    assert cache.get((weight,), compute) == 6.0 and len(calls) == 2
    weight = torch.zeros(3)  # replaced: .to(device)
    assert cache.get((weight,), compute) == 0.0 and len(calls) == 3


def test_copies_start_empty():
    cache: VersionedCache[torch.Tensor] = VersionedCache()
    tensor = torch.ones(2)
    cache.get((tensor,), lambda: tensor * 2)
    assert copy.deepcopy(cache)._value is None
    assert pickle.loads(pickle.dumps(cache))._value is None


def test_inference_tensors_have_no_version_but_are_cached():
    with torch.inference_mode():
        tensor = torch.ones(2)
    cache: VersionedCache[float] = VersionedCache()
    assert cache.get((tensor,), lambda: 1.0) == 1.0
    assert cache.get((tensor,), lambda: 2.0) == 1.0
