"""skiplab.data._base: the registry and the Splits container."""

from __future__ import annotations

import pytest
import torch

import skiplab.data
from skiplab.data import Splits, get_dataset, list_datasets


def test_list_datasets_sorted():
    assert list_datasets() == ["cifar10", "digits", "mnist", "mnist1d"]


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"'imagenet'.*cifar10, digits, mnist, mnist1d"):
        get_dataset("imagenet")


def test_get_dataset_passes_kwargs():
    s = get_dataset("mnist", n_train=100, n_test=50, size=14)
    assert isinstance(s, Splits) and (s.num_train, s.num_test) == (100, 50)
    assert s.input_shape == (1, 14, 14)


def test_subset_and_repr():
    s = get_dataset("digits")
    sub = s.subset(100, 20)
    assert (sub.num_train, sub.num_test) == (100, 20)
    assert torch.equal(sub.train.tensors[0], s.train.tensors[0][:100])
    assert s.subset(n_test=5).num_train == s.num_train
    assert repr(sub) == (
        "Splits(name='digits', train=100, test=20, input_shape=(1, 8, 8), num_classes=10)"
    )
    with pytest.raises(ValueError, match="n_train=5000 is out of range"):
        s.subset(5000)


def test_public_names_exported():
    for name in skiplab.data.__all__:
        assert hasattr(skiplab.data, name), name
