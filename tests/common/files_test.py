import errno
import io
import os
import socket
import subprocess
import sys

import pytest
from allennlp.common.checks import ConfigurationError

from early_exit.common import files
from early_exit.common.files import (
    OutputWriteError,
    write_errors_named,
    atomic_open,
    atomic_path,
    atomic_write,
    check_output_paths,
    display_path,
    remove_stale_temporaries,
    same_file,
)


def _hidden(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("positive\tfine\n")
    return path


def test_display_path_is_relative_inside_the_root_and_as_given_outside(tmp_path, monkeypatch):
    root = tmp_path / "clone"
    (root / "data").mkdir(parents=True)
    inside = root / "data" / "dev.tsv"
    assert display_path(inside, root) == os.path.join("data", "dev.tsv")
    monkeypatch.chdir(root)
    assert display_path("data/dev.tsv", root) == os.path.join("data", "dev.tsv")
    outside = tmp_path / "elsewhere" / "dev.tsv"
    assert display_path(outside, root) == str(outside)
    # A sibling whose name starts like the root's is outside it.
    sibling = tmp_path / "clone2" / "dev.tsv"
    assert display_path(sibling, root) == str(sibling)


class TestSameFile:
    def test_spellings_of_one_file(self, data, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        link = tmp_path / "link.tsv"
        link.symlink_to(data)
        hard = tmp_path / "hard.tsv"
        os.link(data, hard)
        for spelling in ("data.tsv", "./data.tsv", str(tmp_path / "sub" / ".." / "data.tsv")):
            assert same_file(spelling, data)
        assert same_file(link, data) and same_file(hard, data)

    def test_files_that_do_not_exist_yet(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "real").mkdir()
        (tmp_path / "alias").symlink_to(tmp_path / "real")
        assert same_file("alias/out.json", tmp_path / "real" / "out.json")
        assert not same_file("out.json", "other.json")
        assert not same_file(tmp_path / "data.tsv", tmp_path / "data.tsv.gz")


class TestCheckOutputPaths:
    def test_an_output_that_is_an_input_is_refused(self, data, tmp_path):
        link = tmp_path / "link.tsv"
        link.symlink_to(data)
        for output in (data, link, tmp_path / "." / "data.tsv"):
            with pytest.raises(ConfigurationError, match="is the data file.*refusing to overwrite"):
                check_output_paths([("data file", data)], [("output file", output)])
        assert data.read_text() == "positive\tfine\n"

    def test_two_outputs_in_one_file_are_refused(self, tmp_path):
        with pytest.raises(ConfigurationError, match="report file .* is also the output file"):
            check_output_paths(
                [], [("output file", tmp_path / "a.tar.gz"), ("report file", tmp_path / "a.tar.gz")]
            )

    def test_unwritable_places_are_refused_and_nothing_is_created(self, data, tmp_path):
        with pytest.raises(ConfigurationError, match="is a directory"):
            check_output_paths([], [("output file", tmp_path)])
        with pytest.raises(ConfigurationError, match="data.tsv is a file, not a folder"):
            check_output_paths([], [("output file", data / "sub" / "out.json")])
        check_output_paths([], [("output file", tmp_path / "new" / "dir" / "out.json")])
        assert not (tmp_path / "new").exists()  # checked, not created

    @pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
    def test_a_read_only_folder_is_refused(self, tmp_path):
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ConfigurationError, match="not writable"):
                check_output_paths([], [("output file", locked / "out.json")])
        finally:
            locked.chmod(0o700)

    def test_urls_stdin_and_missing_paths_are_skipped(self, tmp_path):
        check_output_paths(
            [("input file", "-"), ("archive", "https://example.org/model.tar.gz"), ("x", None)],
            [("output file", tmp_path / "out.json"), ("report file", None)],
        )


class TestAtomicWrites:
    def test_replaces_the_file_when_complete(self, tmp_path):
        path = tmp_path / "out" / "report.json"
        with atomic_open(path) as handle:
            handle.write("new")
            assert not path.exists()  # nothing under the output's name while writing
        assert path.read_text() == "new"
        assert _hidden(path.parent) == []

    @pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
    def test_a_failure_leaves_the_old_file_and_no_temporary(self, tmp_path, error):
        path = tmp_path / "out.jsonl"
        path.write_text("old")

        def write(temporary):
            with open(temporary, "w") as handle:
                handle.write("half")
            raise error

        with pytest.raises(type(error)):
            atomic_write(path, write)
        assert path.read_text() == "old"
        assert _hidden(tmp_path) == []

    def test_a_hard_link_keeps_the_old_content_and_a_symlink_is_written_through(self, tmp_path):
        target = tmp_path / "best.th"
        target.write_text("old")
        os.link(target, tmp_path / "checkpoint.th")
        target.chmod(0o640)
        link = tmp_path / "link.th"
        link.symlink_to(target)
        with atomic_open(link) as handle:
            handle.write("new")
        assert link.is_symlink() and target.read_text() == "new"
        assert (tmp_path / "checkpoint.th").read_text() == "old"
        assert target.stat().st_mode & 0o777 == 0o640

    def test_stale_temporaries_of_dead_processes_are_removed(self, tmp_path):
        path = tmp_path / "out.jsonl"
        finished = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        dead = int(finished.stdout)
        host = socket.gethostname()
        stale = tmp_path / f".out.jsonl.{host}.{dead}.0123abcd.tmp"
        alive = tmp_path / f".out.jsonl.{host}.{os.getpid()}.0123abcd.tmp"  # a run in progress
        elsewhere = tmp_path / f".out.jsonl.other-machine.{dead}.0123abcd.tmp"
        other_output = tmp_path / f".out.jsonl.gz.{host}.{dead}.0123abcd.tmp"
        for temporary in (stale, alive, elsewhere, other_output):
            temporary.write_text("partial")
        with atomic_path(path) as temporary:
            assert not stale.exists()
            open(temporary, "w").close()
        assert alive.exists() and elsewhere.exists()
        assert other_output.exists()  # another output's; removed when that one is written
        remove_stale_temporaries(tmp_path / "out.jsonl.gz")
        assert not other_output.exists()

    def test_a_device_is_written_in_place(self):
        check_output_paths([], [("output file", os.devnull)])
        with atomic_open(os.devnull) as handle:
            handle.write("discarded")
        assert os.path.exists(os.devnull)


class TestFailedWritesNameTheOutput:
    """A full disk (or quota, or failing device) names the output it could not write."""

    def test_a_real_full_device(self):
        # /dev/full answers every write with ENOSPC; special files are written in place.
        with pytest.raises(OutputWriteError, match=r"^cannot write /dev/full: No space left"):
            with atomic_open("/dev/full") as handle:
                handle.write("x" * 10_000)
                handle.flush()

    def test_a_write_that_does_not_fit_leaves_the_old_file(self, tmp_path, monkeypatch):
        output = tmp_path / "out.txt"
        output.write_text("old")

        class FullDisk(io.StringIO):
            def write(self, text):
                raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(files, "open", lambda *args, **kwargs: FullDisk(), raising=False)
        with pytest.raises(OutputWriteError) as info:
            with atomic_open(output) as handle:
                handle.write("new")
        assert str(info.value) == f"cannot write {output}: No space left on device"
        assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
        assert output.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]

    def test_torch_saves_failed_write(self, tmp_path):
        def save(path):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

        with pytest.raises(OutputWriteError, match="cannot write .*weights.th: PytorchStream"):
            atomic_write(tmp_path / "weights.th", save)

    def test_the_innermost_writer_names_its_file(self, tmp_path):
        with pytest.raises(OutputWriteError, match="cannot write first: "):
            with atomic_path(tmp_path / "second"), write_errors_named("first"):
                raise OSError(errno.EDQUOT, "Disk quota exceeded")

    def test_other_errors_pass_unchanged(self, tmp_path):
        with pytest.raises(PermissionError):
            with atomic_path(tmp_path / "out"):
                raise PermissionError(errno.EACCES, "Permission denied", "elsewhere")
