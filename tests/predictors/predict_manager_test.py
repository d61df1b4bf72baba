"""
`allennlp predict` with rows carried across batches (`EarlyExitPredictManager`, installed on
import): the same output lines in the same order as batch-by-batch prediction, fewer layer calls,
and on a bad line every line before it written.
"""

import argparse
import json
import os

import pytest
from allennlp.commands import predict as allennlp_predict
from allennlp.commands.predict import Predict
from allennlp.common.checks import ConfigurationError
from allennlp.data.dataset_readers import TextClassificationJsonReader
from allennlp.data.tokenizers import WhitespaceTokenizer
from allennlp.models.archival import load_archive
from allennlp.predictors import Predictor

from early_exit.predictors import PredictorInputError
from early_exit.predictors.predict_manager import (
    EarlyExitPredictManager,
    ScopedPredictManager,
    get_predictor,
)
from tests import FIXTURES_ROOT, run_allennlp
from tests.commands.calibrate_test import _train
from tests.predictors.early_exit_classifier_test import (  # noqa: F401  (fixtures)
    _lines,
    _predicted_lines,
    assert_same_predictions,
    mixed_threshold,
    predictor,
    text_archive,
)
from tests.sweep.trained_models import TEXT_DATA, TEXT_JSONL, other_model_archive


def _layer_calls(predictor):
    """Patches the predictor's model to count its packed layer calls."""
    encoder = predictor._model.encoder
    calls = []
    run = encoder.run_packed_layer

    def counting(index, packed):
        calls.append((index, len(packed)))  # (layer, rows)
        return run(index, packed)

    encoder.run_packed_layer = counting
    return calls, lambda: delattr(encoder, "run_packed_layer")


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "input.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in _lines(TEXT_JSONL)))  # 48 lines
    return path


def test_allennlp_predict_builds_this_package_s_loop_only_for_this_package_s_predictors(
    predictor, tmp_path
):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"sentence": "a fine film"}\n')
    manager = allennlp_predict._PredictManager(predictor, str(inputs), None, 2, False, False)
    assert type(manager) is EarlyExitPredictManager
    other = Predictor.by_name("text_classifier")(
        load_archive(str(other_model_archive(tmp_path / "other"))).model,
        TextClassificationJsonReader(tokenizer=WhitespaceTokenizer()),
    )
    manager = allennlp_predict._PredictManager(other, str(inputs), None, 2, False, False)
    assert type(manager) is ScopedPredictManager.allennlp_manager


class TestStreams:
    def test_json_stream_equals_batch_by_batch_in_order(self, predictor, mixed_threshold):
        predictor.confidence_threshold = mixed_threshold
        inputs = _lines(TEXT_JSONL)
        expected = []
        for start in range(0, len(inputs), 5):
            expected.extend(predictor.predict_batch_json(inputs[start : start + 5]))
        pairs = list(predictor.predict_json_stream(iter(inputs), 5))
        assert [item for item, _ in pairs] == inputs
        assert_same_predictions(expected, [output for _, output in pairs])
        assert len({output["exit_layer"] for output in expected}) > 1

    def test_instance_stream_equals_batch_by_batch(self, predictor, mixed_threshold):
        predictor.confidence_threshold = mixed_threshold
        instances = list(predictor._dataset_reader.read(str(TEXT_DATA)))
        expected = predictor.predict_batch_instance(instances[:7]) + (
            predictor.predict_batch_instance(instances[7:])
        )
        pairs = list(predictor.predict_instance_stream(instances, 7))
        assert [item for item, _ in pairs] == instances
        assert_same_predictions(expected, [output for _, output in pairs])

    def test_a_bad_input_comes_after_every_output_before_it(self, predictor, mixed_threshold):
        predictor.confidence_threshold = mixed_threshold
        inputs = _lines(TEXT_JSONL)[:11] + [{"review": "no sentence key"}] + [{"text": "later"}]
        outputs = []
        with pytest.raises(PredictorInputError, match="review"):
            for item, output in predictor.predict_json_stream(inputs, 4):
                outputs.append(item)
        assert outputs == inputs[:11]

    def test_batch_size_must_be_positive(self, predictor):
        with pytest.raises(ConfigurationError, match="batch_size"):
            list(predictor.predict_json_stream([{"text": "fine"}], 0))

    def test_carry_rows_must_be_a_boolean(self, text_archive):
        with pytest.raises(ConfigurationError, match="carry_rows"):
            Predictor.from_path(text_archive, carry_rows="yes")


class TestManager:
    def _run(self, predictor, input_file, output_file, batch_size, **options):
        manager = EarlyExitPredictManager(
            predictor, str(input_file), str(output_file), batch_size, False, **options
        )
        manager.run()
        return output_file.read_text().splitlines()

    @pytest.mark.parametrize("use_dataset_reader", [False, True])
    def test_carrying_needs_fewer_layer_calls_for_the_same_lines(
        self, predictor, mixed_threshold, input_file, tmp_path, use_dataset_reader
    ):
        predictor.confidence_threshold = mixed_threshold
        if use_dataset_reader:
            input_file = TEXT_DATA
        calls, restore = _layer_calls(predictor)
        try:
            outputs = {}
            counts = {}
            for carry in (False, True):
                predictor.carry_rows = carry
                calls.clear()
                outputs[carry] = self._run(
                    predictor,
                    input_file,
                    tmp_path / f"out_{carry}.jsonl",
                    4,
                    has_dataset_reader=use_dataset_reader,
                )
                counts[carry] = (len(calls), sum(rows for _, rows in calls))
        finally:
            predictor.carry_rows = True
            restore()
        assert outputs[True] and len(outputs[True]) == len(outputs[False])
        assert_same_predictions(outputs[False], outputs[True])
        assert counts[True][0] < counts[False][0]  # fewer layer calls...
        assert counts[True][1] == counts[False][1]  # ...for the same rows

    def test_batch_size_one_predicts_line_by_line(self, predictor, input_file, tmp_path):
        calls, restore = _layer_calls(predictor)
        try:
            lines = self._run(
                predictor, input_file, tmp_path / "out.jsonl", 1, has_dataset_reader=False
            )
        finally:
            restore()
        assert len(lines) == 48
        assert max(rows for _, rows in calls) == 1

    def test_batch_sizes_1_and_7_carried_or_not_write_the_same_bytes(
        self, predictor, mixed_threshold, input_file, tmp_path
    ):
        predictor.confidence_threshold = mixed_threshold
        outputs = {}
        try:
            for batch_size, carry in ((1, True), (7, True), (7, False)):
                predictor.carry_rows = carry
                output_file = tmp_path / f"out_{batch_size}_{carry}.jsonl"
                self._run(predictor, input_file, output_file, batch_size, has_dataset_reader=False)
                outputs[batch_size, carry] = output_file.read_bytes()
        finally:
            predictor.carry_rows = True
        exits = {json.loads(line)["exit_head"] for line in outputs[1, True].splitlines()}
        assert len(exits) > 1  # the threshold makes rows leave at different heads
        assert outputs[1, True].count(b"\n") == 48
        assert outputs[7, True] == outputs[1, True]
        assert outputs[7, False] == outputs[1, True]


class TestCommand:
    def test_carrying_or_not_writes_the_same_lines(
        self, text_archive, mixed_threshold, input_file, tmp_path
    ):
        outputs = {}
        for carry in (True, False):
            outputs[carry] = _predicted_lines(
                text_archive,
                input_file,
                tmp_path / f"out_{carry}.jsonl",
                "--batch-size",
                5,
                "--predictor-args",
                json.dumps({"confidence_threshold": mixed_threshold, "carry_rows": carry}),
            )
        assert len(outputs[True]) == 48
        assert_same_predictions(outputs[False], outputs[True])

    def test_a_bad_line_leaves_every_line_before_it_written(self, text_archive, tmp_path):
        good = _lines(TEXT_JSONL)[:7]
        input_file = tmp_path / "input.jsonl"
        input_file.write_text(
            "".join(json.dumps(line) + "\n" for line in good) + '{"review": "bad"}\n'
        )
        output_file = tmp_path / "output.jsonl"
        options = ["--silent", "--output-file", output_file, "--batch-size", 3]
        threshold = ["--predictor-args", '{"confidence_threshold": 0.5}']
        result = run_allennlp("predict", text_archive, input_file, *options, *threshold)
        assert result.returncode == 1
        assert 'no "sentence" or "text" key' in result.stderr
        assert len(output_file.read_text().splitlines()) == 7


def _hidden(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def _predict_args(*argv):
    """`allennlp predict ARGV` parsed as the command parses it."""
    parser = argparse.ArgumentParser()
    Predict().add_subparser(parser.add_subparsers())
    return parser.parse_args(["predict", *map(str, argv)])


def _one_error_line(result):
    """The single `error: ...` line of a failed `allennlp` run (exit status 1, no traceback)."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.fixture
def no_loading(monkeypatch):
    """Makes loading the archive fail the test: the checks must come before any work."""

    def fail(*args, **kwargs):
        raise AssertionError("the archive was loaded before the paths were checked")

    monkeypatch.setattr(allennlp_predict, "load_archive", fail)


class TestPaths:
    def test_an_output_that_is_an_input_is_refused_before_loading(
        self, text_archive, input_file, tmp_path, no_loading, monkeypatch
    ):
        content = input_file.read_text()
        archive_bytes = text_archive.read_bytes()
        monkeypatch.chdir(tmp_path)
        cases = {
            "input.jsonl": "is the input file",
            str(tmp_path / "." / "input.jsonl"): "is the input file",
            str(text_archive): "is the archive",
        }
        for output, message in cases.items():
            args = _predict_args(text_archive, input_file, "--output-file", output, "--silent")
            with pytest.raises(ConfigurationError, match=message):
                get_predictor(args)
        assert input_file.read_text() == content
        assert text_archive.read_bytes() == archive_bytes

    @pytest.mark.parametrize(
        "output, message",
        [(".", "is a directory"), ("input.jsonl/out.jsonl", "is a file, not a folder")],
    )
    def test_an_unwritable_output_is_refused_before_loading(
        self, text_archive, input_file, tmp_path, no_loading, output, message
    ):
        args = _predict_args(text_archive, input_file, "--output-file", tmp_path / output)
        with pytest.raises(ConfigurationError, match=message):
            get_predictor(args)

    def test_a_missing_input_is_refused_before_loading(self, text_archive, tmp_path, no_loading):
        args = _predict_args(text_archive, tmp_path / "missing.jsonl", "--output-file", "o.jsonl")
        with pytest.raises(ConfigurationError, match="missing.jsonl does not exist"):
            get_predictor(args)

    def test_the_manager_checks_too(self, predictor, input_file):
        with pytest.raises(ConfigurationError, match="is the input file"):
            EarlyExitPredictManager(predictor, str(input_file), str(input_file), 1, False, False)
        assert len(input_file.read_text().splitlines()) == 48

    @pytest.mark.parametrize("batch_size", [1, 4])
    def test_an_interruption_leaves_the_old_output_and_no_temporary(
        self, predictor, input_file, tmp_path, monkeypatch, batch_size
    ):
        output_file = tmp_path / "out" / "predictions.jsonl"
        output_file.parent.mkdir()
        output_file.write_text("earlier predictions\n")
        written = []

        def dump_line(output):
            if len(written) == 5:
                raise KeyboardInterrupt
            written.append(output)
            return json.dumps(output) + "\n"

        monkeypatch.setattr(predictor, "dump_line", dump_line)
        manager = EarlyExitPredictManager(
            predictor, str(input_file), str(output_file), batch_size, False, False
        )
        with pytest.raises(KeyboardInterrupt):
            manager.run()
        assert output_file.read_text() == "earlier predictions\n"
        assert _hidden(output_file.parent) == []

    @pytest.mark.parametrize("batch_size", [1, 4])
    def test_invalid_utf8_names_file_and_line_and_keeps_the_lines_before(
        self, predictor, tmp_path, batch_size
    ):
        input_file = tmp_path / "input.jsonl"
        input_file.write_bytes(
            b'{"sentence": "fine"}\n\n{"sentence": "also fine"}\n{"sentence": "caf\xe9"}\n'
        )
        output_file = tmp_path / "out.jsonl"
        manager = EarlyExitPredictManager(
            predictor, str(input_file), str(output_file), batch_size, False, False
        )
        with pytest.raises(
            PredictorInputError, match=r"input.jsonl line 4: not valid UTF-8 \(byte 0xe9"
        ):
            manager.run()
        assert len(output_file.read_text().splitlines()) == 2
        assert _hidden(tmp_path) == []


@pytest.fixture(scope="module")
def basic_classifier_archive(tmp_path_factory):
    """allennlp's basic_classifier on this package's reader and the tiny BERT."""
    config = FIXTURES_ROOT / "calibration" / "basic_classifier.jsonnet"
    return _train(config, tmp_path_factory.mktemp("basic_classifier") / "run")


class TestUserErrors:
    @pytest.mark.parametrize("value", ['"abc"', "true"])
    def test_a_wrongly_typed_override_names_the_overrides(self, text_archive, input_file, value):
        overrides = '{"model.confidence_threshold": %s}' % value
        args = _predict_args(text_archive, input_file, "-o", overrides)
        with pytest.raises(ConfigurationError, match="with the overrides.*numeric"):
            get_predictor(args)

    def test_early_exit_predictor_arguments_need_an_early_exit_model(self, tmp_path, input_file):
        archive = other_model_archive(tmp_path / "other")
        args = _predict_args(
            archive, input_file, "--predictor-args", '{"confidence_threshold": 0.5}'
        )
        with pytest.raises(ConfigurationError, match="holds a 'basic_classifier' model"):
            get_predictor(args)
        # Without them, another model's own predictor is left alone.
        assert type(get_predictor(_predict_args(archive, input_file))).__name__ != "Predictor"

    def test_a_batch_size_below_one_is_refused_before_loading(
        self, text_archive, input_file, no_loading
    ):
        args = _predict_args(text_archive, input_file, "--batch-size", "0")
        with pytest.raises(ConfigurationError, match="--batch-size must be at least 1, got 0"):
            get_predictor(args)

    @pytest.mark.parametrize("predictor_args", ["{", "[0.5]"])
    def test_predictor_args_must_be_a_json_object(self, text_archive, input_file, predictor_args):
        args = _predict_args(text_archive, input_file, "--predictor-args", predictor_args)
        with pytest.raises(ConfigurationError, match="--predictor-args"):
            get_predictor(args)

    def test_command_line(self, text_archive, basic_classifier_archive, input_file, tmp_path):
        """Each user error of `allennlp predict`: exit status 1 and one `error: ...` line."""
        bad_utf8 = tmp_path / "latin1.jsonl"
        bad_utf8.write_bytes(b'{"sentence": "fine"}\n{"sentence": "caf\xe9"}\n')
        missing_key = tmp_path / "missing.jsonl"
        missing_key.write_text('{"sentence": "fine"}\n{"txt": "no key"}\n')
        no_wordpieces = tmp_path / "invisible.jsonl"
        no_wordpieces.write_text('{"sentence": "fine"}\n{"sentence": "\\u200b\\u0001"}\n')
        content = input_file.read_text()
        output = ["--silent", "--output-file", tmp_path / "out.jsonl"]
        cases = [
            ([text_archive, input_file, "--output-file", input_file], "is the input file"),
            ([text_archive, bad_utf8, *output], "latin1.jsonl line 2: not valid UTF-8"),
            # A full disk, for real: /dev/full answers every write with ENOSPC.
            (
                [text_archive, input_file, "--silent", "--output-file", "/dev/full"],
                "cannot write /dev/full: No space left on device",
            ),
            ([text_archive, missing_key, *output], 'missing.jsonl line 2: input line has no "sen'),
            (
                [text_archive, TEXT_DATA, *output],
                "(tab-separated, as the dataset reader reads: add",
            ),
            ([text_archive, missing_key, *output, "--batch-size", "4"], "missing.jsonl line 2: "),
            (
                [text_archive, no_wordpieces, *output, "--batch-size", "4"],
                "invisible.jsonl line 2: empty text: it has no wordpieces",
            ),
            (
                [text_archive, input_file, *output, "-o", '{"model.confidence_threshold": "abc"}'],
                "Expected confidence_threshold to be numeric",
            ),
            (
                [
                    text_archive,
                    input_file,
                    *output,
                    "--predictor-args",
                    '{"confidence_threshold": true}',
                ],
                "confidence_threshold must be a number in [0, 1], got True",
            ),
            ([basic_classifier_archive, input_file, *output], "not an early_exit_classifier"),
            (
                [
                    basic_classifier_archive,
                    input_file,
                    *output,
                    "--predictor-args",
                    '{"confidence_threshold": 0.5}',
                ],
                "holds a 'basic_classifier' model, not an early_exit_classifier",
            ),
        ]
        for arguments, message in cases:
            error = _one_error_line(run_allennlp("predict", *arguments))
            assert message in error, error
        assert input_file.read_text() == content
