"""Atomic, checksummed, safely loaded checkpoints; the previous one is kept as a fallback.

File layout (``FORMAT``)::

    b"SKIPLAB-CKPT\\x00v1\\n"   magic, 16 bytes
    sha256(payload)             32 bytes
    len(payload)                8 bytes, big-endian
    payload                     ``torch.save`` bytes of a dict of tensors, numbers and strings

A checkpoint is written to a uniquely named temporary file in the same directory, flushed
and fsync'ed, then renamed over the old one (``os.replace`` is atomic on POSIX), and the
directory is fsync'ed, so a crash leaves either the old or the new file, never a torn one.
Before the rename the old file is hard-linked (where the file system has no hard links:
copied) to a temporary name that is then renamed to ``<name>.prev``, so the newest two
checkpoints always exist and the current name never disappears. A target (or ``.prev``) that
exists and is not a regular file, such as ``/dev/null`` or a FIFO, is refused before anything
is written. A write that fails (disk full, Ctrl-C) removes its temporary file and leaves the
old checkpoints as they were; a temporary file left by a SIGKILLed writer is removed by the
next trainer that takes the checkpoint's lock (:func:`checkpoint_lock`, held for a whole run,
so two runs never write one checkpoint path).

Loading checks, in order: the magic (a file that is not a skiplab checkpoint, for example a
bare pickle, is refused before a byte of it is unpickled), the length (truncation) and the
sha256 (bit flips), and only then ``torch.load(weights_only=True)``: tensors, numbers, strings
and containers only, so even a checkpoint with a valid header cannot run code.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import pickle
import shutil
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from skiplab._files import (
    FileLock,
    FileTargetError,
    atomic_output,
    check_regular_target,
    temp_path,
)

MAGIC = b"SKIPLAB-CKPT\x00v1\n"
_HEADER = len(MAGIC) + 32 + 8
FORMAT = "magic(16) + sha256(32) + length(8, big-endian) + torch.save payload"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: missing, truncated, corrupt or not weights-only."""


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where the checkpoint before ``path`` is kept (``<name>.prev``)."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """The bytes :func:`save_checkpoint` writes for ``state`` (header + payload)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + struct.pack(">Q", len(payload)) + payload


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike[str], *, keep_previous: bool = True
) -> Path:
    """Write ``state`` to ``path`` atomically, keeping the old file as ``<name>.prev``.

    Args:
        state: plain data (tensors, numbers, strings, lists, dicts).
        path: the checkpoint file; its directory is created.
        keep_previous: keep the checkpoint being replaced as :func:`previous_path` (default).

    Returns:
        ``path``.

    Raises:
        CheckpointError: ``path`` or its ``.prev`` exists and is not a regular file (a device,
            a FIFO, a directory); nothing is written.
        OSError: the write failed (disk full, ...); the old checkpoints are intact and no
            temporary file is left.
    """
    path = Path(path)
    prev = previous_path(path)
    try:
        check_regular_target(path, "checkpoint")
        if keep_previous:
            check_regular_target(prev, "previous checkpoint")
        data = encode_checkpoint(state)
        with atomic_output(path, what="checkpoint") as f:
            f.write(data)
            if keep_previous and path.is_file():
                _keep_previous(path, prev)
    except FileTargetError as err:
        raise CheckpointError(str(err)) from None
    return path


def _keep_previous(path: Path, prev: Path) -> None:
    """Make ``prev`` a copy of ``path`` without ``path`` ever going missing: hard-link (or,
    where the file system has no hard links, copy) to a temporary name, then rename that."""
    tmp = temp_path(prev)
    try:
        os.unlink(tmp)  # a unique, now free name for the link
        try:
            os.link(path, tmp)
        except OSError:  # no hard links here: copy the bytes instead
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, prev)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files a killed writer of ``path`` left (``.<name>.*.tmp``).

    Only safe while the caller holds the checkpoint's lock (:func:`checkpoint_lock`), so no
    live writer owns them. Returns what was removed.
    """
    path = Path(path)
    removed = []
    for name in (path.name, previous_path(path).name):
        for tmp in path.parent.glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def checkpoint_lock(path: str | os.PathLike[str]) -> FileLock:
    """The lock a trainer holds on checkpoint ``path`` while it trains (``.<name>.lock``)."""
    path = Path(path)
    return FileLock(
        path.with_name(f".{path.name}.lock"),
        what=f"checkpoint {path}",
        hint="another training run writes it; wait for it to finish or choose another --checkpoint",
    )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one checkpoint file, verifying its header and checksum, with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, has no skiplab header, is truncated, fails its
            sha256, or holds anything but plain data. The message names the file; a pickled
            callable is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    if not raw.startswith(MAGIC):
        raise CheckpointError(
            f"checkpoint {path} refused: not a skiplab checkpoint (no {MAGIC[:12].decode()} "
            f"header; expected {FORMAT}); it is never unpickled"
        )
    if len(raw) < _HEADER:
        raise CheckpointError(f"checkpoint {path} is truncated: {len(raw)} bytes, header alone")
    digest = raw[len(MAGIC) : len(MAGIC) + 32]
    (length,) = struct.unpack(">Q", raw[len(MAGIC) + 32 : _HEADER])
    payload = raw[_HEADER:]
    if len(payload) != length:
        raise CheckpointError(
            f"checkpoint {path} is truncated or padded: payload has {len(payload)} bytes, "
            f"the header says {length}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: sha256 of its payload does not match its header"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(
            f"checkpoint {path} refused: it is not a weights-only file "
            f"({err.__class__.__name__}: {first})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be decoded: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds {type(state).__name__}, expected a dict")
    return state


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` or its previous checkpoint exists."""
    return Path(path).is_file() or previous_path(path).is_file()


def load_latest_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """Load ``path``, or, when it is missing or fails its checks, the previous checkpoint.

    A fallback is announced with a warning that names the bad file and what is wrong with it.

    Returns:
        ``(state, the file it came from)``.

    Raises:
        CheckpointError: neither file loads; the message gives both reasons.
    """
    path = Path(path)
    errors = []
    for candidate in (path, previous_path(path)):
        try:
            state = load_checkpoint(candidate)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        if candidate != path:
            warnings.warn(
                f"{errors[0]}; using the previous checkpoint {candidate}",
                RuntimeWarning,
                stacklevel=2,
            )
        return state, candidate
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
