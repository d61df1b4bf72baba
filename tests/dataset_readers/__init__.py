from pathlib import Path
from typing import List, Tuple, Union

from allennlp.data import Instance


def wordpieces(instance: Instance) -> List[str]:
    return [token.text for token in instance["tokens"].tokens]


def type_ids(instance: Instance) -> List[int]:
    return [token.type_id for token in instance["tokens"].tokens]


def summary(instance: Instance) -> Tuple[List[Tuple[str, int]], str]:
    """Wordpieces with type ids, and the label: what two equal instances share."""
    tokens = [(token.text, token.type_id) for token in instance["tokens"].tokens]
    label = instance["label"].label if "label" in instance.fields else None
    return tokens, label


def write(path: Path, content: Union[str, bytes]) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path
