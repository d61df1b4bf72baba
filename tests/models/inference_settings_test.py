import pytest
import torch
from allennlp.common.checks import ConfigurationError

from early_exit.models.inference_settings import InferenceSettings
from early_exit.modules.exit_policies import MaxProbabilityPolicy, PatiencePolicy
from tests.models.batch_stream_test import batches_of, build, median_first_head_threshold


def test_settings_are_immutable_and_checked():
    settings = InferenceSettings(MaxProbabilityPolicy(0.9))
    with pytest.raises(Exception):
        settings.packed = False  # frozen
    assert settings.replace(packed=False).packed is False and settings.packed is True
    with pytest.raises(ConfigurationError, match="exit_policy must be an ExitPolicy"):
        InferenceSettings(0.9)
    with pytest.raises(ConfigurationError, match="run_all_heads must be true or false"):
        settings.replace(run_all_heads="yes")


def test_forward_with_settings_leaves_the_model_as_it_was():
    model, instances, vocab = build()
    batches = batches_of(instances, vocab, 8)
    threshold = median_first_head_threshold(model, batches)
    own = model.inference_settings()
    given = own.replace(exit_policy=MaxProbabilityPolicy(threshold), run_all_heads=True)
    with torch.inference_mode():
        outputs = model(**batches[0], settings=given)
        streamed = list(
            model.forward_stream(batches, settings=own.replace(exit_policy=PatiencePolicy(2)))
        )
    assert "head_probs" in outputs
    assert len(streamed) == len(batches)
    assert model.inference_settings() == own
    assert model.exit_policy == MaxProbabilityPolicy(1.0) and not model.run_all_heads
