from early_exit.dataset_readers import EarlyExitTextClassificationReader, read_indexed
from tests import FIXTURES_ROOT


def test_read_indexed_gives_every_instance_ready_to_batch():
    from allennlp.data import Batch, Vocabulary

    reader = EarlyExitTextClassificationReader(str(FIXTURES_ROOT / "tiny_bert"))
    path = str(FIXTURES_ROOT / "data" / "text_classification.tsv")
    instances = read_indexed(reader, path)
    assert len(instances) == sum(1 for line in open(path) if line.strip())
    batch = Batch(instances)
    batch.index_instances(Vocabulary.from_instances(instances))
    tensors = batch.as_tensor_dict()  # fails on a text field without its indexers
    assert tensors["tokens"]["tokens"]["token_ids"].shape[0] == len(instances)
