"""
What both line readers do with files a user may give by mistake: a header line, an empty file, a
missing file or a directory, JSON lines named `.txt` and tab-separated lines named `.jsonl`.
"""

import json
import logging
import pickle

import pytest

from early_exit.common.cli_errors import UserError
from early_exit.dataset_readers import (
    DataFileNotFoundError,
    DataFormatError,
    EarlyExitNliReader,
    EarlyExitTextClassificationReader,
    NoInstancesError,
)
from tests import TINY_BERT
from tests.dataset_readers import summary, write

LOGGER_NAME = "early_exit.dataset_readers.line_reader"

TEXT = "positive\ta good film\nnegative\ta bad film\n"
NLI = "entailment\tA man sleeps.\tA person sleeps.\nneutral\tA man sleeps.\tHe dreams.\n"


@pytest.fixture(scope="module", params=["text", "nli"])
def kind(request):
    """Each case for both readers: (reader class, data lines, its header line)."""
    if request.param == "text":
        return EarlyExitTextClassificationReader, TEXT, "label\ttext\n"
    return EarlyExitNliReader, NLI, "label\tpremise\thypothesis\n"


def _labels(reader, path):
    return [summary(instance)[1] for instance in reader.read(path)]


@pytest.mark.parametrize(
    "header_for",
    [
        lambda own: own,
        lambda own: own.upper(),
        lambda own: "\n\n" + own,  # after blank lines
        lambda own: "gold_label\t" + own.split("\t", 1)[1],
        lambda own: "Label\tsomething else entirely\n",  # the label column alone
    ],
)
def test_a_header_line_is_an_error_never_a_class(kind, tmp_path, header_for):
    reader_class, data, own_header = kind
    header = header_for(own_header)
    path = write(tmp_path / "data.tsv", header + data)
    with pytest.raises(DataFormatError) as info:
        list(reader_class(TINY_BERT).read(path))
    line_number = header.count("\n")
    assert str(info.value).startswith(f"{path}, line {line_number}: a header line")
    assert '"skip_header": true' in str(info.value)


def test_sst2_style_header_with_the_columns_swapped_is_an_error(tmp_path):
    path = write(tmp_path / "glue.tsv", "sentence\tlabel\na good film\t1\n")
    with pytest.raises(DataFormatError, match="line 1: a header line \\(sentence, label\\)"):
        list(EarlyExitTextClassificationReader(TINY_BERT).read(path))


def test_skip_header_skips_the_first_line(kind, tmp_path):
    reader_class, data, own_header = kind
    reader = reader_class(TINY_BERT, skip_header=True)
    with_header = write(tmp_path / "with_header.tsv", "\n" + own_header + data)
    without = write(tmp_path / "without.tsv", data)
    assert _labels(reader, with_header) == _labels(reader_class(TINY_BERT), without)
    # JSON lines have no header: nothing is skipped
    jsonl = write(tmp_path / "data.jsonl", _as_json_lines(reader_class, data))
    assert _labels(reader, jsonl) == _labels(reader_class(TINY_BERT), without)


def test_skip_header_warns_when_the_first_line_does_not_look_like_one(tmp_path, caplog):
    path = write(tmp_path / "data.tsv", TEXT)
    reader = EarlyExitTextClassificationReader(TINY_BERT, skip_header=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert _labels(reader, path) == ["negative"]
    assert [record.getMessage() for record in caplog.records] == [
        f"skip_header: skipped line 1 of {path}, which does not look like a header: "
        "'positive\\ta good film'"
    ]


def test_skip_invalid_lines_skips_a_header_too(tmp_path):
    path = write(tmp_path / "data.tsv", "label\ttext\n" + TEXT)
    reader = EarlyExitTextClassificationReader(TINY_BERT, skip_invalid_lines=True)
    assert _labels(reader, path) == ["positive", "negative"]


def test_a_label_column_name_later_in_the_file_is_data(tmp_path):
    path = write(tmp_path / "data.tsv", TEXT + "label\ttext\n")
    labels = _labels(EarlyExitTextClassificationReader(TINY_BERT), path)
    assert labels == ["positive", "negative", "label"]


@pytest.mark.parametrize(
    "content, skip_header, reason",
    [
        ("", False, "it is empty or has only blank lines"),
        (" \n\n\t\n", False, "it is empty or has only blank lines"),
        ("\ufeff\n", False, "it is empty or has only blank lines"),
        ("label\ttext\n\n", True, "it has only a header line"),
    ],
)
def test_a_file_without_instances_is_an_error(tmp_path, content, skip_header, reason):
    path = write(tmp_path / "empty.tsv", content)
    reader = EarlyExitTextClassificationReader(TINY_BERT, skip_header=skip_header)
    with pytest.raises(NoInstancesError) as info:
        list(reader.read(path))
    assert str(info.value) == f"{path} holds no instances ({reason})"


def test_a_file_whose_lines_were_all_skipped_holds_no_instances(kind, tmp_path):
    reader_class, _, _ = kind
    path = write(tmp_path / "bad.tsv", "no tab here\nnor here\n")
    with pytest.raises(NoInstancesError, match="all 2 non-blank line\\(s\\) are invalid"):
        list(reader_class(TINY_BERT, skip_invalid_lines=True).read(path))


def test_missing_file_and_directory_name_the_path(kind, tmp_path):
    reader = kind[0](TINY_BERT)
    with pytest.raises(DataFileNotFoundError) as info:
        list(reader.read(tmp_path / "missing.tsv"))
    assert str(info.value) == f"{tmp_path / 'missing.tsv'}: data file not found"
    with pytest.raises(DataFileNotFoundError) as info:
        list(reader.read(tmp_path))
    assert str(info.value) == f"{tmp_path}: a directory, not a data file"


def test_json_lines_named_txt_get_a_hint_about_the_format(kind, tmp_path):
    reader_class, data, _ = kind
    path = write(tmp_path / "data.txt", _as_json_lines(reader_class, data))
    with pytest.raises(DataFormatError) as info:
        list(reader_class(TINY_BERT).read(path))
    message = str(info.value)
    assert message.startswith(f"{path}, line 1: no tab between label and ")
    assert "the line looks like JSON: name the file .jsonl" in message


def test_tab_separated_lines_named_jsonl_get_a_hint_about_the_format(kind, tmp_path):
    reader_class, data, _ = kind
    path = write(tmp_path / "data.jsonl", data)
    with pytest.raises(DataFormatError) as info:
        list(reader_class(TINY_BERT).read(path))
    message = str(info.value)
    assert message.startswith(f"{path}, line 1: invalid JSON")
    assert "the line looks tab-separated: name the file .tsv" in message


def test_no_hint_for_a_line_that_is_neither(tmp_path):
    path = write(tmp_path / "data.tsv", "just words\n")
    with pytest.raises(DataFormatError) as info:
        list(EarlyExitTextClassificationReader(TINY_BERT).read(path))
    assert str(info.value).endswith("line 1: no tab between label and text")


def test_label_lines_give_the_first_line_of_each_label(tmp_path):
    path = write(tmp_path / "data.tsv", "\n" + TEXT + "neutral\tmeh\npositive\tfine\n")
    reader = EarlyExitTextClassificationReader(TINY_BERT)
    assert reader.label_lines(path, ["neutral", "positive", "absent"]) == {
        "positive": 2,
        "neutral": 4,
    }


@pytest.mark.parametrize(
    "error",
    [
        DataFormatError("data.tsv", 3, "empty text"),
        NoInstancesError("data.tsv", "it is empty"),
        DataFileNotFoundError("data.tsv: data file not found"),
    ],
)
def test_errors_are_user_errors_and_picklable(error):
    assert isinstance(error, UserError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)


def _as_json_lines(reader_class, data: str) -> str:
    names = ("label",) + reader_class.text_fields
    rows = [dict(zip(names, line.split("\t"))) for line in data.splitlines()]
    return "".join(json.dumps(row) + "\n" for row in rows)
