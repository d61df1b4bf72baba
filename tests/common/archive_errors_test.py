import importlib
import io
import os
import tarfile

import pytest

from allennlp.models import archival

from early_exit.common.archive_errors import (
    LOAD_ARCHIVE_MODULES,
    ArchiveError,
    explain_archive_errors,
)
from early_exit.common.cli_errors import UserError


def _archive_bytes() -> bytes:
    """A gzipped tar file, big enough that cutting it truncates the compressed stream."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = os.urandom(64 * 1024)  # random bytes do not compress
        info = tarfile.TarInfo("weights.th")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_every_module_the_commands_take_load_archive_from_is_wrapped(command_line_patches):
    for name in LOAD_ARCHIVE_MODULES:
        assert getattr(importlib.import_module(name).load_archive, "_early_exit", False), name


def test_missing_archive(tmp_path):
    load_archive = explain_archive_errors(archival.load_archive)
    path = tmp_path / "model.tar.gz"
    with pytest.raises(ArchiveError) as info:
        load_archive(path)
    assert str(info.value) == f"{path}: model archive not found"
    assert isinstance(info.value, UserError) and isinstance(info.value, OSError)


@pytest.mark.parametrize(
    "content, problem",
    [
        (_archive_bytes()[:5000], "Compressed file ended before the end-of-stream marker"),
        (b"this is not an archive", "not a gzip file"),
        (b"", "empty file"),
    ],
)
def test_truncated_or_corrupt_archive(tmp_path, content, problem):
    load_archive = explain_archive_errors(archival.load_archive)
    path = tmp_path / "model.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArchiveError) as info:
        load_archive(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable model archive, truncated or corrupt (")
    assert problem in message


def test_other_errors_and_results_pass_through(tmp_path):
    def load(archive_file, **kwargs):
        if kwargs.get("fail"):
            raise FileNotFoundError("vocabulary missing")
        return archive_file, kwargs

    wrapped = explain_archive_errors(load)
    assert explain_archive_errors(wrapped) is wrapped
    assert wrapped("a.tar.gz", cuda_device=-1) == ("a.tar.gz", {"cuda_device": -1})
    existing = tmp_path / "model.tar.gz"
    existing.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="vocabulary missing") as info:
        wrapped(existing, fail=True)  # the archive exists: a file missing inside it is not ours
    assert not isinstance(info.value, ArchiveError)
