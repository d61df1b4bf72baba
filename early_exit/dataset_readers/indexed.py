from typing import List

from allennlp.data import DatasetReader, Instance


def read_indexed(reader: DatasetReader, path: str) -> List[Instance]:
    """
    Every instance of `path` read by `reader`, with the reader's token indexers applied, so that
    the instances can be batched for a model without a data loader (calibration, benchmarks).
    """
    instances = []
    for instance in reader.read(path):
        reader.apply_token_indexers(instance)
        instances.append(instance)
    return instances
