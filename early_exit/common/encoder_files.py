"""
The encoder's configuration and tokenizer files, carried inside a model archive so that it loads
anywhere.

A model names its encoder by `transformer_model`: a Hugging Face name or a local directory, which
the configs of this repository give relative to the repository (`models/all-MiniLM-L6-v2`,
`test_fixtures/tiny_bert`). An archive that only names it loads where that path resolves (or the
hub answers), and nowhere else. Importing `early_exit` therefore makes allennlp's `archive_model`
(which `allennlp train` calls at its end) first save the encoder's configuration and tokenizer
files into `encoder/` of the serialization directory, with a note of the `transformer_model` they
were made from, and add that folder to the archive (allennlp's `include_in_archive`). The weights
are not copied: the archive's state dict holds them.

When an archive is loaded, allennlp passes its extracted directory to the dataset readers (as
`serialization_dir`) and to the model's `_load`; both replace a `transformer_model` equal to the
noted one by the carried copy (`carried_transformer`). An override naming another encoder, and an
archive without `encoder/` (made before this, or of another model), load as they always did.

Only allennlp and transformers are imported here: every layer of the package may use it.
"""

import functools
import json
import logging
import os
import shutil
import uuid
from typing import Callable, List, Optional, Union

logger = logging.getLogger(__name__)

PathOrStr = Union[str, "os.PathLike[str]"]

# The folder of the carried files, in a serialization directory and in the archive.
ENCODER_DIR = "encoder"
# Inside it: `{"transformer_model": ...}`, the name the files were made from.
ENCODER_NOTE = "early_exit_encoder.json"
# The model type whose archives carry their encoder (the string, not the class: this module sits
# below the models).
CARRYING_MODEL_TYPE = "early_exit_classifier"


def carried_transformer(transformer_model: str, serialization_dir: Optional[PathOrStr]) -> str:
    """
    The encoder to load for `transformer_model`: the copy carried in `serialization_dir` (an
    extracted archive, or a training run's directory) when it was made from that very name, else
    `transformer_model` itself.
    """
    if serialization_dir is None or not isinstance(transformer_model, str):
        return transformer_model
    directory = os.path.join(os.fspath(serialization_dir), ENCODER_DIR)
    try:
        with open(os.path.join(directory, ENCODER_NOTE), encoding="utf-8") as note_file:
            note = json.load(note_file)
    except (OSError, ValueError):
        return transformer_model
    if not isinstance(note, dict) or note.get("transformer_model") != transformer_model:
        return transformer_model
    return directory


def forget_carried_transformer(directory: str) -> None:
    """
    Drops what allennlp's `cached_transformers` keeps for a carried copy once a model and its
    readers are built from it: each load extracts the archive into a new directory (removed right
    after), so nothing cached under its path is ever asked for again, and every load would keep
    one more copy of the encoder in memory.
    """
    from allennlp.common import cached_transformers

    for spec in [spec for spec in cached_transformers._model_cache if spec[0] == directory]:
        del cached_transformers._model_cache[spec]
    for key in [key for key in cached_transformers._tokenizer_cache if key[0] == directory]:
        del cached_transformers._tokenizer_cache[key]


def save_encoder_files(transformer_model: str, serialization_dir: PathOrStr) -> str:
    """
    Writes the configuration and tokenizer files of `transformer_model` (as transformers'
    `save_pretrained` writes them, without weights) and the note of its name into
    `serialization_dir/encoder`, replacing what was there only once all are written.

    # Returns

    `str`
        The folder written.
    """
    from transformers import AutoConfig, AutoTokenizer

    serialization_dir = os.fspath(serialization_dir)
    target = os.path.join(serialization_dir, ENCODER_DIR)
    temporary = os.path.join(serialization_dir, f".{ENCODER_DIR}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        AutoConfig.from_pretrained(transformer_model).save_pretrained(temporary)
        AutoTokenizer.from_pretrained(transformer_model).save_pretrained(temporary)
        with open(os.path.join(temporary, ENCODER_NOTE), "w", encoding="utf-8") as note_file:
            json.dump({"transformer_model": transformer_model}, note_file)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.rename(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def carry_encoder(serialization_dir: PathOrStr) -> bool:
    """
    Saves the encoder files of the `early_exit_classifier` whose `config.json` is in
    `serialization_dir` (see `save_encoder_files`). Returns whether they were saved: `False` for
    another model, and, with a warning, when the encoder cannot be read and no earlier copy is
    there (the archive then only names it, as before).
    """
    from allennlp.models.archival import CONFIG_NAME

    config_file = os.path.join(os.fspath(serialization_dir), CONFIG_NAME)
    try:
        with open(config_file, encoding="utf-8") as config_in:
            model = json.load(config_in).get("model")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(model, dict) or model.get("type") != CARRYING_MODEL_TYPE:
        return False
    transformer_model = model.get("transformer_model")
    if not isinstance(transformer_model, str):
        return False
    try:
        save_encoder_files(transformer_model, serialization_dir)
    except (OSError, ValueError) as error:
        if carried_transformer(transformer_model, serialization_dir) != transformer_model:
            return True  # the copy an earlier archive step saved (archiving again, elsewhere)
        logger.warning(
            "Could not save the files of the encoder %s into the archive (%s): the archive only "
            "names it, and loads only where that name resolves.",
            transformer_model,
            error,
        )
        return False
    return True


def carrying(archive_model: Callable[..., str]) -> Callable[..., str]:
    """`archive_model`, adding the encoder files of an early-exit model to the archive."""
    from allennlp.models.archival import _DEFAULT_WEIGHTS

    @functools.wraps(archive_model)
    def archive_model_carrying_encoder(
        serialization_dir: PathOrStr,
        weights: str = _DEFAULT_WEIGHTS,
        archive_path: Optional[PathOrStr] = None,
        include_in_archive: Optional[List[str]] = None,
    ) -> str:
        if carry_encoder(serialization_dir):
            include_in_archive = list(include_in_archive or [])
            if ENCODER_DIR not in include_in_archive:
                include_in_archive.append(ENCODER_DIR)
        return archive_model(serialization_dir, weights, archive_path, include_in_archive)

    archive_model_carrying_encoder._early_exit_carrying = True  # type: ignore[attr-defined]
    return archive_model_carrying_encoder
