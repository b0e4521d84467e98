"""Test-wide settings."""

import contextlib
import subprocess

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The tests run small tensors: a second intra-op thread buys nothing there, and on a busy
    # 2-core machine its spin-waits made some tests 10-50x slower. One thread also makes float
    # reductions the same on every machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tmpfs():
    """``with tmpfs(path, "1m") as mnt:`` mounts a real tmpfs (see :func:`_tmpfs`)."""
    return _tmpfs


@contextlib.contextmanager
def _tmpfs(mnt, size):
    """A real tmpfs of ``size`` (``"1m"``, ``"64k"``) mounted at ``mnt`` (created) for the
    block, unmounted after; the test is skipped, saying why, where mounting is not allowed."""
    mnt.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
