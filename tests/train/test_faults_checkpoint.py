"""Checkpoints under faults: torn writes, truncation, bit flips, SIGKILL during writes."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from skiplab.train import (
    CheckpointError,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)


def _state(step):
    g = torch.Generator().manual_seed(step)
    return {"step": step, "w": torch.randn(64, 64, generator=g)}


def test_two_newest_checkpoints_are_kept(tmp_path):
    path = tmp_path / "c.pt"
    for step in range(3):
        save_checkpoint(_state(step), path)
    assert load_checkpoint(path)["step"] == 2
    assert load_checkpoint(previous_path(path))["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.prev"]  # no temp left


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "empty", "padding"])
def test_damaged_checkpoint_is_detected_and_previous_used(tmp_path, damage):
    path = tmp_path / "c.pt"
    save_checkpoint(_state(1), path)
    save_checkpoint(_state(2), path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "bitflip":
        raw[len(raw) - 100] ^= 0x10  # one bit inside the tensor data
    elif damage == "empty":
        raw = bytearray()
    else:
        raw += b"\0" * 7
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="c.pt") as info:
        load_checkpoint(path)
    expected = {"truncate": "truncated", "bitflip": "sha256", "empty": "not a skiplab"}
    assert expected.get(damage, "truncated") in str(info.value)
    with pytest.warns(RuntimeWarning, match=r"c\.pt.*previous checkpoint .*c\.pt\.prev"):
        state, used = load_latest_checkpoint(path)
    assert used == previous_path(path) and state["step"] == 1
    assert torch.equal(state["w"], _state(1)["w"])


def test_both_damaged_is_one_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(_state(1), path)
    save_checkpoint(_state(2), path)
    for p in (path, previous_path(path)):
        p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*c\.pt.*c\.pt\.prev"):
        load_latest_checkpoint(path)


_WRITER = """
import sys, torch
from skiplab.train import save_checkpoint
path = sys.argv[1]
step = 0
g = torch.Generator().manual_seed(0)
while True:
    step += 1
    # ~4 MB per checkpoint so that a kill often lands inside a write.
    save_checkpoint({"step": step, "w": torch.full((1024, 1024), float(step))}, path)
    print(step, flush=True)
"""


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_newest(tmp_path):
    path = tmp_path / "c.pt"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    last_step = 0
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        # Let it complete a few writes, then kill at a varying moment inside the next ones.
        for _ in range(2 + round_ % 3):
            last_step = int(proc.stdout.readline())
        time.sleep(0.003 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state, used = load_latest_checkpoint(path)
        # The newest complete write is the printed one or one just after it (killed before
        # it could print); never an older one, never a torn one.
        assert used == path
        assert state["step"] >= last_step
        assert torch.equal(state["w"], torch.full((1024, 1024), float(state["step"])))
        # Killed between linking .prev and the rename, both names hold the same checkpoint.
        prev_step = load_checkpoint(previous_path(path))["step"]
        assert prev_step in (state["step"] - 1, state["step"])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # A kill can leave a temp file behind; it is never mistaken for a checkpoint.
    assert all(name.startswith(".c.pt.") for name in leftovers)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    # A bare pickle (what torch.save writes) and the same pickle behind a valid skiplab header
    # with a correct checksum: both refused, the payload never executed.
    bare = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, bare)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*not a skiplab checkpoint"):
        load_checkpoint(bare)
    import hashlib
    import struct

    from skiplab.train.checkpoint import MAGIC

    payload = bare.read_bytes()
    wrapped = tmp_path / "evil-wrapped.pt"
    wrapped.write_bytes(
        MAGIC + hashlib.sha256(payload).digest() + struct.pack(">Q", len(payload)) + payload
    )
    with pytest.raises(CheckpointError, match=r"evil-wrapped\.pt refused.*weights-only"):
        load_checkpoint(wrapped)
    assert not marker.exists()


def test_current_name_never_disappears_on_a_file_system_without_hard_links(tmp_path, monkeypatch):
    # The fallback for a file system that refuses hard links used to rename c.pt to .prev
    # before the new file took its place: a kill between the two renames left no c.pt.
    path = tmp_path / "c.pt"
    save_checkpoint(_state(1), path)

    def no_links(src, dst, *args, **kwargs):
        raise OSError(1, "Operation not permitted", str(dst))

    real_replace = os.replace
    seen = []

    def replace(src, dst):
        seen.append(path.is_file())  # the invariant, at every step of the protocol
        real_replace(src, dst)

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(_state(2), path)
    monkeypatch.undo()
    assert seen and all(seen)
    assert load_checkpoint(path)["step"] == 2
    assert load_checkpoint(previous_path(path))["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.prev"]


def _non_regular(kind, path):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # a character device like /dev/null: needs CAP_MKNOD
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError as err:
            pytest.skip(f"cannot create a device node here: {err}")


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
@pytest.mark.parametrize("which", ["checkpoint", "previous"])
def test_non_regular_targets_are_refused_and_left_alone(tmp_path, kind, which):
    path = tmp_path / "c.pt"
    if which == "previous":
        save_checkpoint(_state(1), path)
    target = path if which == "checkpoint" else previous_path(path)
    _non_regular(kind, target)
    before = os.stat(target)
    with pytest.raises(CheckpointError, match=r"c\.pt(\.prev)? is a (device|FIFO|directory)"):
        save_checkpoint(_state(2), path)
    after = os.stat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        before.st_mode,
        before.st_ino,
        before.st_rdev,
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    if which == "previous":
        assert load_checkpoint(path)["step"] == 1  # nothing was replaced


_FULL_DISK_WRITER = """
import resource, signal, sys, torch
from skiplab.train import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    save_checkpoint({"w": torch.zeros(1 << 19)}, sys.argv[1])  # 2 MB > the 1 MB limit
except OSError as err:
    print(err.errno)
"""


def test_a_write_that_fails_for_space_leaves_no_temp_and_keeps_the_old_checkpoint(tmp_path):
    import errno

    path = tmp_path / "c.pt"
    save_checkpoint(_state(1), path)
    script = tmp_path / "full.py"
    script.write_text(_FULL_DISK_WRITER)
    out = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(errno.EFBIG), out.stderr
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "full.py"]


def test_a_full_tmpfs_leaves_no_temp_and_keeps_the_old_checkpoint(tmp_path, tmpfs):
    import errno

    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        path = mnt / "c.pt"
        save_checkpoint({"w": torch.zeros(1000)}, path)
        with pytest.raises(OSError) as info:
            save_checkpoint({"w": torch.zeros(1 << 19)}, path)  # 2 MB on a 1 MB disk
        assert info.value.errno == errno.ENOSPC
        assert torch.equal(load_checkpoint(path)["w"], torch.zeros(1000))
        assert sorted(p.name for p in mnt.iterdir()) == ["c.pt"]
