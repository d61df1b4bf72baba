"""
Every exit policy through the one inference engine: a row's exit and probabilities do not depend on
the rows it runs with (batch size 1, batches of 5, the whole data packed or padded, carried across
batches), and equal the policy's decisions on every head's outputs (what calibration and the sweep
use).
"""

from typing import Dict, List

import pytest
import torch

from early_exit.modules.exit_policies import (
    ConfidentPatiencePolicy,
    EntropyPolicy,
    ExitPolicy,
    MaxProbabilityPolicy,
    PatiencePolicy,
)
from early_exit.modules.exit_policies.entropy import normalised_entropy
from tests.models.batch_stream_test import (
    assert_same_outputs,
    batches_of,
    build,
    threshold_in_a_gap,
)


def _every_head(model, batches) -> torch.Tensor:
    """`(num_rows, num_heads, num_labels)`: every head's temperature-scaled probabilities."""
    model.run_all_heads = True
    try:
        with torch.inference_mode():
            return torch.cat([model(**batch)["head_probs"] for batch in batches])
    finally:
        model.run_all_heads = False


def _vary_the_heads(model, batches) -> None:
    """
    The untrained heads answer every row alike; make them answer as trained ones do: related
    directions (so that heads agree now and then), each centred on the data (so that answers and
    confidences vary from row to row).
    """
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        first = model.heads[0].classifier.weight.clone()  # (num_labels, hidden_size)
        for head in model.heads:
            noise = torch.randn(first.shape, generator=generator) * first.std()
            head.classifier.weight.copy_(3 * (first + noise))
            head.classifier.bias.zero_()
        model.run_all_heads = True
        logits = torch.cat([model(**batch)["head_logits"] for batch in batches])
        model.run_all_heads = False
        for index, head in enumerate(model.heads):
            head.classifier.bias.sub_(logits[:, index].median(dim=0).values)


def _policies(head_probs: torch.Tensor) -> Dict[str, ExitPolicy]:
    """One policy of each type, with parameters that make the tiny model's exits mixed."""
    confidence = head_probs[:, 0].max(dim=-1).values
    entropy = normalised_entropy(head_probs[:, 0])
    return {
        "max_probability": MaxProbabilityPolicy(threshold_in_a_gap(confidence, 0.5)),
        "entropy": EntropyPolicy(threshold_in_a_gap(entropy, 0.5)),
        "patience": PatiencePolicy(2),
        "confident_patience": ConfidentPatiencePolicy(threshold_in_a_gap(confidence, 0.3), 2),
    }


POLICY_TYPES = ["max_probability", "entropy", "patience", "confident_patience"]


def _concatenated(outputs: List[Dict]) -> Dict[str, torch.Tensor]:
    return {key: torch.cat([output[key] for output in outputs]) for key in outputs[0]}


class TestEveryPolicyOnTheEngine:
    @classmethod
    def setup_class(cls):
        cls.model, cls.instances, cls.vocab = build()
        cls.whole = batches_of(cls.instances, cls.vocab, len(cls.instances))
        _vary_the_heads(cls.model, cls.whole)
        cls.singles = batches_of(cls.instances, cls.vocab, 1)
        cls.fives = batches_of(cls.instances, cls.vocab, 5)
        cls.head_probs = _every_head(cls.model, cls.whole)
        cls.policies = _policies(cls.head_probs)

    def _run(self, batches, packed: bool = True) -> Dict[str, torch.Tensor]:
        self.model.packed = packed
        try:
            with torch.inference_mode():
                return _concatenated([self.model(**batch) for batch in batches])
        finally:
            self.model.packed = True

    @pytest.mark.parametrize("policy_type", POLICY_TYPES)
    def test_batch_size_one_five_whole_padded_and_carried_agree(self, policy_type):
        self.model.exit_policy = self.policies[policy_type]
        reference = self._run(self.whole)
        exits = reference["exit_head"]
        assert len(set(exits.tolist())) > 1, "the rows exit at different heads"
        runs = [self._run(self.singles), self._run(self.fives), self._run(self.whole, False)]
        with torch.inference_mode():
            runs.append(_concatenated(list(self.model.forward_stream(self.fives, min_tokens=60))))
        for run in runs:
            assert_same_outputs([reference], [run])

    @pytest.mark.parametrize("policy_type", POLICY_TYPES)
    def test_exits_equal_the_policy_on_every_heads_outputs(self, policy_type):
        policy = self.policies[policy_type]
        self.model.exit_policy = policy
        early = self._run(self.fives)
        assert early["exit_head"].tolist() == policy.exit_heads(self.head_probs).tolist()
        self.model.run_all_heads = True
        try:
            every_head = self._run(self.fives)
        finally:
            self.model.run_all_heads = False
        assert torch.equal(every_head["exit_head"], early["exit_head"])
        torch.testing.assert_close(every_head["probs"], early["probs"], atol=1e-5, rtol=0)

    def test_a_policy_that_never_exits_early_runs_only_the_last_head(self):
        calls = []
        hooks = [
            head.register_forward_hook(lambda *args: calls.append(1)) for head in self.model.heads
        ]
        try:
            for policy in (PatiencePolicy(len(self.model.heads)), EntropyPolicy(0.0)):
                self.model.exit_policy = policy
                calls.clear()
                output = self._run(self.fives)
                assert set(output["exit_head"].tolist()) == {len(self.model.heads) - 1}
                assert len(calls) == len(self.fives)  # the last head, once a batch
        finally:
            for hook in hooks:
                hook.remove()
