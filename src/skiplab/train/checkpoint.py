"""Atomic, checksummed, safely loaded checkpoints; the previous one is kept as a fallback.

File layout (``FORMAT``)::

    b"SKIPLAB-CKPT\\x00v1\\n"   magic, 16 bytes
    sha256(payload)             32 bytes
    len(payload)                8 bytes, big-endian
    payload                     ``torch.save`` bytes of a dict of tensors, numbers and strings

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed, then
renamed over the old one (``os.replace`` is atomic on POSIX), and the directory is fsync'ed, so
a crash leaves either the old or the new file, never a torn one. Before the rename the old file
is hard-linked to ``<name>.prev``, so the newest two checkpoints always exist and the current
name never disappears.

Loading checks, in order: the magic (a file that is not a skiplab checkpoint, for example a
bare pickle, is refused before a byte of it is unpickled), the length (truncation) and the
sha256 (bit flips), and only then ``torch.load(weights_only=True)``: tensors, numbers, strings
and containers only, so even a checkpoint with a valid header cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

MAGIC = b"SKIPLAB-CKPT\x00v1\n"
_HEADER = len(MAGIC) + 32 + 8
FORMAT = "magic(16) + sha256(32) + length(8, big-endian) + torch.save payload"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: missing, truncated, corrupt or not weights-only."""


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where the checkpoint before ``path`` is kept (``<name>.prev``)."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_checkpoint(state)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if keep_previous and path.exists():
        # Link, then rename the link over .prev: at no moment is either name missing or torn.
        prev, prev_tmp = previous_path(path), path.with_name(f".{path.name}.{os.getpid()}.prev")
        try:
            os.link(path, prev_tmp)
        except OSError:  # a file system without hard links: a rename is still atomic
            os.replace(path, prev)
        else:
            os.replace(prev_tmp, prev)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


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
