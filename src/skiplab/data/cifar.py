"""CIFAR-10 from the *binary* release, read from a directory the user gives (never unpickled).

Reference: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009; the
binary version (``cifar-10-binary.tar.gz``, directory ``cifar-10-batches-bin``) stores each
image as one record of 3073 bytes: a label byte in ``0..9``, then 1024 red, 1024 green and 1024
blue bytes, each channel row-major 32x32. ``data_batch_1.bin`` .. ``data_batch_5.bin`` hold the
50,000 training images, ``test_batch.bin`` the 10,000 test images, 10,000 records per file.

skiplab ships no CIFAR-10 and downloads nothing: pass the directory where you unpacked the
release (``get_dataset("cifar10", root=...)`` or ``skiplab train --data cifar10 --data-dir``).
Each file's size and every label are checked before a tensor is built; the python release's
pickled batches are never read.

Augmentation (He et al. 2015, section 4.2): "4 pixels are padded on each side, and a 32x32
crop is randomly sampled from the padded image or its horizontal flip" -- :func:`flip_crop`.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._base import Splits, register_dataset
from ._errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "RECORDS_PER_FILE",
    "RECORD_BYTES",
    "flip_crop",
    "load_cifar10",
    "read_cifar10_batch",
]

RECORD_BYTES = 1 + 3 * 32 * 32  # label byte + 3 channels of 32x32 bytes
RECORDS_PER_FILE = 10_000
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
#: Per-channel mean and std of the 50,000 training images in [0, 1] (the values commonly used
#: with CIFAR-10; He et al. 2015 subtract the per-pixel mean, which differs only slightly).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def read_cifar10_batch(
    path: str | PathLike[str], records: int = RECORDS_PER_FILE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one binary batch file.

    Args:
        path: a ``*.bin`` file of the binary release.
        records: how many records the file must hold (10,000 in the release).

    Returns:
        ``(images, labels)``: uint8 ``(records, 3, 32, 32)`` and int64 ``(records,)``.

    Raises:
        DataError: the file is missing, has the wrong size (the message gives the expected
            size), or holds a label outside ``0..9`` (the message gives the record).
    """
    path = Path(path)
    expected = records * RECORD_BYTES
    if not path.is_file():
        raise DataError(
            f"CIFAR-10 file {path} is missing (expected the binary release's "
            f"{path.name}, {expected} bytes = {records} records of {RECORD_BYTES} bytes)"
        )
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            f"CIFAR-10 file {path} has {size} bytes, expected {expected} "
            f"({records} records of {RECORD_BYTES} bytes); is it the binary release?"
        )
    raw = np.fromfile(path, dtype=np.uint8).reshape(records, RECORD_BYTES)
    labels = raw[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(
            f"CIFAR-10 file {path}: record {int(bad[0])} has label {int(labels[bad[0]])}, "
            f"labels must be 0..9 ({bad.size} bad records)"
        )
    images = raw[:, 1:].reshape(records, 3, 32, 32)  # (N, C, H, W), channel planes in order
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    x = images.float().div_(255.0)  # (N, 3, 32, 32)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@register_dataset("cifar10")
def load_cifar10(
    root: str | PathLike[str] | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    normalize: bool = True,
    records_per_file: int = RECORDS_PER_FILE,
) -> Splits:
    """CIFAR-10's 50,000 training and 10,000 test images from the binary release in ``root``.

    Args:
        root: the directory holding ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
            ``test_batch.bin`` (required; skiplab downloads nothing).
        n_train: keep the first ``n_train`` training images (default all).
        n_test: keep the first ``n_test`` test images (default all).
        normalize: subtract the channel mean and divide by the channel std (default True).
        records_per_file: records each file must hold (10,000; smaller only for tests).

    Returns:
        :class:`Splits` with float32 images ``(N, 3, 32, 32)``. Train with
        ``Trainer(..., augment=flip_crop)`` for the paper's augmentation.

    Raises:
        DataError: no ``root`` given, or a file missing, of the wrong size or with bad labels.
    """
    if root is None:
        raise DataError(
            "cifar10 needs the directory of the CIFAR-10 binary release "
            "(cifar-10-batches-bin with data_batch_1..5.bin and test_batch.bin): "
            "pass root=... or --data-dir; skiplab does not download it"
        )
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CIFAR-10 directory {root} does not exist")
    parts = [read_cifar10_batch(root / name, records_per_file) for name in CIFAR10_TRAIN_FILES]
    x_train = torch.cat([p[0] for p in parts])
    y_train = torch.cat([p[1] for p in parts])
    x_test, y_test = read_cifar10_batch(root / CIFAR10_TEST_FILE, records_per_file)
    if n_train is not None:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    if n_test is not None:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    prep = _normalise if normalize else (lambda t: t.float().div(255.0))
    from torch.utils.data import TensorDataset

    return Splits(
        train=TensorDataset(prep(x_train), y_train),
        test=TensorDataset(prep(x_test), y_test),
        name="cifar10",
        num_classes=10,
        in_channels=3,
        input_shape=(3, 32, 32),
    )


def flip_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """He et al. 2015's augmentation: random horizontal flip, then a random crop of the
    image zero-padded by ``padding`` pixels on each side.

    Deterministic given ``generator`` (one flip bit and one offset pair per image).

    Shapes:
        - x: ``(B, C, H, W)``; returns ``(B, C, H, W)``
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).view(b, 1, h, 1)  # (B, 1, H, 1)
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).view(b, 1, 1, w)  # (B, 1, 1, W)
    batch = torch.arange(b).view(b, 1, 1, 1)
    chans = torch.arange(x.shape[1]).view(1, -1, 1, 1)
    return padded[batch, chans, rows, cols]  # (B, C, H, W)
