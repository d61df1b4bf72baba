import json
import os
import tarfile

import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.calibration.calibrated_archive import (
    GUARANTEE_NAME,
    store_temperatures_in_weights,
    write_calibrated_archive,
)


def _state():
    return {"temperatures": torch.ones(3), "heads.0.weight": torch.randn(2, 4)}


def test_store_temperatures_replaces_only_the_temperatures(tmp_path):
    state = _state()
    weights = tmp_path / "best.th"
    torch.save(state, weights)
    store_temperatures_in_weights(weights, [0.5, 2.0, 1.25])
    stored = torch.load(weights)
    assert stored["temperatures"].tolist() == [0.5, 2.0, 1.25]
    assert stored["temperatures"].dtype == torch.float
    assert torch.equal(stored["heads.0.weight"], state["heads.0.weight"])
    assert sorted(os.listdir(tmp_path)) == ["best.th"]  # no temporary file left behind


def test_store_temperatures_leaves_a_hard_linked_checkpoint_alone(tmp_path):
    # The trainer hard-links best.th to its latest checkpoint when it can.
    checkpoint = tmp_path / "model_state_e1_b0.th"
    torch.save(_state(), checkpoint)
    weights = tmp_path / "best.th"
    os.link(checkpoint, weights)
    store_temperatures_in_weights(weights, [0.5, 2.0, 1.25])
    assert torch.load(checkpoint)["temperatures"].tolist() == [1.0, 1.0, 1.0]
    assert torch.load(weights)["temperatures"].tolist() == [0.5, 2.0, 1.25]


@pytest.mark.parametrize("state", [{"weight": torch.ones(2)}, {"temperatures": torch.ones(2)}])
def test_store_temperatures_rejects_other_states(tmp_path, state):
    weights = tmp_path / "weights.th"
    torch.save(state, weights)
    with pytest.raises(ConfigurationError, match="early_exit_classifier"):
        store_temperatures_in_weights(weights, [0.5, 2.0, 1.25])


def test_calibrated_archive_gets_the_exit_policy_in_place_of_the_shorthand(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    torch.save(_state(), content / "weights.th")
    config = {"model": {"type": "early_exit_classifier", "confidence_threshold": 0.9}}
    (content / "config.json").write_text(json.dumps(config))
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("weights.th", "config.json"):
            tar.add(content / name, arcname=name)
    output = tmp_path / "out.tar.gz"
    policy = {"type": "entropy", "threshold": 0.2}
    guarantee = {"epsilon": 0.01, "delta": 0.05}
    write_calibrated_archive(archive, output, [1.0, 2.0, 3.0], policy, guarantee)
    with tarfile.open(output) as tar:
        model = json.load(tar.extractfile("config.json"))["model"]
        stored = json.load(tar.extractfile(GUARANTEE_NAME))
    assert model["exit_policy"] == policy and "confidence_threshold" not in model
    assert model["temperatures"] == [1.0, 2.0, 3.0]
    assert stored == guarantee
