"""skiplab.data.digits: scikit-learn's 8x8 digits."""

from __future__ import annotations

import torch

from skiplab.data import load_digits


def test_digits_shapes_range_and_split():
    s = load_digits()
    x, y = s.train.tensors
    xt, _ = s.test.tensors
    assert x.shape == (1438, 1, 8, 8) and xt.shape == (359, 1, 8, 8)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10)) and s.num_classes == 10
    assert s.input_shape == (1, 8, 8) and s.in_channels == 1


def test_digits_deterministic_and_flatten():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    assert not torch.equal(a.test.tensors[1], c.test.tensors[1])
    f = load_digits(flatten=True)
    assert f.train.tensors[0].shape == (1438, 64) and f.input_shape == (64,)
    assert torch.equal(f.train.tensors[0], a.train.tensors[0].flatten(1))
