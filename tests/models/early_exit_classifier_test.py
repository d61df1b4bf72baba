import copy
from typing import Dict

import pytest
import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.testing import ModelTestCase
from allennlp.data import Batch, Vocabulary
from allennlp.models import load_archive

from early_exit.models import EarlyExitClassifier
from early_exit.modules.padded_rows import PaddedRows
from tests import FIXTURES_ROOT, TINY_BERT, run_allennlp

CONFIG = FIXTURES_ROOT / "early_exit_classifier" / "experiment.jsonnet"
DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


def _count_layer_tokens(model: EarlyExitClassifier) -> Dict[int, int]:
    """
    How many token vectors each encoder layer's last layer norm (after its feed-forward block)
    computed, summed over calls: every way of running the layers (packed, padded, in sub-batches)
    goes through it, and hooking it leaves the layer's linear layers on their fast path.
    """
    tokens = {index: 0 for index in range(len(model.encoder.layers))}

    def hook(index):
        def count(module, inputs, output):
            tokens[index] += output.numel() // output.shape[-1]

        return count

    for index, layer in enumerate(model.encoder.layers):
        layer.output.LayerNorm.register_forward_hook(hook(index))
    return tokens


class TestEarlyExitClassifier(ModelTestCase):
    def setup_method(self):
        super().setup_method()
        self.set_up_model(CONFIG, DATA)
        self.model.eval()

    def _tensors(self, instances):
        batch = Batch(copy.deepcopy(instances))
        batch.index_instances(self.vocab)
        return batch.as_tensor_dict()

    def _threshold_between_heads(self) -> float:
        """A threshold at which some instances exit at the first head and some do not."""
        self.model.run_all_heads = True
        with torch.no_grad():
            output = self.model(**self._tensors(self.instances))
        self.model.run_all_heads = False
        confidence = output["head_probs"][:, 0].max(dim=-1).values.sort().values
        middle = len(confidence) // 2
        assert float(confidence[middle - 1]) < float(confidence[middle])
        # Half-way between two instances' confidences: no instance sits on the threshold.
        return float(confidence[middle - 1] + confidence[middle]) / 2

    def test_model_can_train_save_and_load(self):
        # Every trainable parameter (mixing weights included) must receive a gradient.
        self.ensure_model_can_train_save_and_load(self.param_file)

    def test_batch_predictions_are_consistent(self):
        self.model.confidence_threshold = self._threshold_between_heads()
        self.ensure_batch_predictions_are_consistent()

    def test_layers_above_last_exit_are_removed_from_module_and_archive(self):
        model = EarlyExitClassifier(self.vocab, TINY_BERT, exit_layers=[0, 2])
        assert len(model.encoder.layers) == 3
        assert model.full_depth == 4
        state = model.state_dict()
        assert any(".layer.2." in name for name in state)
        assert not any(".layer.3." in name for name in state)

    def test_threshold_zero_exits_at_first_head_and_never_calls_later_layers(self):
        tokens = _count_layer_tokens(self.model)
        self.model.confidence_threshold = 0.0
        tensors = self._tensors(self.instances)
        with torch.no_grad():
            output = self.model(**tensors)
        assert output["exit_layer"].tolist() == [0] * len(self.instances)
        assert output["exit_head"].tolist() == [0] * len(self.instances)
        # Packed (the default for BERT): layer 0 computes the real tokens only; no later layer runs.
        assert tokens[0] == int(tensors["tokens"]["tokens"]["mask"].sum())
        assert all(tokens[index] == 0 for index in range(1, len(tokens)))
        metrics = self.model.get_metrics(reset=True)
        assert metrics["exit_fraction_layer_0"] == 1.0
        assert metrics["relative_compute"] == pytest.approx(1 / 4)

    def test_threshold_one_equals_full_encoder_and_last_head(self):
        tensors = self._tensors(self.instances)
        self.model.confidence_threshold = 1.0
        with torch.no_grad():
            output = self.model(**tensors)
            # The reference: the Hugging Face encoder itself, all layers, then the last head.
            indexed = tensors["tokens"]["tokens"]
            hf_output = self.model.encoder.transformer(
                input_ids=indexed["token_ids"],
                attention_mask=indexed["mask"].long(),
                token_type_ids=indexed["type_ids"],
                output_hidden_states=True,
            )
            mask = indexed["mask"].bool()
            rows = torch.arange(mask.shape[0])
            pooled = [
                self.model.engine.pool(PaddedRows(rows, hidden, mask))
                for hidden in hf_output.hidden_states[1:]
            ]
            expected = self.model.heads[-1](pooled)
        assert output["exit_layer"].tolist() == [3] * len(self.instances)
        torch.testing.assert_close(output["logits"], expected, atol=1e-5, rtol=1e-5)

    def test_prediction_at_threshold_one_runs_only_the_last_head_with_the_same_output(self):
        tensors = self._tensors(self.instances)
        del tensors["label"]
        rows = [0] * len(self.model.heads)  # rows each head classified
        for index, head in enumerate(self.model.heads):
            head.register_forward_hook(
                lambda module, inputs, output, index=index: rows.__setitem__(
                    index, rows[index] + output.shape[0]
                )
            )
        self.model.confidence_threshold = 1.0
        with torch.no_grad():
            fast = self.model(**tensors)
            assert rows == [0, 0, 16]
            self.model.run_all_heads = True
            reference = self.model(**tensors)
        assert fast["exit_layer"].tolist() == reference["exit_layer"].tolist() == [3] * 16
        torch.testing.assert_close(fast["logits"], reference["logits"], atol=1e-6, rtol=0)
        torch.testing.assert_close(fast["probs"], reference["probs"], atol=1e-6, rtol=0)
        assert "head_probs" not in fast

    def test_probabilities_round_to_one_still_no_early_exit_at_threshold_one(self):
        self.model.set_temperatures([1e-6, 1e-6, 1.0])  # first heads' probabilities become 1.0
        self.model.confidence_threshold = 1.0
        with torch.no_grad():
            output = self.model(**self._tensors(self.instances))
        assert output["exit_layer"].tolist() == [3] * len(self.instances)

    def test_mixed_exits_in_a_batch_equal_one_at_a_time(self):
        self.model.confidence_threshold = self._threshold_between_heads()
        with torch.no_grad():
            batched = self.model(**self._tensors(self.instances))
            singles = [self.model(**self._tensors([instance])) for instance in self.instances]
        assert len(set(batched["exit_layer"].tolist())) > 1
        for index, single in enumerate(singles):
            assert int(single["exit_layer"][0]) == int(batched["exit_layer"][index])
            torch.testing.assert_close(
                single["probs"][0], batched["probs"][index], atol=1e-5, rtol=0
            )
            assert int(single["probs"][0].argmax()) == int(batched["probs"][index].argmax())

    def test_early_exit_decisions_match_all_heads_run(self):
        self.model.confidence_threshold = self._threshold_between_heads()
        tensors = self._tensors(self.instances)
        with torch.no_grad():
            early = self.model(**tensors)
            self.model.run_all_heads = True
            full = self.model(**tensors)
        assert early["exit_head"].tolist() == full["exit_head"].tolist()
        torch.testing.assert_close(early["probs"], full["probs"], atol=1e-5, rtol=0)
        assert full["head_probs"].shape == (len(self.instances), 3, self.model.num_labels)

    def test_training_loss_is_weighted_sum_of_head_losses(self):
        tensors = self._tensors(self.instances)
        model = EarlyExitClassifier(
            self.vocab, TINY_BERT, exit_layers=[0, 1, 3], loss_weights=[0.5, 0.0, 2.0], dropout=0.0
        )
        model.train()
        output = model(**tensors)
        labels = tensors["label"]
        expected = sum(
            weight * torch.nn.functional.cross_entropy(output["head_logits"][:, k], labels)
            for k, weight in enumerate([0.5, 0.0, 2.0])
        )
        torch.testing.assert_close(output["loss"], expected)

    def test_self_distillation_adds_kl_to_the_last_head(self):
        tensors = self._tensors(self.instances)
        torch.manual_seed(0)
        plain = EarlyExitClassifier(self.vocab, TINY_BERT, exit_layers=[0, 1, 3], dropout=0.0)
        distilled = EarlyExitClassifier(
            self.vocab,
            TINY_BERT,
            [0, 1, 3],
            dropout=0.0,
            distillation_weight=0.5,
            distillation_temperature=2.0,
        )
        distilled.load_state_dict(plain.state_dict())
        plain.train()
        distilled.train()
        torch.manual_seed(1)
        plain_output = plain(**tensors)
        torch.manual_seed(1)
        distilled_output = distilled(**tensors)
        logits = plain_output["head_logits"].detach()
        target = torch.softmax(logits[:, 2] / 2.0, dim=-1)
        kl = sum(
            (target * (target.log() - torch.log_softmax(logits[:, k] / 2.0, dim=-1))).sum(-1)
            for k in (0, 1)
        ).mean()
        torch.testing.assert_close(
            distilled_output["loss"] - plain_output["loss"], 0.5 * 4.0 * kl, atol=1e-5, rtol=1e-4
        )
        distilled_output["loss"].backward()
        assert distilled.heads[2].classifier.weight.grad is not None

    def test_previous_layer_logits_feed_later_heads_and_exits_stay_per_instance(self):
        model = EarlyExitClassifier(
            self.vocab, TINY_BERT, [0, 1, 3], add_previous_layer_logits=True, dropout=0.0
        ).eval()
        num_labels = model.num_labels
        assert [head.classifier.in_features for head in model.heads] == [
            32,
            32 + num_labels,
            32 + 2 * num_labels,
        ]
        tensors = self._tensors(self.instances)
        with torch.no_grad():
            model.run_all_heads = True
            full = model(**tensors)
            model.run_all_heads = False
            # The last head's logits change when the earlier heads' logits change.
            model.heads[0].classifier.bias.add_(1.0)
            model.run_all_heads = True
            changed = model(**tensors)
            model.run_all_heads = False
            model.heads[0].classifier.bias.sub_(1.0)
            assert not torch.allclose(full["head_logits"][:, 2], changed["head_logits"][:, 2])
            confidence = full["head_probs"][:, 0].max(dim=-1).values.sort().values
            middle = len(confidence) // 2
            model.confidence_threshold = float(confidence[middle - 1] + confidence[middle]) / 2
            batched = model(**tensors)
            singles = [model(**self._tensors([instance])) for instance in self.instances]
        assert len(set(batched["exit_head"].tolist())) > 1
        for index, single in enumerate(singles):
            assert int(single["exit_head"][0]) == int(batched["exit_head"][index])
            torch.testing.assert_close(
                single["probs"][0], batched["probs"][index], atol=1e-5, rtol=0
            )

    def test_per_head_accuracies_and_exit_metrics(self):
        self.model.run_all_heads = True
        with torch.no_grad():
            self.model(**self._tensors(self.instances))
        metrics = self.model.get_metrics(reset=True)
        for layer in (0, 1, 3):
            assert 0.0 <= metrics[f"accuracy_layer_{layer}"] <= 1.0
        assert metrics["exit_fraction_layer_3"] == 1.0  # default threshold 1.0: nobody exits early
        assert metrics["mean_exit_layer"] == 3.0
        assert metrics["relative_compute"] == 1.0
        assert "ece" in metrics

    def test_early_exit_outputs_and_metrics_equal_those_of_every_head_run(self):
        # The early-exit pass makes exit_layer and relative_compute, and counts its exits, from
        # the heads' Python list; running every head takes them from the exit heads' tensor.
        self.model.confidence_threshold = self._threshold_between_heads()
        self.model.get_metrics(reset=True)
        tensors = self._tensors(self.instances)
        with torch.no_grad():
            early = self.model(**tensors)
            single = self.model(**self._tensors(self.instances[:1]))
            early_metrics = self.model.get_metrics(reset=True)
            self.model.run_all_heads = True
            full = self.model(**tensors)
            self.model(**self._tensors(self.instances[:1]))
            full_metrics = self.model.get_metrics(reset=True)
        assert list(early)[:5] == ["logits", "probs", "exit_head", "exit_layer", "relative_compute"]
        assert len(set(early["exit_layer"].tolist())) > 1
        for output in (early, single):
            assert output["exit_layer"].dtype == torch.long
            layers = torch.tensor(self.model.exit_layers)[output["exit_head"]]
            assert torch.equal(output["exit_layer"], layers)
            compute = (layers + 1).float() / self.model.full_depth
            assert torch.equal(output["relative_compute"], compute)
        assert torch.equal(early["relative_compute"], full["relative_compute"])
        exit_metrics = {key: value for key, value in early_metrics.items() if "exit" in key}
        assert exit_metrics == {key: full_metrics[key] for key in exit_metrics}
        assert early_metrics["relative_compute"] == full_metrics["relative_compute"]

    def test_new_temperatures_take_effect_in_the_next_single_instance_pass(self):
        self.model.confidence_threshold = 0.0  # every instance exits at the first head
        tensors = self._tensors(self.instances[:1])
        with torch.no_grad():
            before = self.model(**tensors)
            self.model.set_temperatures([4.0, 1.0, 1.0])
            after = self.model(**tensors)
            state = {key: value.clone() for key, value in self.model.state_dict().items()}
            state["temperatures"] = torch.tensor([0.25, 1.0, 1.0])
            self.model.load_state_dict(state)
            loaded = self.model(**tensors)
        logits = before["logits"]
        torch.testing.assert_close(before["probs"], torch.softmax(logits, dim=-1))
        torch.testing.assert_close(after["probs"], torch.softmax(logits / 4.0, dim=-1))
        torch.testing.assert_close(loaded["probs"], torch.softmax(logits / 0.25, dim=-1))

    def test_temperatures_are_a_saved_buffer_not_a_parameter(self):
        model = EarlyExitClassifier(self.vocab, TINY_BERT, [0, 3], temperatures=[2.0, 0.5])
        assert "temperatures" in model.state_dict()
        assert all("temperatures" not in name for name, _ in model.named_parameters())
        assert model.temperatures.tolist() == [2.0, 0.5]

    def test_human_readable_output_has_label_strings(self):
        self.model.confidence_threshold = 0.0
        output = self.model.forward_on_instance(self.instances[0])
        assert output["label"] in self.vocab.get_token_to_index_vocabulary("labels")

    def test_archive_loads_without_pretrained_weights_and_keeps_temperatures(self, tmp_path):
        from allennlp.commands.train import train_model_from_file

        serialization_dir = tmp_path / "model"
        overrides = '{"trainer.num_epochs": 1, "model.temperatures": [1.5, 2.0, 3.0]}'
        train_model_from_file(CONFIG, serialization_dir, overrides=overrides)
        archive = load_archive(serialization_dir / "model.tar.gz")
        assert archive.model.temperatures.tolist() == [1.5, 2.0, 3.0]


class TestConfigurationErrors:
    @pytest.fixture
    def vocab(self):
        vocab = Vocabulary()
        vocab.add_tokens_to_namespace(["good", "bad"], "labels")
        return vocab

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"exit_layers": [0, 4]}, "out of range"),
            ({"exit_layers": [2, 1]}, "strictly increasing"),
            ({"exit_layers": [1, 1, 3]}, "strictly increasing"),
            ({"exit_layers": []}, "at least one"),
            ({"exit_layers": [-1, 3]}, "0-based"),
            ({"exit_layers": [0, 3], "confidence_threshold": 1.5}, r"\[0, 1\]"),
            ({"exit_layers": [0, 3], "confidence_threshold": -0.1}, r"\[0, 1\]"),
            ({"exit_layers": [0, 3], "temperatures": [1.0]}, "one value per exit layer"),
            ({"exit_layers": [0, 3], "temperatures": [1.0, 0.0]}, "positive"),
            ({"exit_layers": [0, 3], "loss_weights": [1.0, 1.0, 1.0]}, "one value per exit layer"),
            ({"exit_layers": [0, 3], "loss_weights": [1.0, float("nan")]}, "not be negative"),
            ({"exit_layers": [0, 3], "loss_weights": [0, 0.0]}, r"all 0 \(\[0.0, 0.0\]\)"),
            ({"exit_layers": [0, 3], "head_pooling": "max"}, "head_pooling"),
        ],
    )
    def test_bad_configuration_is_a_clear_configuration_error(self, vocab, kwargs, message):
        with pytest.raises(ConfigurationError, match=message):
            EarlyExitClassifier(vocab, TINY_BERT, **kwargs)

    def test_threshold_set_later_is_validated(self, vocab):
        model = EarlyExitClassifier(vocab, TINY_BERT, [0, 3])
        with pytest.raises(ConfigurationError, match=r"\[0, 1\]"):
            model.confidence_threshold = 2


def test_training_config_trains_with_allennlp_cli(tmp_path):

    serialization_dir = tmp_path / "cli_model"
    result = run_allennlp(
        "train", CONFIG, "-s", serialization_dir, "-o", '{"trainer.num_epochs": 1}', timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (serialization_dir / "model.tar.gz").exists()
