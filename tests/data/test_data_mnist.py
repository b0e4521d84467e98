"""skiplab.data.mnist: checksums, the idx reader and the 8,000/2,000 split."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from skiplab.data import (
    FILES_DIR,
    MNIST_FILES,
    DataError,
    load_mnist,
    md5sum,
    read_idx,
    verify_md5,
)

MNIST_DIR = FILES_DIR / "mnist"
IMAGES, LABELS = MNIST_FILES


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_shipped_files_pass_md5():
    for name, expected in MNIST_FILES.items():
        assert md5sum(MNIST_DIR / name) == expected
        verify_md5(MNIST_DIR / name, expected)


def test_md5_is_of_the_gz_file_not_the_content():
    import hashlib

    content = gzip.decompress((MNIST_DIR / IMAGES).read_bytes())
    assert hashlib.md5(content).hexdigest() != MNIST_FILES[IMAGES]


def _copy_mnist(dst: Path) -> None:
    for name in MNIST_FILES:
        shutil.copyfile(MNIST_DIR / name, dst / name)


def test_corrupted_file_raises_naming_file_and_md5s(tmp_path):
    _copy_mnist(tmp_path)
    bad = tmp_path / IMAGES
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert str(bad) in msg
    assert MNIST_FILES[IMAGES] in msg  # expected
    assert md5sum(bad) in msg  # found


def test_missing_file_raises_naming_file(tmp_path):
    shutil.copyfile(MNIST_DIR / LABELS, tmp_path / LABELS)
    with pytest.raises(DataError, match="file not found") as info:
        load_mnist(tmp_path)
    assert str(tmp_path / IMAGES) in str(info.value)
    assert isinstance(info.value, ValueError)


def _write_idx(path: Path, header: bytes, body: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(header + body)


def test_read_idx_roundtrip_and_header_checks(tmp_path):
    good = tmp_path / "good.gz"
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(good, struct.pack(">I3I", 0x0803, 2, 3, 4), arr.tobytes())
    np.testing.assert_array_equal(read_idx(good), arr)

    wide = tmp_path / "wide.gz"
    vals = np.array([1, -2, 300], dtype=">i4")
    _write_idx(wide, struct.pack(">II", 0x0C01, 3), vals.tobytes())
    np.testing.assert_array_equal(read_idx(wide), [1, -2, 300])

    bad_magic = tmp_path / "magic.gz"
    _write_idx(bad_magic, struct.pack(">I3I", 0x01080803, 2, 3, 4), arr.tobytes())
    with pytest.raises(DataError, match="magic") as info:
        read_idx(bad_magic)
    assert str(bad_magic) in str(info.value)

    short = tmp_path / "short.gz"
    _write_idx(short, struct.pack(">I3I", 0x0803, 2, 3, 4), arr.tobytes()[:-1])
    with pytest.raises(DataError, match=r"23 bytes.*need 24"):
        read_idx(short)

    not_gz = tmp_path / "plain.gz"
    not_gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        read_idx(not_gz)


def test_shapes_dtypes_and_ranges(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10
    assert mnist.input_shape == (1, 28, 28) and mnist.in_channels == 1
    x, y = mnist.train.tensors
    xt, yt = mnist.test.tensors
    assert x.shape == (8000, 1, 28, 28) and xt.shape == (2000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert int(yt.min()) == 0 and int(yt.max()) == 9
    # Standardised with the training-set constants: close to, not exactly, mean 0 / std 1.
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05


def test_unnormalized_pixels_in_unit_interval():
    x = load_mnist(normalize=False, n_train=500, n_test=0).train.tensors[0]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_split_is_deterministic_and_seed_dependent(mnist):
    again = load_mnist(seed=0)
    other = load_mnist(seed=1)
    assert torch.equal(mnist.train.tensors[0], again.train.tensors[0])
    assert torch.equal(mnist.test.tensors[1], again.test.tensors[1])
    assert not torch.equal(mnist.train.tensors[1], other.train.tensors[1])


def test_split_is_a_partition_of_the_10k(mnist):
    full = load_mnist(n_train=10000, n_test=0, verify=False).train.tensors[1]
    y = torch.cat([mnist.train.tensors[1], mnist.test.tensors[1]])
    assert torch.equal(torch.bincount(y, minlength=10), torch.bincount(full, minlength=10))


def test_class_balance(mnist):
    for ds, n in ((mnist.train, 8000), (mnist.test, 2000)):
        counts = torch.bincount(ds.tensors[1], minlength=10).float()
        # MNIST classes make 8.9% (digit 5) to 11.4% (digit 1) of the test set.
        assert float(counts.min()) > 0.07 * n and float(counts.max()) < 0.13 * n


def test_downsample_and_flatten():
    s = load_mnist(size=14, n_train=100, n_test=10)
    assert s.train.tensors[0].shape == (100, 1, 14, 14) and s.input_shape == (1, 14, 14)
    f = load_mnist(size=7, flatten=True, n_train=100, n_test=10)
    assert f.train.tensors[0].shape == (100, 49) and f.in_channels == 49
    with pytest.raises(ValueError, match="must divide 28"):
        load_mnist(size=5)


def test_bad_split_sizes():
    with pytest.raises(ValueError, match="n_train"):
        load_mnist(n_train=9000, n_test=2000)
