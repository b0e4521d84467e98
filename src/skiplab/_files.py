"""Safe file writes and advisory locks, shared by checkpoints, figures, reports and the store.

:func:`atomic_output` writes through a uniquely named temporary file in the target's directory,
flushes and fsyncs it, and renames it over the target (``os.replace`` is atomic on POSIX); on
*any* failure (an exception, ``KeyboardInterrupt``, disk full) the temporary file is removed, so
nothing is left behind and the target is either the old file or the new one. Two writers of one
target never share a temporary name. A target that exists and is not a regular file (a device
node, a FIFO, a directory, a socket) is refused before anything is written.

:class:`FileLock` is an exclusive ``flock`` on a lock file. The kernel drops it when the holder
dies (SIGKILL included), and it is held per open file, not per PID, so it cannot be confused by
PID reuse or by processes in another PID namespace on the same host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class FileTargetError(ValueError):
    """A path that skiplab refuses to write: it exists and is not a regular file."""


class LockedError(RuntimeError):
    """A lock is held by another live process."""


def check_regular_target(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` if it is absent or a regular file (a symlink is followed); else raise.

    Raises:
        FileTargetError: ``path`` names a directory, device, FIFO or socket; the message
            names the path and what it is.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISREG(mode):
        return path
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise FileTargetError(
        f"{what} {path} is {kind}, not a regular file; refusing to replace it (choose a file path)"
    )


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename in it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """A new, unique, empty file beside ``path`` (``.<name>.<random><suffix>``), for a writer
    that needs a file name rather than a file object. The caller removes it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, what: str = "file", durable: bool = True
) -> Iterator[IO[bytes]]:
    """Open a binary temporary file that replaces ``path`` when the block ends without error.

    Args:
        path: the target; its directory is created. It must be absent or a regular file.
        what: how error messages name the target ("checkpoint", "report").
        durable: fsync the file and its directory (checkpoints, results); figures can skip it.

    Raises:
        FileTargetError: ``path`` exists and is not a regular file.
    """
    path = check_regular_target(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp's 0600 would make every output private
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        check_regular_target(path, what)  # it may have been replaced while we wrote
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def _mode_for(path: Path) -> int:
    """The permission bits a replacement of ``path`` gets: the old file's, or what a plain
    ``open(path, "w")`` would give (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike[str], data: bytes | str, *, what: str = "file", durable: bool = True
) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` with :func:`atomic_output`; ``path``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(path, what=what, durable=durable) as f:
        f.write(raw)
    return Path(path)


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` (created if needed).

    ``acquire()`` raises :class:`LockedError` naming ``what`` and ``hint`` when another open
    file holds it; the lock is released by ``release()``, by leaving a ``with`` block, or by the
    kernel when the process dies. The lock file itself is left in place (removing it would let a
    second process lock a different inode of the same name).

    Args:
        path: the lock file.
        what: what the lock protects, for the error message ("checkpoint c.pt").
        hint: what the user can do, for the error message.
    """

    def __init__(self, path: str | os.PathLike[str], what: str = "", hint: str = "") -> None:
        self.path = Path(path)
        self.what = what or str(self.path)
        self.hint = hint
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FileLock:
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                hint = f"; {self.hint}" if self.hint else ""
                raise LockedError(f"{self.what} is in use by another process{hint}") from None
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether a live process holds :class:`FileLock` on ``path`` (False if it does not exist).

    Probes with a shared non-blocking ``flock`` and releases it at once, so it never blocks and
    never keeps the lock.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # closing drops the probe lock
    return False
