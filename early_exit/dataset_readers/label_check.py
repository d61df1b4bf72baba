"""
Gold labels a model never saw in training, reported before they fail deep inside allennlp.

allennlp indexes a `LabelField` by looking its label up in the model's vocabulary, so a label that
training never saw ends `allennlp evaluate` (and calibration) with `KeyError: "'neutral' not found
in vocab namespace 'labels' ..."`, naming neither the file nor the line. `check_known_labels` is the
one rule every command applies instead: it names the data file, the unknown labels, what the model
knows and, for this package's readers, the line of each unknown label's first example.

Importing `early_exit` makes allennlp's `MultiProcessDataLoader.index_with` (where `evaluate` and
`train` index the data they read with the model's vocabulary) apply it first.
"""

from os import PathLike
from typing import Any, Iterable, List, Optional

from allennlp.data import DatasetReader, Instance, Vocabulary
from allennlp.data.fields import LabelField

from early_exit.dataset_readers.errors import UnknownLabelError
from early_exit.dataset_readers.line_reader import EarlyExitLineReader


def check_known_labels(
    instances: Iterable[Instance],
    vocab: Vocabulary,
    data_name: Any,
    reader: Optional[DatasetReader] = None,
) -> None:
    """
    Raises an `UnknownLabelError` if a string gold label (the `label` field) of `instances` is not
    in `vocab`'s namespace for it (and that namespace has no out-of-vocabulary token), the lookup
    that would otherwise fail with a `KeyError` when the instances are indexed.

    # Parameters

    instances : `Iterable[Instance]`
    vocab : `Vocabulary`
        The model's vocabulary.
    data_name : `Any`
        Where the instances come from, as the user gave it (a path, usually).
    reader : `DatasetReader`, optional
        The reader that read them; when it is one of this package's and `data_name` a path, the
        error gives the line of each unknown label's first example.
    """
    unknown: List[str] = []
    namespace = "labels"
    for instance in instances:
        field = instance.fields.get("label")
        if not isinstance(field, LabelField) or not isinstance(field.label, str):
            continue
        namespace = field._label_namespace
        known = vocab.get_token_to_index_vocabulary(namespace)
        if field.label not in known and vocab._oov_token not in known:
            if field.label not in unknown:
                unknown.append(field.label)
    if not unknown:
        return
    first_lines = None
    if isinstance(reader, EarlyExitLineReader) and isinstance(data_name, (str, PathLike)):
        first_lines = reader.label_lines(data_name, unknown)
    known_labels = list(vocab.get_token_to_index_vocabulary(namespace))
    raise UnknownLabelError(str(data_name), sorted(unknown), known_labels, first_lines)
