import json
import logging
import pickle
import shutil
from collections import Counter

import pytest
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from allennlp.data import DatasetReader, Vocabulary
from allennlp.data.data_loaders import MultiProcessDataLoader
from allennlp.data.data_loaders.multiprocess_data_loader import WorkerError
from allennlp.data.dataset_readers.dataset_reader import WorkerInfo
from allennlp.data.token_indexers import PretrainedTransformerIndexer
from allennlp.data.tokenizers import PretrainedTransformerTokenizer

from early_exit.dataset_readers import DataFormatError, EarlyExitTextClassificationReader
from tests import FIXTURES_ROOT, TINY_BERT
from tests.dataset_readers import summary, type_ids, wordpieces, write

TSV = FIXTURES_ROOT / "data" / "text_classification.tsv"
JSONL = FIXTURES_ROOT / "data" / "text_classification.jsonl"
LOGGER_NAME = "early_exit.dataset_readers.line_reader"


@pytest.fixture(scope="module")
def reader() -> EarlyExitTextClassificationReader:
    return EarlyExitTextClassificationReader(TINY_BERT)


@pytest.fixture(scope="module")
def tsv_summaries(reader):
    return [summary(instance) for instance in reader.read(TSV)]


def test_registered_and_configurable_by_name():
    assert DatasetReader.by_name("early_exit_text_classification") is (
        EarlyExitTextClassificationReader
    )
    reader = DatasetReader.from_params(
        Params(
            {
                "type": "early_exit_text_classification",
                "transformer_model": TINY_BERT,
                "max_length": 5,
                "encoding": "utf-8",
                "skip_invalid_lines": True,
                "tokenizer_kwargs": {"do_lower_case": True},
                "max_instances": 2,
            }
        )
    )
    assert isinstance(reader, EarlyExitTextClassificationReader)
    instances = list(reader.read(TSV))
    assert len(instances) == 2
    assert wordpieces(instances[0]) == ["[CLS]", "a", "great", "movie", "[SEP]"]


def test_reads_tsv(reader):
    instances = list(reader.read(TSV))
    assert len(instances) == 16
    assert wordpieces(instances[0]) == [
        "[CLS]",
        "a",
        "great",
        "movie",
        "with",
        "a",
        "wonderful",
        "story",
        ".",
        "[SEP]",
    ]
    assert instances[0]["label"].label == "positive"
    assert wordpieces(instances[1]) == [
        "[CLS]",
        "a",
        "terrible",
        "film",
        ",",
        "a",
        "waste",
        "of",
        "time",
        "and",
        "money",
        ".",
        "[SEP]",
    ]
    assert instances[1]["label"].label == "negative"
    for instance in instances:
        assert set(instance.fields) == {"tokens", "label"}
        assert wordpieces(instance)[0] == "[CLS]"
        assert wordpieces(instance)[-1] == "[SEP]"
        assert wordpieces(instance).count("[SEP]") == 1
        assert set(type_ids(instance)) == {0}
        assert instance["label"]._label_namespace == "labels"
        # Reading in the main process applies the token indexers.
        indexer = instance["tokens"].token_indexers["tokens"]
        assert isinstance(indexer, PretrainedTransformerIndexer)
    assert Counter(instance["label"].label for instance in instances) == {
        "positive": 8,
        "negative": 8,
    }


def test_jsonl_gives_the_same_instances_as_tsv(reader, tsv_summaries):
    assert [summary(instance) for instance in reader.read(JSONL)] == tsv_summaries


@pytest.mark.parametrize(
    "source, name",
    [
        (TSV, "data"),
        (JSONL, "data"),
        (TSV, "data.txt"),
        (JSONL, "data.json"),
        (TSV, "data.csv"),
        (JSONL, "data.dat"),
    ],
)
def test_format_from_extension_or_content(reader, tsv_summaries, tmp_path, source, name):
    path = tmp_path / name
    shutil.copy(source, path)
    assert [summary(instance) for instance in reader.read(path)] == tsv_summaries
    assert [summary(instance) for instance in reader.read(str(path))] == tsv_summaries


def test_sniffing_skips_leading_blank_lines(reader, tmp_path):
    path = write(tmp_path / "data", '\n  \n{"text": "good film", "label": "positive"}\n')
    instances = list(reader.read(path))
    assert [summary(instance) for instance in instances] == [
        (
            [("[CLS]", 0), ("good", 0), ("film", 0), ("[SEP]", 0)],
            "positive",
        )
    ]


def test_text_to_instance_with_and_without_label(reader):
    instance = reader.text_to_instance("Great movie!")
    assert set(instance.fields) == {"tokens"}
    assert wordpieces(instance) == ["[CLS]", "great", "movie", "!", "[SEP]"]
    labelled = reader.text_to_instance("Great movie!", "positive")
    assert labelled["label"].label == "positive"
    assert reader.text_to_instance("bad", label=0)["label"].label == "0"


def test_labels_and_texts_are_stripped_and_json_int_labels_become_strings(reader, tmp_path):
    tsv = write(tmp_path / "data.tsv", " positive \t  good film  \r\n\n   \n\t\r\nnegative\tbad\n")
    assert [summary(instance) for instance in reader.read(tsv)] == [
        ([("[CLS]", 0), ("good", 0), ("film", 0), ("[SEP]", 0)], "positive"),
        ([("[CLS]", 0), ("bad", 0), ("[SEP]", 0)], "negative"),
    ]
    jsonl = write(
        tmp_path / "data.jsonl",
        '{"text": "good film", "label": 1}\n{"sentence": "bad", "label": 0, "id": 7}\n',
    )
    labels = [instance["label"].label for instance in reader.read(jsonl)]
    assert labels == ["1", "0"]


def test_byte_order_mark_is_ignored(reader, tmp_path):
    path = write(tmp_path / "data", b"\xef\xbb\xbfpositive\tgood film\n")
    assert [summary(instance)[1] for instance in reader.read(path)] == ["positive"]
    path = write(tmp_path / "data2", b'\xef\xbb\xbf{"text": "good film", "label": "positive"}\n')
    assert [summary(instance)[1] for instance in reader.read(path)] == ["positive"]


def test_truncation(tsv_summaries):
    reader = EarlyExitTextClassificationReader(TINY_BERT, max_length=6)
    instance = reader.text_to_instance("A terrible film, a waste of time and money.")
    assert wordpieces(instance) == ["[CLS]", "a", "terrible", "film", ",", "[SEP]"]
    # Short texts are left alone.
    assert wordpieces(reader.text_to_instance("bad film")) == ["[CLS]", "bad", "film", "[SEP]"]
    truncated = [summary(instance) for instance in reader.read(TSV)]
    for (tokens, label), (full_tokens, full_label) in zip(truncated, tsv_summaries):
        assert len(tokens) <= 6
        assert label == full_label
        if len(full_tokens) <= 6:
            assert tokens == full_tokens
        else:
            assert tokens == full_tokens[:5] + [("[SEP]", 0)]


@pytest.mark.parametrize("max_length", [6, 512])
def test_tokens_equal_allennlps_tokenize_truncate_and_add_special_tokens(max_length):
    reader = EarlyExitTextClassificationReader(TINY_BERT, max_length=max_length)
    plain = PretrainedTransformerTokenizer(TINY_BERT, add_special_tokens=False)
    for line in TSV.read_text().splitlines():
        text = line.split("\t", 1)[1]
        wordpieces = plain.tokenize(text)[: max_length - plain.num_special_tokens_for_sequence()]
        expected = plain.add_special_tokens(wordpieces)
        assert reader.text_to_instance(text)["tokens"].tokens == expected


def test_max_length_must_leave_room_for_text():
    with pytest.raises(ConfigurationError, match="max_length"):
        EarlyExitTextClassificationReader(TINY_BERT, max_length=2)
    reader = EarlyExitTextClassificationReader(TINY_BERT, max_length=3)
    assert wordpieces(reader.text_to_instance("good film")) == ["[CLS]", "good", "[SEP]"]


BAD_INPUTS = [
    ("bad.tsv", "positive\tgood film\n\nbad movie\n", 3, "no tab between label and text"),
    ("bad.tsv", "positive\tgood\nnegative\t   \n", 2, "empty text"),
    ("bad.tsv", "positive\tgood\nnegative\t\n", 2, "empty text"),
    ("bad.tsv", "  \tgood film\n", 1, "empty label"),
    ("bad.tsv", "positive\tgood\textra\n", 1, "too many fields"),
    ("bad.tsv", b"positive\tgood\nnegative\tbad \xff film\n", 2, "not valid in encoding 'utf-8'"),
    ("bad.jsonl", '{"text": "good", "label": "positive"}\n{"text": "bad"\n', 2, "invalid JSON"),
    ("bad.jsonl", '\n{"label": "positive"}\n', 2, 'missing key "text" or "sentence"'),
    ("bad.jsonl", '{"text": "good film"}\n', 1, 'missing key "label"'),
    ("bad.jsonl", '{"text": "good", "label": null}\n', 1, '"label" must be a string or an int'),
    ("bad.jsonl", '{"text": "good", "label": [1]}\n', 1, '"label" must be a string or an int'),
    ("bad.jsonl", '{"text": "good", "label": " "}\n', 1, "empty label"),
    ("bad.jsonl", '{"text": " ", "label": "positive"}\n', 1, "empty text"),
    ("bad.jsonl", '{"text": 3, "label": "positive"}\n', 1, '"text" must be a string'),
    ("bad.jsonl", '["good", "positive"]\n', 1, "expected a JSON object"),
    ("bad.jsonl", '{"text": "a", "sentence": "b", "label": "x"}\n', 1, "ambiguous text"),
    ("bad", '{"text": "good", "label": "positive"}\npositive\tgood\n', 2, "invalid JSON"),
]


@pytest.mark.parametrize("name, content, line_number, problem", BAD_INPUTS)
def test_bad_lines_raise_a_clear_error(reader, tmp_path, name, content, line_number, problem):
    path = write(tmp_path / name, content)
    with pytest.raises(DataFormatError) as info:
        list(reader.read(path))
    message = str(info.value)
    assert message.startswith(f"{path}, line {line_number}: ")
    assert problem in message
    assert info.value.line_number == line_number
    assert info.value.file_path == str(path)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name, content, line_number, problem", BAD_INPUTS)
def test_skip_invalid_lines(tmp_path, caplog, name, content, line_number, problem):
    reader = EarlyExitTextClassificationReader(TINY_BERT, skip_invalid_lines=True)
    path = write(tmp_path / name, content)
    json_lines = "json" in name or str(content).lstrip("b'\\n").startswith("{")
    good = '{"text": "good film", "label": "positive"}\n' if json_lines else "pos\tfine\n"
    with open(path, "ab") as data_file:
        data_file.write(good.encode())
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        instances = list(reader.read(path))
    assert len(instances) >= 1  # the good line at the end at least
    warnings = [
        record.getMessage() for record in caplog.records if str(path) in record.getMessage()
    ]
    assert len(warnings) == 1
    assert "Skipped 1 invalid line(s)" in warnings[0]
    assert f"(line {line_number})" in warnings[0]


def test_skip_invalid_lines_counts_and_lists_the_first_lines(tmp_path, caplog):
    reader = EarlyExitTextClassificationReader(TINY_BERT, skip_invalid_lines=True)
    lines = ["positive\tgood film" if number % 2 else "no tab here" for number in range(1, 21)]
    path = write(tmp_path / "data.tsv", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        instances = list(reader.read(path))
    assert len(instances) == 10
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [f"Skipped 10 invalid line(s) in {path} (line 2, 4, 6, 8, 10, ...)"]


def test_no_warning_without_invalid_lines(reader, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert len(list(reader.read(TSV))) == 16
    assert not [record for record in caplog.records if "Skipped" in record.getMessage()]


def test_missing_file_names_the_path(reader, tmp_path):
    path = tmp_path / "does_not_exist.tsv"
    with pytest.raises(FileNotFoundError) as info:
        list(reader.read(path))
    assert str(path) in str(info.value)


def test_max_instances_counts_instances_not_lines(tmp_path):
    reader = EarlyExitTextClassificationReader(TINY_BERT, max_instances=3)
    assert [summary(instance) for instance in reader.read(TSV)] == [
        summary(instance) for instance in reader.read(JSONL)
    ]
    assert len(list(reader.read(TSV))) == 3

    skipping = EarlyExitTextClassificationReader(
        TINY_BERT, max_instances=3, skip_invalid_lines=True
    )
    path = write(tmp_path / "data.tsv", "\n\nbad\n\nbad\na\tgood\nb\tbad\nc\tfine\nd\tfun\n")
    assert [summary(instance)[1] for instance in skipping.read(path)] == ["a", "b", "c"]


def test_encoding(tmp_path):
    path = write(
        tmp_path / "data.tsv", "positive\tgood film\nnegative\tna\u00efve film\n".encode("latin-1")
    )
    with pytest.raises(DataFormatError, match="line 2: bytes not valid in encoding 'utf-8'"):
        list(EarlyExitTextClassificationReader(TINY_BERT).read(path))
    reader = EarlyExitTextClassificationReader(TINY_BERT, encoding="latin-1")
    assert [summary(instance)[1] for instance in reader.read(path)] == ["positive", "negative"]


@pytest.mark.parametrize("encoding", ["no-such-encoding", "utf-16", "utf-32-le"])
def test_unusable_encodings_are_rejected(encoding):
    with pytest.raises(ConfigurationError, match="encoding"):
        EarlyExitTextClassificationReader(TINY_BERT, encoding=encoding)


def test_reads_several_files(reader, tsv_summaries):
    summaries = [summary(instance) for instance in reader.read([TSV, JSONL])]
    assert summaries == tsv_summaries + tsv_summaries


def test_shards_across_workers(tsv_summaries):
    seen = []
    for worker_id in range(3):
        reader = EarlyExitTextClassificationReader(TINY_BERT)
        reader._set_worker_info(WorkerInfo(num_workers=3, id=worker_id))
        shard = [summary(instance) for instance in reader.read(TSV)]
        assert 5 <= len(shard) <= 6
        seen.extend(shard)
    assert sorted(seen) == sorted(tsv_summaries)


def test_multiprocess_data_loader_yields_every_instance_once(tsv_summaries):
    reader = EarlyExitTextClassificationReader(TINY_BERT)
    loader = MultiProcessDataLoader(reader, str(TSV), batch_size=4, num_workers=2, quiet=True)
    instances = list(loader.iter_instances())
    assert len(instances) == len(tsv_summaries) == 16
    assert sorted(summary(instance) for instance in instances) == sorted(tsv_summaries)

    loader.index_with(Vocabulary.from_instances(instances))
    batches = list(loader)
    assert sum(len(batch["label"]) for batch in batches) == 16
    assert set(batches[0]["tokens"]["tokens"]) >= {"token_ids", "mask", "type_ids"}


def test_errors_surface_from_loader_workers(tmp_path):
    path = write(tmp_path / "bad.jsonl", json.dumps({"text": "good"}) + "\n")
    reader = EarlyExitTextClassificationReader(TINY_BERT)
    with pytest.raises(WorkerError, match=r'line 1: missing key \\?"label"'):
        # The loader reads all instances when it is created.
        loader = MultiProcessDataLoader(reader, str(path), batch_size=4, num_workers=2, quiet=True)
        list(loader.iter_instances())


def test_data_format_error_survives_pickling():
    error = DataFormatError("data/train.tsv", 17, "no tab between label and text")
    assert str(error) == "data/train.tsv, line 17: no tab between label and text"
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.file_path, copy.line_number, copy.problem) == (
        str(error),
        "data/train.tsv",
        17,
        "no tab between label and text",
    )


def test_lines_without_labels_are_read_only_when_labels_are_not_required(tmp_path):
    jsonl = write(
        tmp_path / "data.jsonl", '{"sentence": "good film"}\n{"text": "bad", "label": 0}\n'
    )
    tsv = write(tmp_path / "data.tsv", "good film\nnegative\tbad\n")
    reader = EarlyExitTextClassificationReader(TINY_BERT)
    for path in (jsonl, tsv):
        with pytest.raises(DataFormatError, match="line 1"):
            list(reader.read(path))
    reader.require_labels = False
    for path, label in ((jsonl, "0"), (tsv, "negative")):
        unlabelled, labelled = reader.read(path)
        assert "label" not in unlabelled.fields and wordpieces(unlabelled)[1:3] == ["good", "film"]
        assert labelled["label"].label == label


NO_WORDPIECES = [
    ("bad.tsv", "positive\tgood\nnegative\t\u200b\x01\u2060\n", 2),
    ("bad.jsonl", '{"text": "good", "label": "x"}\n{"text": "\\u200d\\ufffd", "label": "x"}\n', 2),
]


@pytest.mark.parametrize("name, content, line_number", NO_WORDPIECES)
def test_a_text_with_no_wordpieces_is_refused_like_an_empty_one(
    reader, tmp_path, caplog, name, content, line_number
):
    path = write(tmp_path / name, content)
    with pytest.raises(DataFormatError, match="empty text: it has no wordpieces") as info:
        list(reader.read(path))
    assert str(info.value).startswith(f"{path}, line {line_number}: ")
    skipping = EarlyExitTextClassificationReader(TINY_BERT, skip_invalid_lines=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert len(list(skipping.read(path))) == line_number - 1
    assert f"{path}, line {line_number}: empty text" in caplog.text
