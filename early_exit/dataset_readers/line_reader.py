"""
Shared machinery for the line-based dataset readers of this package.

Both readers read files with one example per line, either tab-separated
(`label<TAB>text` or `label<TAB>premise<TAB>hypothesis`) or JSON lines. Everything that does
not depend on the number of text fields (opening the file, choosing the format, decoding,
splitting, validating, error reporting, skipping bad lines, sharding and token indexers) lives
here, in `EarlyExitLineReader`.
"""

import codecs
import json
import logging
from os import PathLike
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from overrides import overrides

from allennlp.common.checks import ConfigurationError
from allennlp.common.file_utils import cached_path
from allennlp.data import DatasetReader, Instance
from allennlp.data.token_indexers import PretrainedTransformerIndexer, TokenIndexer
from allennlp.data.tokenizers import PretrainedTransformerTokenizer

logger = logging.getLogger(__name__)

PathOrStr = Union[str, PathLike]

JSON_EXTENSIONS = (".jsonl", ".json")
TSV_EXTENSIONS = (".tsv", ".txt")

# How many line numbers of skipped lines the end-of-file warning lists.
_MAX_REPORTED_LINES = 5


class DataFormatError(ValueError):
    """
    Raised when a line of a data file cannot be read. The message names the file, the 1-based
    line number and the problem, e.g. `"data/train.tsv, line 17: no tab between label and text"`.

    # Parameters

    file_path : `str`
        The data file, as it was given to the reader.
    line_number : `int`
        1-based number of the offending line.
    problem : `str`
        What is wrong with the line.
    """

    def __init__(self, file_path: str, line_number: int, problem: str) -> None:
        super().__init__(f"{file_path}, line {line_number}: {problem}")
        self.file_path = file_path
        self.line_number = line_number
        self.problem = problem

    def __reduce__(self):
        # Keeps the exception picklable (it has a custom constructor), which matters when it is
        # raised inside a data loader worker process.
        return (type(self), (self.file_path, self.line_number, self.problem))


class _InvalidLine(Exception):
    """Internal: a line is invalid; the reader turns this into a `DataFormatError`."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class EarlyExitLineReader(DatasetReader):
    """
    Base class for readers of files with one labelled example per line. Not registered itself;
    subclasses define which text fields a line holds and how they become an `Instance`.

    A line is either tab-separated, `label<TAB>field_1[<TAB>field_2]`, or a JSON object with a
    `"label"` key and one key per text field. The format is chosen by the file extension
    (`.jsonl` and `.json` mean JSON lines, `.tsv` and `.txt` mean tab-separated) and otherwise by
    the content: JSON lines when the first non-blank line starts with `{`.

    Blank lines are ignored. Any other line that cannot be read raises a `DataFormatError` naming
    the file, the line number and the problem, unless `skip_invalid_lines` is set, in which case
    such lines are skipped and a warning with their count is logged at the end of the file.

    Instances have a `tokens` `TextField` (with the transformer's special tokens) and, when a
    label is known, a `label` `LabelField` in the `"labels"` namespace.

    Lines are sharded across distributed processes and data loader workers, so the readers work
    with multi-process data loading and distributed training.

    # Parameters

    transformer_model : `str`
        Name of a Hugging Face transformer or path to a local directory with its tokenizer files.
        Used for both the `PretrainedTransformerTokenizer` and the `PretrainedTransformerIndexer`.
    max_length : `int`, optional (default = `512`)
        Maximum number of wordpieces of an instance, special tokens included. Longer inputs are
        truncated.
    encoding : `str`, optional (default = `"utf-8"`)
        Encoding of the data files. It must encode the newline as the single byte `\\n`
        (UTF-8, Latin-1, cp1252, ... but not UTF-16 or UTF-32).
    skip_invalid_lines : `bool`, optional (default = `False`)
        If `True`, invalid lines are skipped (and counted in a warning) instead of raising a
        `DataFormatError`.
    tokenizer_kwargs : `Dict[str, Any]`, optional (default = `None`)
        Extra arguments for `AutoTokenizer.from_pretrained`, passed to both the tokenizer and
        the token indexer.
    require_labels : `bool`, optional (default = `True`)
        If `False`, lines without a label are read too (instances without a `label` field): a
        JSON object without `"label"` (the predictor's input lines), or a tab-separated line with
        only the text fields. Settable after construction (`reader.require_labels = False`), as
        the label-free threshold sweep does.
    **kwargs
        Passed on to `DatasetReader` (e.g. `max_instances`).
    """

    # The text fields of a line, in the order they follow the label in the tab-separated format.
    # Set by subclasses.
    text_fields: Tuple[str, ...] = ()
    # JSON keys accepted for a text field besides its own name.
    json_aliases: Dict[str, Tuple[str, ...]] = {}

    def __init__(
        self,
        transformer_model: str,
        max_length: int = 512,
        encoding: str = "utf-8",
        skip_invalid_lines: bool = False,
        tokenizer_kwargs: Optional[Dict[str, Any]] = None,
        require_labels: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            manual_distributed_sharding=True, manual_multiprocess_sharding=True, **kwargs
        )
        if not self.text_fields:
            raise TypeError(f"{type(self).__name__} must define `text_fields`")
        self._encoding = self._check_encoding(encoding)
        self._skip_invalid_lines = skip_invalid_lines
        self.require_labels = require_labels
        self._tokenizer = PretrainedTransformerTokenizer(
            transformer_model, add_special_tokens=False, tokenizer_kwargs=tokenizer_kwargs
        )
        self._token_indexers: Dict[str, TokenIndexer] = {
            "tokens": PretrainedTransformerIndexer(
                transformer_model, tokenizer_kwargs=tokenizer_kwargs
            )
        }

        if len(self.text_fields) == 1:
            num_special_tokens = self._tokenizer.num_special_tokens_for_sequence()
        else:
            num_special_tokens = self._tokenizer.num_special_tokens_for_pair()
        # Room for the special tokens and at least one wordpiece of every text field.
        min_length = num_special_tokens + len(self.text_fields)
        if max_length < min_length:
            raise ConfigurationError(
                f"max_length={max_length} is too small: {transformer_model} needs "
                f"{num_special_tokens} special tokens, so max_length must be at least {min_length}"
            )
        # Tokenizers without a known limit report a huge sentinel value as model_max_length.
        model_max_length = getattr(self._tokenizer.tokenizer, "model_max_length", None) or 10**30
        if max_length > model_max_length:
            logger.warning(
                "max_length=%d is larger than the %d tokens %s supports",
                max_length,
                model_max_length,
                transformer_model,
            )
        self._max_length = max_length

    @staticmethod
    def _check_encoding(encoding: str) -> str:
        try:
            codecs.lookup(encoding)
            newline = "\n".encode(encoding)
        except LookupError as error:
            raise ConfigurationError(f"unknown encoding {encoding!r}: {error}") from error
        if newline != b"\n":
            raise ConfigurationError(
                f"encoding {encoding!r} is not supported: files are split into lines on the byte "
                "'\\n', so the encoding must be ASCII-compatible (e.g. utf-8, latin-1)"
            )
        return encoding

    @overrides
    def _read(self, file_path: Union[PathOrStr, Sequence[PathOrStr]]) -> Iterator[Instance]:
        """
        Reads one file, or several files one after the other when given a list of paths.
        """
        if isinstance(file_path, (list, tuple)):
            paths: Sequence[PathOrStr] = file_path
        else:
            paths = [file_path]
        records = (record for path in paths for record in self._read_records(path))
        for _, record in self.shard_iterable(records):
            yield self.text_to_instance(**record)

    @overrides
    def apply_token_indexers(self, instance: Instance) -> None:
        instance.fields["tokens"].token_indexers = self._token_indexers  # type: ignore

    def _read_records(self, file_path: PathOrStr) -> Iterator[Tuple[int, Dict[str, str]]]:
        """
        Yields `(line_number, record)` for every valid line of the file, where `record` maps
        `"label"` and the text fields to strings. Every process and worker parses the whole
        file (parsing is cheap); only tokenization happens after sharding. This way
        `max_instances` counts instances, not lines, and the skip warning is complete.
        """
        display_path = str(file_path)
        try:
            local_path = cached_path(file_path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{display_path}: data file not found") from error
        json_lines = self._is_json_lines(display_path, local_path)

        num_skipped = 0
        skipped_lines: List[int] = []
        with open(local_path, "rb") as data_file:
            for line_number, raw_line in enumerate(data_file, start=1):
                try:
                    record = self._parse_line(raw_line, line_number, json_lines)
                except _InvalidLine as invalid:
                    error = DataFormatError(display_path, line_number, invalid.problem)
                    if not self._skip_invalid_lines:
                        raise error from None
                    logger.debug("Skipping invalid line: %s", error)
                    num_skipped += 1
                    if len(skipped_lines) < _MAX_REPORTED_LINES:
                        skipped_lines.append(line_number)
                    continue
                if record is not None:
                    yield line_number, record

        if num_skipped and self._is_first_shard():
            listed = ", ".join(str(number) for number in skipped_lines)
            if num_skipped > len(skipped_lines):
                listed += ", ..."
            logger.warning(
                "Skipped %d invalid line(s) in %s (line %s)", num_skipped, display_path, listed
            )

    def _is_first_shard(self) -> bool:
        """Whether this is the first worker of the first process, so a warning is logged once."""
        worker_info = self.get_worker_info()
        distributed_info = self.get_distributed_info()
        return (worker_info is None or worker_info.id == 0) and (
            distributed_info is None or distributed_info.global_rank == 0
        )

    def _is_json_lines(self, display_path: str, local_path: PathOrStr) -> bool:
        suffix = Path(display_path).suffix.lower()
        if suffix in JSON_EXTENSIONS:
            return True
        if suffix in TSV_EXTENSIONS:
            return False
        with open(local_path, "rb") as data_file:
            for raw_line in data_file:
                line = raw_line.decode(self._encoding, errors="replace").lstrip("\ufeff")
                if line.strip():
                    return line.lstrip().startswith("{")
        return False

    def _parse_line(
        self, raw_line: bytes, line_number: int, json_lines: bool
    ) -> Optional[Dict[str, str]]:
        """Returns the record of a line, `None` for a blank line, or raises `_InvalidLine`."""
        try:
            line = raw_line.decode(self._encoding)
        except UnicodeDecodeError as error:
            raise _InvalidLine(
                f"bytes not valid in encoding {self._encoding!r} "
                f"({error.reason} at byte {error.start} of the line)"
            ) from None
        if line_number == 1:
            line = line.lstrip("\ufeff")  # byte order mark
        if not line.strip():
            return None
        line = line.rstrip("\r\n")
        if json_lines:
            return self._parse_json_line(line)
        return self._parse_tsv_line(line)

    def _parse_tsv_line(self, line: str) -> Dict[str, str]:
        field_names = ("label",) + self.text_fields
        values = line.split("\t")
        if not self.require_labels and len(values) == len(self.text_fields):
            field_names = self.text_fields
        if len(values) < len(field_names):
            missing = field_names[len(values)]
            previous = field_names[len(values) - 1]
            problem = f"no tab between {previous} and {missing}"
            if len(values) > 1:
                problem += (
                    f" (expected {len(field_names)} tab-separated fields: "
                    f"{', '.join(field_names)}; found {len(values)})"
                )
            raise _InvalidLine(problem)
        if len(values) > len(field_names):
            raise _InvalidLine(
                f"too many fields: expected {len(field_names)} tab-separated fields "
                f"({', '.join(field_names)}), found {len(values)}"
            )
        record = {name: value.strip() for name, value in zip(field_names, values)}
        for name in field_names:
            if not record[name]:
                raise _InvalidLine(f"empty {name}")
        return record

    def _parse_json_line(self, line: str) -> Dict[str, str]:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            problem = f"invalid JSON ({error.msg} at column {error.colno})"
            if line.lstrip().startswith("["):
                problem += "; expected JSON lines, one object per line"
            raise _InvalidLine(problem) from None
        if not isinstance(obj, dict):
            raise _InvalidLine(f"expected a JSON object, got {type(obj).__name__}")

        record: Dict[str, str] = {}
        if "label" in obj:
            label = obj["label"]
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise _InvalidLine(f'"label" must be a string or an integer, got {label!r}')
            record["label"] = str(label).strip()
            if not record["label"]:
                raise _InvalidLine("empty label")
        elif self.require_labels:
            raise _InvalidLine('missing key "label"')

        for name in self.text_fields:
            keys = (name,) + self.json_aliases.get(name, ())
            present = [key for key in keys if key in obj]
            if not present:
                raise _InvalidLine(f"missing key {' or '.join(json.dumps(key) for key in keys)}")
            if len(present) > 1:
                both = " and ".join(json.dumps(key) for key in present)
                raise _InvalidLine(f"ambiguous {name}: both {both} are given")
            value = obj[present[0]]
            if not isinstance(value, str):
                raise _InvalidLine(f'"{present[0]}" must be a string, got {type(value).__name__}')
            record[name] = value.strip()
            if not record[name]:
                raise _InvalidLine(f"empty {name}")
        return record
