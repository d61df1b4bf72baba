import pytest
from allennlp.data import Instance, Vocabulary
from allennlp.data.data_loaders import MultiProcessDataLoader
from allennlp.data.fields import LabelField

from early_exit.common.cli_errors import UserError
from early_exit.dataset_readers import EarlyExitTextClassificationReader, UnknownLabelError
from early_exit.dataset_readers.label_check import check_known_labels
from tests import TINY_BERT
from tests.dataset_readers import write

DATA = "positive\tgood\n\nneutral\tmeh\nnegative\tbad\nmixed\tso so\nneutral\tfine\n"


@pytest.fixture(scope="module")
def reader():
    return EarlyExitTextClassificationReader(TINY_BERT)


@pytest.fixture()
def vocab():
    vocab = Vocabulary(non_padded_namespaces=["labels"])
    vocab.add_tokens_to_namespace(["positive", "negative"], "labels")
    return vocab


def test_unknown_labels_are_named_with_their_first_line(reader, vocab, tmp_path):
    path = write(tmp_path / "dev.tsv", DATA)
    instances = list(reader.read(path))
    with pytest.raises(UnknownLabelError) as info:
        check_known_labels(instances, vocab, str(path), reader)
    assert str(info.value) == (
        f"{path} has label(s) the model does not know: mixed (first on line 5), "
        "neutral (first on line 3); it knows positive, negative"
    )
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert info.value.first_lines == {"neutral": 3, "mixed": 5}


def test_without_a_line_reader_the_labels_are_named_alone(reader, vocab, tmp_path):
    instances = list(reader.read(write(tmp_path / "dev.tsv", DATA)))
    with pytest.raises(UnknownLabelError, match="does not know: mixed, neutral; it knows"):
        check_known_labels(instances, vocab, "the data")


def test_known_labels_unlabelled_instances_and_oov_namespaces_pass(reader, vocab, tmp_path):
    known = list(reader.read(write(tmp_path / "known.tsv", "positive\tgood\nnegative\tbad\n")))
    unlabelled = [reader.text_to_instance("no label")]
    check_known_labels(known + unlabelled, vocab, "data")
    # a namespace with an out-of-vocabulary token indexes any label: nothing to report
    oov = [Instance({"label": LabelField("new", label_namespace="tags_with_oov")})]
    vocab.add_token_to_namespace(vocab._oov_token, "tags_with_oov")
    check_known_labels(oov, vocab, "data")


def test_data_loader_checks_the_labels_before_indexing(reader, vocab, tmp_path):
    """What `allennlp evaluate` runs into: a KeyError naming neither file nor line before."""
    path = write(tmp_path / "dev.tsv", DATA)
    loader = MultiProcessDataLoader(reader, str(path), batch_size=2, quiet=True)
    with pytest.raises(UnknownLabelError, match="mixed \\(first on line 5\\)"):
        loader.index_with(vocab)
    known = write(tmp_path / "known.tsv", "positive\tgood\n")
    loader = MultiProcessDataLoader(reader, str(known), batch_size=2, quiet=True)
    loader.index_with(vocab)
    assert [batch["label"].tolist() for batch in loader] == [[0]]
