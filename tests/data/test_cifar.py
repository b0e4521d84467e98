"""CIFAR-10 binary reader on small generated files in the release's format."""

import numpy as np
import pytest
import torch

from skiplab.data import DataError, flip_crop, get_dataset, read_cifar10_batch
from skiplab.data.cifar import (
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    RECORD_BYTES,
    RECORDS_PER_FILE,
)


def _write_batch(path, records, seed, label_fn=None):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(records, RECORD_BYTES), dtype=np.uint8)
    raw[:, 0] = label_fn(records) if label_fn else np.arange(records) % 10
    raw.tofile(path)
    return raw


def _write_release(root, records=20):
    root.mkdir(parents=True, exist_ok=True)
    raws = {}
    for i, name in enumerate((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)):
        raws[name] = _write_batch(root / name, records, seed=i)
    return raws


def test_reads_records_as_label_then_rgb_planes(tmp_path):
    raw = _write_batch(tmp_path / "b.bin", 7, seed=0)
    images, labels = read_cifar10_batch(tmp_path / "b.bin", records=7)
    assert images.shape == (7, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == list(range(7))
    # Record 3: byte 1 is red (0,0), byte 1024 is red (31,31), byte 1025 is green (0,0).
    assert images[3, 0, 0, 0] == raw[3, 1] and images[3, 0, 31, 31] == raw[3, 1024]
    assert images[3, 1, 0, 0] == raw[3, 1025] and images[3, 2, 0, 1] == raw[3, 2050]


def test_full_size_file_is_read(tmp_path):
    _write_batch(tmp_path / "data_batch_1.bin", RECORDS_PER_FILE, seed=1)
    images, labels = read_cifar10_batch(tmp_path / "data_batch_1.bin")
    assert images.shape == (10_000, 3, 32, 32) and labels.bincount().tolist() == [1000] * 10


def test_load_cifar10_splits_and_normalises(tmp_path):
    _write_release(tmp_path / "bin", records=20)
    splits = get_dataset("cifar10", root=tmp_path / "bin", records_per_file=20)
    assert splits.num_train == 100 and splits.num_test == 20
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    x = splits.train.tensors[0]
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.5  # centred, roughly
    assert splits.train.tensors[1][:20].tolist() == [i % 10 for i in range(20)]


def test_wrong_size_file_is_refused_with_name_and_expected_size(tmp_path):
    root = tmp_path / "bin"
    _write_release(root, records=20)
    (root / "data_batch_3.bin").write_bytes(b"\0" * (20 * RECORD_BYTES - 1))
    with pytest.raises(DataError, match=r"data_batch_3\.bin has 61459 bytes, expected 61460"):
        get_dataset("cifar10", root=root, records_per_file=20)
    # The real release size is what the default expects.
    with pytest.raises(DataError, match=r"expected 30730000 \(10000 records of 3073 bytes\)"):
        read_cifar10_batch(root / "data_batch_1.bin")


def test_bad_label_is_refused_with_the_record(tmp_path):
    path = tmp_path / "test_batch.bin"
    _write_batch(path, 20, seed=0, label_fn=lambda n: np.where(np.arange(n) == 13, 200, 1))
    with pytest.raises(DataError, match=r"test_batch\.bin: record 13 has label 200"):
        read_cifar10_batch(path, records=20)


def test_missing_path_or_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="needs the directory of the CIFAR-10 binary release"):
        get_dataset("cifar10")
    with pytest.raises(DataError, match="does not exist"):
        get_dataset("cifar10", root=tmp_path / "nowhere")
    root = tmp_path / "bin"
    _write_release(root, records=20)
    (root / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"test_batch\.bin is missing"):
        get_dataset("cifar10", root=root, records_per_file=20)


def test_python_pickle_release_is_never_read(tmp_path):
    # The python release's files have other names; a pickle renamed to .bin fails the size check
    # (read as bytes, never unpickled).
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("x",))

    (tmp_path / "data_batch_1.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match="data_batch_1.bin has"):
        read_cifar10_batch(tmp_path / "data_batch_1.bin")
    assert not marker.exists()


def test_flip_crop_is_a_shifted_window_of_the_padded_or_flipped_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=g)
    out = flip_crop(x, torch.Generator().manual_seed(5))
    again = flip_crop(x, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and torch.equal(out, again)  # deterministic given the generator
    flips, shifts = 0, set()
    for img, src in zip(out, x):
        found = None
        for flipped in (False, True):
            s = src.flip(2) if flipped else src
            padded = torch.nn.functional.pad(s, (4, 4, 4, 4))
            for dy in range(9):
                for dx in range(9):
                    if torch.equal(padded[:, dy : dy + 32, dx : dx + 32], img):
                        found = (flipped, dy, dx)
        assert found is not None
        flips += found[0]
        shifts.add(found[1:])
    assert 0 < flips < 16 and len(shifts) > 4  # both flips and several offsets occur
