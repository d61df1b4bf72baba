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
import os
from os import PathLike
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from overrides import overrides

from allennlp.common.checks import ConfigurationError
from allennlp.common.file_utils import cached_path
from allennlp.data import DatasetReader, Instance
from allennlp.data.token_indexers import PretrainedTransformerIndexer, TokenIndexer
from allennlp.data.tokenizers import PretrainedTransformerTokenizer

from early_exit.common.encoder_files import carried_transformer
from early_exit.common.json_lines import InvalidJsonLine, decode_json_line
from early_exit.dataset_readers.errors import (
    DataFileNotFoundError,
    DataFormatError,
    NoInstancesError,
    NoWordpiecesError,
)

logger = logging.getLogger(__name__)

PathOrStr = Union[str, PathLike]

JSON_EXTENSIONS = (".jsonl", ".json")
TSV_EXTENSIONS = (".tsv", ".txt")

# How many line numbers of skipped lines the end-of-file warning lists.
_MAX_REPORTED_LINES = 5

# Column names that make the first line of a tab-separated file a header (with the readers' own
# text fields and their JSON aliases), and the label column names alone that do.
_HEADER_NAMES = ("label", "gold_label", "sentence1", "sentence2")
_LABEL_HEADER_NAMES = ("label", "gold_label")


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

    A header line is never read as an example: the first non-blank line of a tab-separated file is
    an error when it looks like one (its label column is `label`, or every column is a column name
    such as `label`, `text`, `sentence`, `premise`, `hypothesis`), unless `skip_header` is set,
    which skips that line whatever it holds. A file that is missing, a directory, or holds no
    instances (empty, only blank lines, or every line skipped) raises `DataFileNotFoundError` or
    `NoInstancesError` naming it.

    Instances have a `tokens` `TextField` (with the transformer's special tokens) and, when a
    label is known, a `label` `LabelField` in the `"labels"` namespace.

    Lines are sharded across distributed processes and data loader workers, so the readers work
    with multi-process data loading and distributed training.

    # Parameters

    transformer_model : `str`
        Name of a Hugging Face transformer or path to a local directory with its tokenizer files.
        Used for both the `PretrainedTransformerTokenizer` and the `PretrainedTransformerIndexer`.
        A model archive that carries a copy of these files (see `early_exit.common.encoder_files`)
        gives its extracted directory as `serialization_dir`, and the copy is read instead.
    max_length : `int`, optional (default = `512`)
        Maximum number of wordpieces of an instance, special tokens included. Longer inputs are
        truncated.
    encoding : `str`, optional (default = `"utf-8"`)
        Encoding of the data files. It must encode the newline as the single byte `\\n`
        (UTF-8, Latin-1, cp1252, ... but not UTF-16 or UTF-32).
    skip_invalid_lines : `bool`, optional (default = `False`)
        If `True`, invalid lines are skipped (and counted in a warning) instead of raising a
        `DataFormatError`.
    skip_header : `bool`, optional (default = `False`)
        If `True`, the first non-blank line of a tab-separated file is a header and is skipped
        (with a warning when it does not look like one). JSON lines files have no header.
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
        skip_header: bool = False,
        tokenizer_kwargs: Optional[Dict[str, Any]] = None,
        require_labels: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            manual_distributed_sharding=True, manual_multiprocess_sharding=True, **kwargs
        )
        if not self.text_fields:
            raise TypeError(f"{type(self).__name__} must define `text_fields`")
        # What the tokenizers load; messages name `transformer_model` as the user gave it.
        self._transformer_model = carried_transformer(transformer_model, self.serialization_dir)
        self._encoding = self._check_encoding(encoding)
        self._skip_invalid_lines = skip_invalid_lines
        self._skip_header = skip_header
        self.require_labels = require_labels
        self._tokenizer = PretrainedTransformerTokenizer(
            self._transformer_model, add_special_tokens=False, tokenizer_kwargs=tokenizer_kwargs
        )
        self._token_indexers: Dict[str, TokenIndexer] = {
            "tokens": PretrainedTransformerIndexer(
                self._transformer_model, tokenizer_kwargs=tokenizer_kwargs
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
        records = (
            (path, line_number, record)
            for path in paths
            for line_number, record in self._read_records(path)
        )
        for path, line_number, record in self.shard_iterable(records):
            try:
                instance = self.text_to_instance(**record)
            except NoWordpiecesError as empty:  # known only once tokenized, after sharding
                error = DataFormatError(str(path), line_number, empty.problem)
                if not self._skip_invalid_lines:
                    raise error from None
                logger.warning("Skipped an invalid line: %s", error)
                continue
            yield instance

    @staticmethod
    def _check_wordpieces(name: str, text: str, num_wordpieces: int) -> None:
        """A text with no wordpieces is refused like an empty one (`NoWordpiecesError`)."""
        if num_wordpieces <= 0:
            raise NoWordpiecesError(name, text)

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
        local_path = self._local_path(file_path)
        json_lines = self._is_json_lines(display_path, local_path)

        num_records = num_skipped = 0
        skipped_lines: List[int] = []
        first_line: Optional[int] = None  # the number of the first non-blank line, once seen
        with open(local_path, "rb") as data_file:
            for line_number, raw_line in enumerate(data_file, start=1):
                try:
                    line = self._decode_line(raw_line, line_number)
                    if line is None:
                        continue
                    if first_line is None:
                        first_line = line_number
                        if not json_lines and self._is_header(line, display_path, line_number):
                            continue
                    record = (
                        self._parse_json_line(line) if json_lines else self._parse_tsv_line(line)
                    )
                except _InvalidLine as invalid:
                    first_line = first_line or line_number
                    error = DataFormatError(display_path, line_number, invalid.problem)
                    if not self._skip_invalid_lines:
                        raise error from None
                    logger.debug("Skipping invalid line: %s", error)
                    num_skipped += 1
                    if len(skipped_lines) < _MAX_REPORTED_LINES:
                        skipped_lines.append(line_number)
                    continue
                num_records += 1
                yield line_number, record

        if num_skipped and self._is_first_shard():
            listed = ", ".join(str(number) for number in skipped_lines)
            if num_skipped > len(skipped_lines):
                listed += ", ..."
            logger.warning(
                "Skipped %d invalid line(s) in %s (line %s)", num_skipped, display_path, listed
            )
        if not num_records:
            if num_skipped:
                reason = f"all {num_skipped} non-blank line(s) are invalid and were skipped"
            elif first_line is not None:
                reason = "it has only a header line"
            else:
                reason = "it is empty or has only blank lines"
            raise NoInstancesError(display_path, reason)

    @staticmethod
    def _local_path(file_path: PathOrStr) -> str:
        """The local path of a data file (downloaded if it is a URL), checked to be a file."""
        try:
            local_path = cached_path(file_path)
        except FileNotFoundError as error:
            raise DataFileNotFoundError(f"{file_path}: data file not found") from error
        if os.path.isdir(local_path):
            raise DataFileNotFoundError(f"{file_path}: a directory, not a data file")
        return str(local_path)

    def _is_header(self, line: str, display_path: str, line_number: int) -> bool:
        """
        For the first non-blank line of a tab-separated file: `True` when it is a header to skip
        (`skip_header`); raises `_InvalidLine` when it looks like a header and `skip_header` is off.
        """
        names = [value.strip().lower() for value in line.split("\t")]
        column_names = set(_HEADER_NAMES + self.text_fields)
        for aliases in self.json_aliases.values():
            column_names.update(aliases)
        looks_like_header = names[0] in _LABEL_HEADER_NAMES or (
            len(names) > 1 and all(name in column_names for name in names)
        )
        if self._skip_header:
            if not looks_like_header and self._is_first_shard():
                logger.warning(
                    "skip_header: skipped line %d of %s, which does not look like a header: %r",
                    line_number,
                    display_path,
                    line[:100],
                )
            return True
        if looks_like_header:
            expected = "<TAB>".join(("label",) + self.text_fields)
            raise _InvalidLine(
                f"a header line ({', '.join(names)[:100]}), not a labelled example; remove it or "
                f'set "skip_header": true in the dataset reader (lines are {expected})'
            )
        return False

    def label_lines(self, file_path: PathOrStr, labels: Iterable[str]) -> Dict[str, int]:
        """
        The line number of the first example of each of `labels` in the file (of those it has),
        so that errors about labels can point at a line.
        """
        wanted = set(labels)
        found: Dict[str, int] = {}
        for line_number, record in self._read_records(file_path):
            if record["label"] in wanted:
                found.setdefault(record["label"], line_number)
                if len(found) == len(wanted):
                    break
        return found

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

    def _decode_line(self, raw_line: bytes, line_number: int) -> Optional[str]:
        """The line as text without its line break, `None` if blank, or raises `_InvalidLine`."""
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
        return line.rstrip("\r\n")

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
            if line.lstrip().startswith("{"):
                problem += (
                    "; the line looks like JSON: name the file .jsonl to read it as JSON lines "
                    f"({', '.join(TSV_EXTENSIONS)} files are read as tab-separated)"
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
            obj = decode_json_line(line)
        except InvalidJsonLine as error:
            problem = f"invalid JSON ({error})"
            if line.lstrip().startswith("["):
                problem += "; expected JSON lines, one object per line"
            elif "\t" in line:
                problem += (
                    "; the line looks tab-separated: name the file .tsv to read it as such "
                    f"({', '.join(JSON_EXTENSIONS)} files are read as JSON lines)"
                )
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
