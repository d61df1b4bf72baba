"""
Inputs nobody planned for, on both readers and both formats (property-based, with hypothesis):
random unicode, tabs, carriage returns and newlines inside fields, very long fields. Every file
either gives instances whose texts and labels are its fields, or a `DataFormatError` naming the
first line that cannot be read: never another exception.

The expected outcome comes from the formats as docs/training.md states them: TSV lines are split on
`\\n` only, a line is `label<TAB>field[<TAB>field]` with each field stripped of surrounding
whitespace and none empty, blank lines are skipped, and a byte order mark starts the file only.
"""

import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from early_exit.dataset_readers import (
    DataFormatError,
    EarlyExitNliReader,
    EarlyExitTextClassificationReader,
    NoInstancesError,
)
from tests import TINY_BERT
from tests.dataset_readers import summary

MAX_LENGTH = 24

# Any character that can be written as UTF-8, with the troublesome ones made frequent.
SPECIAL = "\t\r\n\x0b\x0c\x1c\x85\u2028\u2029\ufeff\x00 \u200b\u0301"
ANY_CHARACTER = st.characters(blacklist_categories=("Cs",))
FIELD = st.text(st.one_of(st.sampled_from(SPECIAL), ANY_CHARACTER), max_size=12)
# Very long: thousands of characters (built by repetition, which hypothesis does cheaply).
LONG_FIELD = st.builds(lambda piece, times: piece * times, FIELD, st.integers(500, 2000))


@pytest.fixture(scope="module")
def readers():
    return {
        "text": EarlyExitTextClassificationReader(TINY_BERT, max_length=MAX_LENGTH),
        "nli": EarlyExitNliReader(TINY_BERT, max_length=MAX_LENGTH),
    }


def _read(reader, content: bytes, suffix: str) -> Tuple[Optional[list], Optional[int]]:
    """The reader's instances from a file with `content`, or the line its error names."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"data{suffix}"
        path.write_bytes(content)
        try:
            return list(reader.read(str(path))), None
        except NoInstancesError:  # a file without any instance is refused as a whole
            return [], None
        except DataFormatError as error:
            assert str(path) in str(error) and f"line {error.line_number}:" in str(error)
            return None, error.line_number


def _expected_instances(reader, records: List[Dict[str, str]]) -> list:
    return [summary(reader.text_to_instance(**record)) for record in records]


def _looks_like_a_header(values: List[str], reader) -> bool:
    """docs/errors.md's header rule: the first column names a label, or every column a field."""
    names = [value.lower() for value in values]
    columns = {"label", "gold_label", "sentence1", "sentence2", *reader.text_fields}
    for aliases in reader.json_aliases.values():
        columns.update(aliases)
    return names[0] in ("label", "gold_label") or (
        len(names) > 1 and all(name in columns for name in names)
    )


def _expected_tsv(content: str, fields: Tuple[str, ...], reader):
    """(records, None) for a readable TSV text, else (None, the first unreadable line)."""
    records = []
    first = True
    for number, line in enumerate(content.split("\n"), start=1):
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        values = [value.strip() for value in line.split("\t")]
        if first and _looks_like_a_header(values, reader):
            return None, number
        first = False
        if len(values) != len(fields) or not all(values):
            return None, number
        records.append(dict(zip(fields, values)))
    return records, None


def _check(reader, content: bytes, suffix: str, expected_records, expected_line) -> None:
    instances, line = _read(reader, content, suffix)
    if expected_line is not None:
        assert line == expected_line
        return
    assert line is None
    assert [summary(instance) for instance in instances] == _expected_instances(
        reader, expected_records
    )
    for instance in instances:
        assert len(instance["tokens"].tokens) <= MAX_LENGTH


@pytest.mark.parametrize("kind", ["text", "nli"])
@given(rows=st.lists(st.lists(st.one_of(FIELD, LONG_FIELD), min_size=1, max_size=4), max_size=4))
@example(rows=[["positive", "a\rb\x0bc\u2028"], ["negative", "two\nlines"]])
@example(rows=[["\ufefflabel", "text"], [" \t ", "\x85"], ["x", "y"]])
def test_tsv_lines_give_their_fields_or_an_error_naming_the_first_bad_line(readers, kind, rows):
    reader = readers[kind]
    content = "".join("\t".join(row) + "\n" for row in rows)
    fields = ("label",) + reader.text_fields
    expected_records, expected_line = _expected_tsv(content, fields, reader)
    _check(reader, content.encode("utf-8"), ".tsv", expected_records, expected_line)


JSON_VALUE = st.one_of(
    FIELD,
    LONG_FIELD,
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
)


def _json_problem(obj: Dict[str, Any], fields: Tuple[str, ...], aliases) -> bool:
    """Whether a JSON record must be refused."""
    label = obj.get("label")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
        return True
    for name in fields:
        present = [key for key in (name,) + aliases.get(name, ()) if key in obj]
        if len(present) != 1:
            return True
        value = obj[present[0]]
        if not isinstance(value, str) or not value.strip():
            return True
    return False


@pytest.mark.parametrize("kind", ["text", "nli"])
@given(
    objects=st.lists(
        st.dictionaries(
            st.sampled_from(["label", "text", "sentence", "premise", "hypothesis", "id"]),
            JSON_VALUE,
        ),
        max_size=4,
    ),
    ensure_ascii=st.booleans(),
)
@example(
    objects=[{"label": 1, "text": "a\nb", "premise": "c\td", "hypothesis": "\r"}],
    ensure_ascii=False,
)
def test_json_lines_give_their_fields_or_an_error_naming_the_first_bad_line(
    readers, kind, objects, ensure_ascii
):
    reader = readers[kind]
    fields = reader.text_fields
    lines = [json.dumps(obj, ensure_ascii=ensure_ascii) for obj in objects]
    expected_records, expected_line = [], None
    for number, obj in enumerate(objects, start=1):
        if _json_problem(obj, fields, reader.json_aliases):
            expected_records, expected_line = None, number
            break
        record = {"label": str(obj["label"]).strip()}
        for name in fields:
            key = next(key for key in (name,) + reader.json_aliases.get(name, ()) if key in obj)
            record[name] = obj[key].strip()
        expected_records.append(record)
    content = "".join(line + "\n" for line in lines).encode("utf-8")
    _check(reader, content, ".jsonl", expected_records, expected_line)


@pytest.mark.parametrize("kind", ["text", "nli"])
@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ""])
@given(text=st.text(st.one_of(st.sampled_from(SPECIAL + '{}[]":,'), ANY_CHARACTER)))
@example(text='{"label": ' + "1" * 5000 + ', "text": "too many digits"}\n')
@example(text="[" * 100_000 + "\n")
@example(text='{"label": "a", "text": ' + "{" * 100_000 + "\n")
def test_any_file_gives_instances_or_a_data_format_error(readers, kind, suffix, text):
    """
    No oracle here: whatever the bytes, nothing but a `DataFormatError` (or, for a file without
    any instance, a `NoInstancesError`) may be raised.
    """
    instances, _ = _read(readers[kind], text.encode("utf-8"), suffix)
    for instance in instances or []:
        assert instance["label"].label.strip()
        assert len(instance["tokens"].tokens) <= MAX_LENGTH
