"""skiplab.data.mnist1d: offline generation and the atomic .npz cache."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import skiplab.data.mnist1d as m1d
from skiplab.data import default_cache_dir, load_mnist1d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLAB_CACHE", str(tmp_path))
    return tmp_path / "mnist1d"


def test_cache_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLAB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SKIPLAB_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "skiplab")


def test_default_shapes_and_dtypes(cache):
    s = load_mnist1d()
    x, y = s.train.tensors
    xt, yt = s.test.tensors
    assert x.shape == (4000, 1, 40) and xt.shape == (1000, 1, 40)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert s.input_shape == (1, 40) and s.in_channels == 1 and s.num_classes == 10
    assert set(torch.cat([y, yt]).tolist()) == set(range(10))


def test_matches_the_package_generator(cache):
    from types import SimpleNamespace

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=300, seed=3)
    ref = make_dataset(SimpleNamespace(**args))
    s = load_mnist1d(num_samples=300, seed=3)
    np.testing.assert_allclose(s.train.tensors[0][:, 0].numpy(), ref["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(s.test.tensors[1].numpy(), ref["y_test"])


def test_deterministic_and_seed_dependent(cache):
    a = load_mnist1d(num_samples=500, seed=1, cache=False)
    b = load_mnist1d(num_samples=500, seed=1, cache=False)
    c = load_mnist1d(num_samples=500, seed=2, cache=False)
    assert a.train.tensors[0].shape == (400, 1, 40) and a.test.tensors[0].shape == (100, 1, 40)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert not cache.exists()  # cache=False writes nothing


def test_second_call_uses_cache(cache, monkeypatch):
    first = load_mnist1d(num_samples=500)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    def fail(args):
        raise AssertionError("generator called although the cache exists")

    monkeypatch.setattr(m1d, "_generate", fail)
    second = load_mnist1d(num_samples=500)
    assert torch.equal(first.train.tensors[0], second.train.tensors[0])
    assert torch.equal(first.test.tensors[1], second.test.tensors[1])
    # Different arguments are a different key, so they do not hit this entry.
    with pytest.raises(AssertionError, match="generator called"):
        load_mnist1d(num_samples=500, iid_noise_scale=0.05)


def test_corrupt_cache_is_regenerated(cache):
    first = load_mnist1d(num_samples=200)
    (path,) = cache.glob("*.npz")
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="regenerating"):
        again = load_mnist1d(num_samples=200)
    assert torch.equal(first.train.tensors[0], again.train.tensors[0])
    assert np.load(path)["x"].shape == (160, 40)  # rewritten


def test_global_rng_untouched(cache):
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    load_mnist1d(num_samples=100, cache=False)
    assert np.random.rand() == expected_np and random.random() == expected_py


def test_unknown_generator_argument(cache):
    with pytest.raises(ValueError, match=r"unknown MNIST-1D generator argument.*nonsense"):
        load_mnist1d(nonsense=1)
