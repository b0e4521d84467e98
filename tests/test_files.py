"""Safe writes and locks: unique temp names, no temp left on failure, non-regular targets refused."""

import os
import stat
import subprocess
import sys

import pytest

from skiplab._files import (
    FileLock,
    FileTargetError,
    LockedError,
    atomic_output,
    atomic_write,
    is_locked,
)


def test_atomic_write_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "old")
    for exc in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), atomic_output(target) as f:
            f.write(b"half")
            raise exc
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_two_open_writers_get_distinct_temp_files(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_output(target) as first, atomic_output(target) as second:
        assert first.name != second.name
        first.write(b"1")
        second.write(b"2")
    assert target.read_text() in ("1", "2")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_non_regular_targets_are_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileTargetError, match=r"checkpoint .*pipe is a FIFO"):
        atomic_write(fifo, b"x", what="checkpoint")
    with pytest.raises(FileTargetError, match="is a directory"):
        atomic_write(tmp_path, b"x")
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_lock_excludes_a_second_holder_and_dies_with_its_process(tmp_path):
    path = tmp_path / "x.lock"
    with FileLock(path, what="checkpoint c.pt", hint="wait for it"):
        assert is_locked(path)
        with pytest.raises(LockedError, match="checkpoint c.pt is in use.*wait for it"):
            FileLock(path, what="checkpoint c.pt", hint="wait for it").acquire()
    assert not is_locked(path)
    # A holder killed with SIGKILL releases the lock: the kernel closes its file.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from skiplab._files import FileLock; "
            f"lock = FileLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert is_locked(path)
    holder.kill()
    holder.wait()
    assert not is_locked(path)
    FileLock(path).acquire().release()


def test_outputs_get_the_umask_mode_and_a_replaced_file_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    try:
        new = atomic_write(tmp_path / "new.txt", "x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # not mkstemp's private 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(umask)
