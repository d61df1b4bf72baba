import json

import pytest
from allennlp.common.checks import ConfigurationError
from allennlp.data.token_indexers import PretrainedTransformerIndexer
from allennlp.data.tokenizers import PretrainedTransformerTokenizer
from allennlp.predictors import Predictor
from allennlp_models.pair_classification.dataset_readers.snli import SnliReader
from hypothesis import example, given
from hypothesis import strategies as st

from early_exit.models.head_outputs import collect_head_outputs
from early_exit.predictors import EarlyExitClassifierPredictor, PredictorInputError
from early_exit.sweep import head_probabilities
from tests import FIXTURES_ROOT, TINY_BERT, run_allennlp
from tests.dataset_readers.line_reader_properties_test import (
    ANY_CHARACTER,
    FIELD,
    LONG_FIELD,
    SPECIAL,
)
from tests.sweep.trained_models import (
    NLI_JSONL,
    TEXT_JSONL,
    mixed_thresholds,
    other_model_archive,
    trained_archive,
)

# Other keys an input line may carry (ignored by the predictor).
JSON_EXTRA = st.dictionaries(st.sampled_from(["label", "id", "premise"]), st.integers(), max_size=2)

FIELDS = {
    "label",
    "confidence",
    "probs",
    "label_probs",
    "exit_head",
    "exit_layer",
    "relative_compute",
}


def _lines(path):
    """The fixture's lines without their labels, three times over (48 lines, several batches)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        record.pop("label")
    return records * 3


def assert_same_predictions(first, second, decimals=4):
    """Same labels and exits; probabilities equal to the printed precision."""
    assert len(first) == len(second)
    for one, other in zip(first, second):
        if one == other:
            continue
        one, other = json.loads(one) if isinstance(one, str) else one, (
            json.loads(other) if isinstance(other, str) else other
        )
        for key in ("label", "exit_head", "exit_layer", "relative_compute"):
            assert one[key] == other[key]
        for value, other_value in zip(one["probs"], other["probs"]):
            assert value == pytest.approx(other_value, abs=10**-decimals)


@pytest.fixture(scope="module")
def text_archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "text")


@pytest.fixture(scope="module")
def nli_archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "nli")


@pytest.fixture(scope="module")
def predictor(text_archive):
    return Predictor.from_path(text_archive, "early_exit_classifier")


@pytest.fixture(scope="module")
def mixed_threshold(predictor):
    """A threshold at which the fixture texts exit at different heads."""
    model = predictor._model
    instances = [predictor._json_to_instance(record) for record in _lines(TEXT_JSONL)[:16]]
    for instance in instances:
        predictor._dataset_reader.apply_token_indexers(instance)
    outputs = collect_head_outputs(model, instances)
    thresholds = mixed_thresholds(head_probabilities(outputs.logits, model.temperatures), count=1)
    assert thresholds, "the tiny model should exit at different heads at some threshold"
    return thresholds[0]


def _predicted_lines(archive, input_file, output_file, *arguments):
    """Runs `allennlp predict` (silent) and returns the output file's lines; it must succeed."""
    result = run_allennlp(
        "predict", archive, input_file, "--output-file", output_file, "--silent", *arguments
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output_file.read_text().splitlines()


class TestPredictions:
    def test_default_predictor_and_archive_threshold(self, text_archive):
        predictor = Predictor.from_path(text_archive)
        assert isinstance(predictor, EarlyExitClassifierPredictor)
        assert predictor.confidence_threshold == 1.0  # the archive's value

    def test_threshold_from_python_and_from_overrides(self, text_archive):
        predictor = Predictor.from_path(
            text_archive, "early_exit_classifier", confidence_threshold=0.8
        )
        assert predictor.confidence_threshold == 0.8
        assert predictor._model.confidence_threshold == 1.0  # the model is not changed
        for overrides in (
            '{"model.confidence_threshold": 0.3}',
            '{"model": {"confidence_threshold": 0.3}}',
            {"model": {"confidence_threshold": 0.3}},
        ):
            overridden = Predictor.from_path(text_archive, overrides=overrides)
            assert overridden.confidence_threshold == 0.3
            # The nested form merges into the archive's model block instead of replacing it.
            assert overridden._model.exit_layers == predictor._model.exit_layers

    def test_outputs_have_all_fields_and_are_consistent(self, predictor, mixed_threshold):
        predictor.confidence_threshold = mixed_threshold
        output = predictor.predict("A great movie with a wonderful story.")
        assert set(output) == FIELDS
        assert set(output["label_probs"]) == {"positive", "negative"}
        assert list(output["label_probs"].values()) == output["probs"]
        assert output["confidence"] == max(output["probs"])
        assert output["label"] == max(output["label_probs"], key=output["label_probs"].get)
        assert sum(output["probs"]) == pytest.approx(1.0, abs=1e-3)
        assert output["exit_layer"] == [0, 1, 3][output["exit_head"]]
        assert output["relative_compute"] == (output["exit_layer"] + 1) / 4
        json.loads(predictor.dump_line(output))

    @pytest.mark.parametrize("threshold, layer", [(0.0, 0), (1.0, 3)])
    def test_threshold_zero_and_one_exit_at_first_and_last_head(self, predictor, threshold, layer):
        predictor.confidence_threshold = threshold
        outputs = predictor.predict_batch_json(_lines(TEXT_JSONL)[:16])
        assert {output["exit_layer"] for output in outputs} == {layer}
        assert {output["relative_compute"] for output in outputs} == {(layer + 1) / 4}
        assert all("head_logits" not in output for output in outputs)  # 1.0 runs every head

    def test_batch_sizes_agree(self, predictor, mixed_threshold):
        predictor.confidence_threshold = mixed_threshold
        lines = _lines(TEXT_JSONL)
        single = [predictor.dump_line(predictor.predict_json(line)) for line in lines]
        batched = [
            predictor.dump_line(output)
            for start in range(0, len(lines), 32)
            for output in predictor.predict_batch_json(lines[start : start + 32])
        ]
        assert len({json.loads(line)["exit_layer"] for line in single}) > 1
        assert_same_predictions(single, batched)

    def test_run_all_heads_adds_every_heads_outputs(self, text_archive):
        predictor = Predictor.from_path(text_archive, overrides='{"model.run_all_heads": true}')
        output = predictor.predict("Boring.")
        assert len(output["head_probs"]) == 3 and len(output["head_logits"]) == 3

    def test_nli_lines(self, nli_archive):
        predictor = Predictor.from_path(nli_archive, confidence_threshold=0.0)
        output = predictor.predict_pair("A man is playing.", "A person is playing.")
        assert set(output) == FIELDS
        assert set(output["label_probs"]) == {"entailment", "contradiction", "neutral"}
        assert output["exit_layer"] == 0
        outputs = predictor.predict_batch_json(_lines(NLI_JSONL))
        assert all(set(output) == FIELDS for output in outputs)

    def test_nli_with_allennlp_models_snli_reader(self, nli_archive):
        ours = Predictor.from_path(nli_archive, confidence_threshold=0.5)
        snli_reader = SnliReader(
            tokenizer=PretrainedTransformerTokenizer(TINY_BERT, add_special_tokens=False),
            token_indexers={"tokens": PretrainedTransformerIndexer(TINY_BERT)},
        )
        theirs = EarlyExitClassifierPredictor(ours._model, snli_reader)
        lines = _lines(NLI_JSONL)[:15]
        assert theirs.predict_batch_json(lines) == ours.predict_batch_json(lines)


class TestBadInput:
    def test_missing_keys_name_the_expected_keys_and_the_line(self, predictor):
        with pytest.raises(PredictorInputError, match=r'no "sentence" or "text" key.*"premise"'):
            predictor.predict_json({"premise": "a", "hypothesis": "b"})

    def test_nli_model_names_premise_and_hypothesis(self, nli_archive):
        predictor = Predictor.from_path(nli_archive)
        with pytest.raises(PredictorInputError, match=r'no "hypothesis" key.*sentence pairs'):
            predictor.predict_json({"premise": "A man sleeps."})

    @pytest.mark.parametrize(
        "line, message",
        [
            ("", "empty input line"),
            ("   \n", "empty input line"),
            ("{not json", "not valid JSON.*{not json"),
            ('["a list"]', "not an object"),
            ('{"sentence": "\\u200b\\u0002"}', "empty text: it has no wordpieces"),
        ],
    )
    def test_bad_lines(self, predictor, line, message):
        with pytest.raises(PredictorInputError, match=message):
            predictor.load_line(line)

    @pytest.mark.parametrize(
        "inputs, message",
        [
            ({"sentence": "a", "text": "b"}, "both"),
            ({"sentence": ""}, "non-empty string"),
            ({"sentence": 3}, "non-empty string"),
            ({"sentence": "\u200b\u2060"}, "empty text: it has no wordpieces"),
        ],
    )
    def test_bad_values(self, predictor, inputs, message):
        with pytest.raises(PredictorInputError, match=message):
            predictor.predict_json(inputs)

    @pytest.mark.parametrize("policy", ["max_probability", "entropy"])
    def test_a_policy_without_its_threshold_names_the_setting(self, text_archive, policy):
        with pytest.raises(ConfigurationError, match='"threshold" is required at .*exit_policy'):
            Predictor.from_path(text_archive, exit_policy={"type": policy})
        with pytest.raises(ConfigurationError, match='"threshold" is required at .*exit_policy'):
            Predictor.from_path(text_archive, overrides={"model.exit_policy": {"type": policy}})

    @pytest.mark.parametrize("threshold", [1.5, -0.1, "high", True, False])
    def test_threshold_outside_zero_one(self, text_archive, threshold):
        with pytest.raises(ConfigurationError, match=r"confidence_threshold must be"):
            Predictor.from_path(text_archive, confidence_threshold=threshold)

    def test_a_boolean_threshold_is_refused_and_the_old_one_kept(self, predictor):
        before = predictor.confidence_threshold
        try:
            predictor.confidence_threshold = 0.7
            with pytest.raises(ConfigurationError, match=r"must be a number in \[0, 1\], got True"):
                predictor.confidence_threshold = True
            assert predictor.confidence_threshold == 0.7
        finally:
            predictor.confidence_threshold = before

    def test_threshold_outside_zero_one_by_override(self, text_archive):
        with pytest.raises(ConfigurationError, match=r"\[0, 1\]"):
            Predictor.from_path(text_archive, overrides='{"model.confidence_threshold": 2}')

    def test_unknown_predictor_argument(self, text_archive):
        with pytest.raises(ConfigurationError, match="unknown argument.*threshold"):
            Predictor.from_path(text_archive, threshold=0.5)

    def test_archive_of_another_model_type(self, tmp_path):
        archive = other_model_archive(tmp_path / "other")
        with pytest.raises(ConfigurationError, match="needs an early_exit_classifier model"):
            Predictor.from_path(archive, "early_exit_classifier")


class TestPredictCommand:
    def test_batch_sizes_1_and_32_agree_line_for_line(
        self, text_archive, mixed_threshold, tmp_path
    ):
        lines = [json.dumps(line) for line in _lines(TEXT_JSONL)]
        lines.insert(5, "")  # `allennlp predict` skips blank lines
        input_file = tmp_path / "input.jsonl"
        input_file.write_text("\n".join(lines) + "\n")
        outputs = {}
        for batch_size in (1, 32):
            outputs[batch_size] = _predicted_lines(
                text_archive,
                input_file,
                tmp_path / f"output_{batch_size}.jsonl",
                "--batch-size",
                batch_size,
                "--predictor-args",
                json.dumps({"confidence_threshold": mixed_threshold}),
            )
        assert len(outputs[1]) == len(lines) - 1
        assert set(json.loads(outputs[1][0])) == FIELDS
        assert len({json.loads(line)["exit_layer"] for line in outputs[1]}) > 1
        assert_same_predictions(outputs[1], outputs[32])

    def test_every_way_to_set_the_threshold_gives_the_same_output(
        self, text_archive, mixed_threshold, tmp_path
    ):
        input_file = tmp_path / "input.jsonl"
        input_file.write_text("".join(json.dumps(line) + "\n" for line in _lines(TEXT_JSONL)))
        ways = {
            "predictor_args": [
                "--predictor-args",
                json.dumps({"confidence_threshold": mixed_threshold}),
            ],
            "dot_override": ["-o", json.dumps({"model.confidence_threshold": mixed_threshold})],
            "nested_override": [
                "-o",
                json.dumps({"model": {"confidence_threshold": mixed_threshold}}),
            ],
        }
        outputs = {}
        for name, arguments in ways.items():
            outputs[name] = _predicted_lines(
                text_archive, input_file, tmp_path / f"{name}.jsonl", *arguments
            )
        assert len({json.loads(line)["exit_layer"] for line in outputs["predictor_args"]}) > 1
        assert outputs["dot_override"] == outputs["predictor_args"]
        assert outputs["nested_override"] == outputs["predictor_args"]

    def test_bad_line_ends_with_a_clear_message(self, text_archive, tmp_path):
        input_file = tmp_path / "input.jsonl"
        input_file.write_text('{"sentence": "fine"}\n{"review": "no sentence key"}\n')
        output_file = tmp_path / "output.jsonl"
        result = run_allennlp(
            "predict", text_archive, input_file, "--silent", "--output-file", output_file
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1
        assert 'no "sentence" or "text" key' in errors[0] and "review" in errors[0]

    def test_threshold_outside_range_is_one_clear_line(self, text_archive, tmp_path):
        input_file = tmp_path / "input.jsonl"
        input_file.write_text('{"sentence": "fine"}\n')
        result = run_allennlp(
            "predict",
            text_archive,
            input_file,
            "--silent",
            "--output-file",
            tmp_path / "out",
            "--predictor-args",
            '{"confidence_threshold": 1.5}',
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "error: confidence_threshold must be in [0, 1], got 1.5" in result.stderr


def test_fixture_inputs_for_the_readme(text_archive, nli_archive):
    text = Predictor.from_path(text_archive)
    for line in (FIXTURES_ROOT / "predictors" / "sentences.jsonl").read_text().splitlines():
        assert set(text.predict_json(text.load_line(line))) == FIELDS
    nli = Predictor.from_path(nli_archive)
    for line in (FIXTURES_ROOT / "predictors" / "nli_pairs.jsonl").read_text().splitlines():
        assert set(nli.predict_json(nli.load_line(line))) == FIELDS


class TestInputLinesNobodyPlannedFor:
    """
    Property-based (hypothesis): whatever an input line holds (random unicode, tabs, carriage
    returns, escaped newlines, very long texts, deep nesting, huge numbers), `load_line` and
    `_json_to_instance` either give the instance of the line's text or raise a
    `PredictorInputError` with a one-line message: never another exception.
    """

    @pytest.fixture(scope="class")
    def predictors(self):
        from allennlp.data import Vocabulary

        from early_exit.dataset_readers import (
            EarlyExitNliReader,
            EarlyExitTextClassificationReader,
        )
        from early_exit.models import EarlyExitClassifier

        vocab = Vocabulary()
        vocab.add_tokens_to_namespace(["positive", "negative"], "labels")
        model = EarlyExitClassifier(vocab, TINY_BERT, exit_layers=[0, 1])  # untrained
        readers = {
            "text": EarlyExitTextClassificationReader(TINY_BERT, max_length=24),
            "nli": EarlyExitNliReader(TINY_BERT, max_length=24),
        }
        return {
            kind: EarlyExitClassifierPredictor(model, reader) for kind, reader in readers.items()
        }

    @staticmethod
    def _outcome(predictor, line: str):
        """The instance's wordpieces, or the input error's message."""
        try:
            instance = predictor._json_to_instance(predictor.load_line(line))
        except PredictorInputError as error:
            message = str(error)
            assert message and len(message.splitlines()) == 1, message
            return None
        return [(token.text, token.type_id) for token in instance["tokens"].tokens]

    @staticmethod
    def _wordpieces(predictor, *texts):
        instance = predictor._dataset_reader.text_to_instance(*texts)
        return [(token.text, token.type_id) for token in instance["tokens"].tokens]

    @pytest.mark.parametrize("kind", ["text", "nli"])
    @given(line=st.text(st.one_of(st.sampled_from(SPECIAL + '{}[]":,\\'), ANY_CHARACTER)))
    @example(line="[" * 100_000)
    @example(line='{"sentence": ' + "[" * 100_000)
    @example(line='{"premise": "a", "hypothesis": ' + "1" * 5000 + "}")
    @example(line='{"sentence": "a\\r\\nb\\u2028c"} trailing')
    def test_any_line_gives_an_instance_or_an_input_error(self, predictors, kind, line):
        self._outcome(predictors[kind], line)

    @pytest.mark.parametrize("key", ["sentence", "text"])
    @given(text=st.one_of(FIELD, LONG_FIELD), ensure_ascii=st.booleans(), extra=JSON_EXTRA)
    @example(text="tab\tcr\rnewline\nline separator\u2028end", ensure_ascii=False, extra={})
    def test_a_text_line_gives_the_instance_of_its_text(
        self, predictors, key, text, ensure_ascii, extra
    ):
        predictor = predictors["text"]
        line = json.dumps({**extra, key: text}, ensure_ascii=ensure_ascii)
        outcome = self._outcome(predictor, line)
        if not text.strip():
            assert outcome is None
        else:
            assert outcome == self._wordpieces(predictor, text)

    @given(premise=FIELD, hypothesis=st.one_of(FIELD, LONG_FIELD), ensure_ascii=st.booleans())
    def test_a_pair_line_gives_the_instance_of_its_texts(
        self, predictors, premise, hypothesis, ensure_ascii
    ):
        predictor = predictors["nli"]
        line = json.dumps({"premise": premise, "hypothesis": hypothesis}, ensure_ascii=ensure_ascii)
        outcome = self._outcome(predictor, line)
        if not premise.strip() or not hypothesis.strip():
            assert outcome is None
        else:
            assert outcome == self._wordpieces(predictor, premise, hypothesis)


def test_two_predictors_with_different_policies_share_one_model(predictor, mixed_threshold):
    model = predictor._model
    before = model.exit_policy
    full = EarlyExitClassifierPredictor(model, predictor._dataset_reader, confidence_threshold=1.0)
    early = EarlyExitClassifierPredictor(
        model, predictor._dataset_reader, confidence_threshold=mixed_threshold
    )
    lines = _lines(TEXT_JSONL)[:16]
    for _ in range(2):  # interleaved: neither leaves its policy on the shared model
        full_layers = [output["exit_layer"] for output in full.predict_batch_json(lines)]
        early_layers = [output["exit_layer"] for output in early.predict_batch_json(lines)]
        streamed = [output["exit_layer"] for _, output in early.predict_json_stream(lines, 4)]
        assert set(full_layers) == {model.exit_layers[-1]}
        assert len(set(early_layers)) > 1 and streamed == early_layers
    assert model.exit_policy is before
