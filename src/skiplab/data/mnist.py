"""MNIST from the official idx files, read by hand (no torchvision, no network).

Reference: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits"
(http://yann.lecun.com/exdb/mnist/), which also specifies the idx format read here.

skiplab ships the official 10,000-image *test* set (``t10k-*``) inside the package and splits it
8,000/2,000 with a fixed seed: enough for the quick-scale experiments, small enough to ship.

Checksums: the md5 sums below are of the **gzip-compressed** ``.gz`` files as distributed (the
same sums torchvision lists), not of the decompressed idx content (which hashes to
``2646ac647ad5339dbf082846283269ea`` for the images and ``27ae3e4e09519cfbb04c329615203637``
for the labels).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._base import FILES_DIR, Splits, make_splits, register_dataset
from ._errors import DataError

__all__ = [
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "load_mnist",
    "md5sum",
    "read_idx",
    "verify_md5",
]

#: Mean and std of the MNIST *training* pixels in [0, 1]; the standard normalisation constants
#: (as in the PyTorch MNIST example), kept fixed so numbers compare across papers.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

#: file name -> md5 of the .gz file itself (see the module docstring).
MNIST_FILES: dict[str, str] = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_IMAGES, _LABELS = MNIST_FILES

# idx type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def md5sum(path: str | PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file's bytes, read in chunks."""
    # md5 is a checksum against corruption here, not a security measure.
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: str | PathLike[str], expected: str) -> None:
    """Check that ``path`` exists and its md5 is ``expected``.

    Raises:
        DataError: naming the file, if it is missing or its md5 differs (expected vs found).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    found = md5sum(path)
    if found != expected:
        raise DataError(
            f"{path}: md5 mismatch (expected {expected}, found {found}); "
            "the file is corrupt or not the official MNIST release"
        )


def read_idx(path: str | PathLike[str]) -> np.ndarray:
    """Read a gzip-compressed idx file.

    The idx header is a big-endian magic number ``0x0000TTDD`` (``TT`` the element type,
    ``DD`` the number of dimensions), then ``DD`` big-endian uint32 sizes, then the data.

    Returns:
        An array in native byte order with the shape the header declares.

    Raises:
        DataError: naming the file, if it is missing, not gzip, has a bad magic number, or its
            data length does not match the declared dimensions.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path}: not a readable gzip file ({e})") from e

    if len(raw) < 4:
        raise DataError(f"{path}: too short for an idx header ({len(raw)} bytes)")
    zero0, zero1, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    magic = struct.unpack(">I", raw[:4])[0]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad idx magic number 0x{magic:08x} "
            f"(expected 0x0000TTDD with type TT in {{08,09,0b,0c,0d,0e}} and DD >= 1)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = math.prod(dims) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        raise DataError(
            f"{path}: idx data is {found} bytes, but dims {tuple(dims)} of {dtype.name} "
            f"need {expected}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


@register_dataset("mnist")
def load_mnist(
    root: str | PathLike[str] | None = None,
    *,
    n_train: int = 8000,
    n_test: int = 2000,
    seed: int = 0,
    flatten: bool = False,
    size: int | None = None,
    normalize: bool = True,
    verify: bool = True,
) -> Splits:
    """The official MNIST 10k test set, split into train and test with a fixed seed.

    Reference: LeCun et al., "Gradient-based learning applied to document recognition",
    Proc. IEEE 1998; data from http://yann.lecun.com/exdb/mnist/.

    Pixels are scaled to [0, 1], optionally average-pooled to ``size x size``, then (if
    ``normalize``) standardised ``x = (x - 0.1307) / 0.3081``. Average pooling keeps the pixel
    mean, so the same constants are used at every size.

    Args:
        root: directory holding ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``;
            default the copy shipped in the package.
        n_train: training examples (default 8,000).
        n_test: test examples (default 2,000); ``n_train + n_test <= 10,000``.
        seed: seed of the ``torch.Generator`` permutation that makes the split.
        flatten: return ``(N, size*size)`` vectors instead of ``(N, 1, size, size)`` images.
        size: side length after average pooling; must divide 28 (14, 7, 4, 2). ``None`` keeps 28.
        normalize: standardise with the MNIST mean/std; if ``False`` pixels stay in [0, 1].
        verify: check the md5 of both ``.gz`` files first.

    Returns:
        :class:`Splits` named ``"mnist"`` with 10 classes.

    Shapes:
        - x: ``(N, 1, S, S)`` float32 (``S = size or 28``), or ``(N, S*S)`` if ``flatten``
        - y: ``(N,)`` int64 in ``[0, 10)``

    Raises:
        DataError: a file is missing, fails its md5 check or is not a valid idx file.
    """
    if size is not None and (size < 1 or 28 % size != 0):
        raise ValueError(f"size={size} must divide 28 (one of 1, 2, 4, 7, 14, 28)")
    root = Path(root) if root is not None else FILES_DIR / "mnist"
    img_path, lbl_path = root / _IMAGES, root / _LABELS
    if verify:
        verify_md5(img_path, MNIST_FILES[_IMAGES])
        verify_md5(lbl_path, MNIST_FILES[_LABELS])

    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), "
            f"found {images.dtype} {images.shape}"
        )
    if labels.shape != (images.shape[0],):
        raise DataError(
            f"{lbl_path}: expected {images.shape[0]} labels to match {img_path.name}, "
            f"found shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"{lbl_path}: labels must lie in [0, 9], found {labels.min()}..{labels.max()}"
        )

    x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)  # (N, 1, 28, 28)
    if size is not None and size != 28:
        x = F.avg_pool2d(x, kernel_size=28 // size)  # (N, 1, size, size)
    if normalize:
        x = (x - MNIST_MEAN) / MNIST_STD
    if flatten:
        x = x.flatten(1)  # (N, size*size)
    y = torch.from_numpy(labels.astype(np.int64))
    return make_splits(
        x, y, n_train=n_train, n_test=n_test, seed=seed, name="mnist", num_classes=10
    )
