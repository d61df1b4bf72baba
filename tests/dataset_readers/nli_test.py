import logging
import shutil
from collections import Counter

import pytest
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from allennlp.data import DatasetReader, Vocabulary
from allennlp.data.data_loaders import MultiProcessDataLoader
from allennlp.data.dataset_readers.dataset_reader import WorkerInfo
from allennlp.data.token_indexers import PretrainedTransformerIndexer

from early_exit.dataset_readers import DataFormatError, EarlyExitNliReader
from tests import FIXTURES_ROOT, TINY_BERT
from tests.dataset_readers import summary, type_ids, wordpieces, write

TSV = FIXTURES_ROOT / "data" / "nli.tsv"
JSONL = FIXTURES_ROOT / "data" / "nli.jsonl"
LOGGER_NAME = "early_exit.dataset_readers.line_reader"


@pytest.fixture(scope="module")
def reader() -> EarlyExitNliReader:
    return EarlyExitNliReader(TINY_BERT)


@pytest.fixture(scope="module")
def tsv_summaries(reader):
    return [summary(instance) for instance in reader.read(TSV)]


def split_pair(tokens):
    """Premise and hypothesis wordpieces of `[CLS] premise [SEP] hypothesis [SEP]`."""
    texts = [text for text, _ in tokens]
    assert texts[0] == "[CLS]" and texts[-1] == "[SEP]" and texts.count("[SEP]") == 2
    middle = texts.index("[SEP]")
    return texts[1:middle], texts[middle + 1 : -1]


def test_registered_and_configurable_by_name():
    assert DatasetReader.by_name("early_exit_nli") is EarlyExitNliReader
    reader = DatasetReader.from_params(
        Params(
            {
                "type": "early_exit_nli",
                "transformer_model": TINY_BERT,
                "max_length": 128,
                "encoding": "utf-8",
                "skip_invalid_lines": False,
                "tokenizer_kwargs": {"do_lower_case": True},
                "max_instances": 4,
            }
        )
    )
    assert isinstance(reader, EarlyExitNliReader)
    assert len(list(reader.read(TSV))) == 4


def test_reads_tsv_as_one_sentence_pair(reader):
    instances = list(reader.read(TSV))
    assert len(instances) == 15
    first = instances[0]
    assert set(first.fields) == {"tokens", "label"}
    assert wordpieces(first) == [
        "[CLS]",
        "a",
        "man",
        "is",
        "playing",
        "with",
        "a",
        "ball",
        "outside",
        ".",
        "[SEP]",
        "a",
        "person",
        "is",
        "playing",
        ".",
        "[SEP]",
    ]
    assert type_ids(first) == [0] * 11 + [1] * 6
    assert first["label"].label == "entailment"
    assert first["label"]._label_namespace == "labels"
    assert isinstance(first["tokens"].token_indexers["tokens"], PretrainedTransformerIndexer)

    for instance in instances:
        tokens = wordpieces(instance)
        premise, hypothesis = split_pair(summary(instance)[0])
        middle = len(premise) + 1
        assert tokens[middle] == "[SEP]"
        assert type_ids(instance) == [0] * (middle + 1) + [1] * (len(hypothesis) + 1)
    assert Counter(instance["label"].label for instance in instances) == {
        "entailment": 5,
        "neutral": 5,
        "contradiction": 5,
    }


def test_same_fields_as_allennlp_models_snli_reader(reader):
    from allennlp.data.tokenizers import PretrainedTransformerTokenizer
    from allennlp_models.pair_classification.dataset_readers.snli import SnliReader

    snli = SnliReader(tokenizer=PretrainedTransformerTokenizer(TINY_BERT, add_special_tokens=False))
    expected = snli.text_to_instance("A man is sleeping.", "A person sleeps.", "neutral")
    ours = reader.text_to_instance("A man is sleeping.", "A person sleeps.", "neutral")
    assert set(ours.fields) == set(expected.fields) == {"tokens", "label"}
    assert summary(ours) == summary(expected)


def test_jsonl_gives_the_same_instances_as_tsv(reader, tsv_summaries):
    assert [summary(instance) for instance in reader.read(JSONL)] == tsv_summaries


@pytest.mark.parametrize(
    "source, name", [(TSV, "nli"), (JSONL, "nli"), (TSV, "nli.txt"), (JSONL, "nli.json")]
)
def test_format_from_extension_or_content(reader, tsv_summaries, tmp_path, source, name):
    path = tmp_path / name
    shutil.copy(source, path)
    assert [summary(instance) for instance in reader.read(path)] == tsv_summaries


def test_text_to_instance_with_and_without_label(reader):
    instance = reader.text_to_instance("A dog is running.", "A person is outside.")
    assert set(instance.fields) == {"tokens"}
    assert split_pair(summary(instance)[0]) == (
        ["a", "dog", "is", "running", "."],
        ["a", "person", "is", "outside", "."],
    )
    labelled = reader.text_to_instance("A dog is running.", "A cat is sleeping.", "contradiction")
    assert labelled["label"].label == "contradiction"
    assert reader.text_to_instance("a", "b", label=2)["label"].label == "2"


def test_truncation_cuts_the_longer_side_first():
    # premise: a man is playing with a ball outside . (9), hypothesis: a person is playing . (5)
    premise, hypothesis = "A man is playing with a ball outside.", "A person is playing."
    reader = EarlyExitNliReader(TINY_BERT, max_length=13)
    assert wordpieces(reader.text_to_instance(premise, hypothesis)) == (
        ["[CLS]", "a", "man", "is", "playing", "with", "[SEP]"]
        + ["a", "person", "is", "playing", ".", "[SEP]"]
    )
    # The hypothesis is the longer side here.
    assert wordpieces(reader.text_to_instance(hypothesis, premise)) == (
        ["[CLS]", "a", "person", "is", "playing", ".", "[SEP]"]
        + ["a", "man", "is", "playing", "with", "[SEP]"]
    )
    # Once both sides are equally long, both are cut, the hypothesis first.
    reader = EarlyExitNliReader(TINY_BERT, max_length=10)
    instance = reader.text_to_instance(premise, hypothesis)
    assert wordpieces(instance) == (
        ["[CLS]", "a", "man", "is", "playing", "[SEP]"] + ["a", "person", "is", "[SEP]"]
    )
    assert type_ids(instance) == [0] * 6 + [1] * 4
    # A pair that fits is left alone.
    assert split_pair(summary(reader.text_to_instance("good", "bad"))[0]) == (["good"], ["bad"])


@pytest.mark.parametrize("max_length", [5, 8, 11, 14, 17])
def test_truncated_fixture_pairs_fit_and_keep_the_longest_first_rule(tsv_summaries, max_length):
    reader = EarlyExitNliReader(TINY_BERT, max_length=max_length)
    budget = max_length - 3
    for instance, (full_tokens, full_label) in zip(reader.read(TSV), tsv_summaries):
        tokens, label = summary(instance)
        assert label == full_label
        assert len(tokens) <= max_length
        premise, hypothesis = split_pair(tokens)
        full_premise, full_hypothesis = split_pair(full_tokens)
        assert premise == full_premise[: len(premise)]
        assert hypothesis == full_hypothesis[: len(hypothesis)]
        assert len(premise) + len(hypothesis) == min(
            budget, len(full_premise) + len(full_hypothesis)
        )
        if len(premise) < len(full_premise):
            assert len(premise) >= len(hypothesis)
        if len(hypothesis) < len(full_hypothesis):
            assert len(hypothesis) >= len(premise) - 1


def test_max_length_must_leave_room_for_both_sides():
    with pytest.raises(ConfigurationError, match="max_length=4 is too small"):
        EarlyExitNliReader(TINY_BERT, max_length=4)
    reader = EarlyExitNliReader(TINY_BERT, max_length=5)
    instance = reader.text_to_instance("A man is playing.", "A person is playing.")
    assert wordpieces(instance) == ["[CLS]", "a", "[SEP]", "a", "[SEP]"]


BAD_INPUTS = [
    (
        "bad.tsv",
        "entailment\tA man.\tA person.\nentailment\n",
        2,
        "no tab between label and premise",
    ),
    ("bad.tsv", "\nentailment\tA man is sleeping.\n", 2, "no tab between premise and hypothesis"),
    ("bad.tsv", "entailment\t  \tA person.\n", 1, "empty premise"),
    ("bad.tsv", "entailment\tA man.\t \n", 1, "empty hypothesis"),
    ("bad.tsv", "entailment\tA man.\t\n", 1, "empty hypothesis"),
    ("bad.tsv", "entailment\tA man.\t\u200b\u200c\n", 1, "empty hypothesis: it has no wordpieces"),
    (
        "bad.jsonl",
        '{"premise": "\\u0001", "hypothesis": "B", "label": "x"}\n',
        1,
        "empty premise: it",
    ),
    ("bad.tsv", " \tA man.\tA person.\n", 1, "empty label"),
    ("bad.tsv", "neutral\tA man.\tA person.\tA dog.\n", 1, "too many fields"),
    ("bad.tsv", b"neutral\tA man.\tA person.\nneutral\tA \x80.\tB.\n", 2, "not valid in encoding"),
    ("bad.jsonl", '{"premise": "A man.", "label": "neutral"}\n', 1, 'missing key "hypothesis"'),
    ("bad.jsonl", '{"hypothesis": "A man.", "label": "neutral"}\n', 1, 'missing key "premise"'),
    ("bad.jsonl", '{"premise": "A", "hypothesis": "B"}\n', 1, 'missing key "label"'),
    ("bad.jsonl", '{"premise": "A", "hypothesis": " ", "label": "x"}\n', 1, "empty hypothesis"),
    ("bad.jsonl", '{"premise": ["A"], "hypothesis": "B", "label": "x"}\n', 1, '"premise" must'),
    ("bad.jsonl", '{"premise": "A", "hypothesis": "B", "label": "x"}\n{"premise"\n', 2, "JSON"),
]


@pytest.mark.parametrize("name, content, line_number, problem", BAD_INPUTS)
def test_bad_lines_raise_a_clear_error(reader, tmp_path, name, content, line_number, problem):
    path = write(tmp_path / name, content)
    with pytest.raises(DataFormatError) as info:
        list(reader.read(path))
    assert str(info.value).startswith(f"{path}, line {line_number}: ")
    assert problem in str(info.value)


def test_skip_invalid_lines(tmp_path, caplog):
    reader = EarlyExitNliReader(TINY_BERT, skip_invalid_lines=True)
    lines = [
        b"neutral\tA man.\tA person.",  # 1: valid
        b"entailment",  # 2: no tab
        b"",  # 3: blank, ignored silently
        b"entailment\tA man is sleeping.",  # 4: no hypothesis
        b"entailment\t \tA person.",  # 5: empty premise
        b"contradiction\tA man.\tA dog.",  # 6: valid
        b"neutral\tA man.\t",  # 7: empty hypothesis
        b" \tA man.\tA person.",  # 8: empty label
        b"neutral\tA.\tB.\tC.",  # 9: too many fields
        b"neutral\tA \x80.\tB.",  # 10: not utf-8
        b"entailment\tA dog.\tAn animal.",  # 11: valid
    ]
    path = write(tmp_path / "bad.tsv", b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        instances = list(reader.read(path))
    labels = [instance["label"].label for instance in instances]
    assert labels == ["neutral", "contradiction", "entailment"]
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [f"Skipped 7 invalid line(s) in {path} (line 2, 4, 5, 7, 8, ...)"]


def test_missing_file_names_the_path(reader, tmp_path):
    path = tmp_path / "no_such_dir" / "nli.jsonl"
    with pytest.raises(FileNotFoundError, match=str(path)):
        list(reader.read(str(path)))


def test_max_instances():
    reader = EarlyExitNliReader(TINY_BERT, max_instances=5)
    labels = [instance["label"].label for instance in reader.read(JSONL)]
    assert labels == ["entailment", "contradiction", "neutral", "entailment", "contradiction"]


def test_shards_across_workers(tsv_summaries):
    seen = []
    for worker_id in range(2):
        reader = EarlyExitNliReader(TINY_BERT)
        reader._set_worker_info(WorkerInfo(num_workers=2, id=worker_id))
        shard = [summary(instance) for instance in reader.read(JSONL)]
        assert len(shard) == (8 if worker_id == 0 else 7)
        seen.extend(shard)
    assert sorted(seen) == sorted(tsv_summaries)


def test_multiprocess_data_loader_yields_every_instance_once(tsv_summaries):
    reader = EarlyExitNliReader(TINY_BERT)
    loader = MultiProcessDataLoader(reader, str(JSONL), batch_size=4, num_workers=2, quiet=True)
    instances = list(loader.iter_instances())
    assert len(instances) == len(tsv_summaries) == 15
    assert sorted(summary(instance) for instance in instances) == sorted(tsv_summaries)

    loader.index_with(Vocabulary.from_instances(instances))
    batches = list(loader)
    assert sum(len(batch["label"]) for batch in batches) == 15
    type_id_tensor = batches[0]["tokens"]["tokens"]["type_ids"]
    assert type_id_tensor.max().item() == 1
