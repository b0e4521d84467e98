"""Synthetic sequence tasks: each generator checked against its definition."""

import pytest
import torch

from skiplab.data import (
    COPY_BLANK,
    COPY_DELIMITER,
    adding_problem,
    copy_memory,
    load_mnist1d_sequence,
    sequence_copy,
    sequence_reversal,
)


def test_adding_target_is_the_sum_of_the_two_marked_numbers():
    x, y = adding_problem(500, 30, seed=3)
    assert x.shape == (500, 30, 2) and y.shape == (500,)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert torch.equal(markers.sum(1), torch.full((500,), 2.0))
    # one marker in each half
    assert torch.equal(markers[:, :15].sum(1), torch.ones(500))
    for i in range(500):
        idx = markers[i].nonzero().flatten()
        assert torch.isclose(y[i], values[i, idx].sum())
    # predicting the mean 1 scores about 1/6 (var of U(0,1) + U(0,1))
    assert abs(((y - 1) ** 2).mean().item() - 1 / 6) < 0.03


def test_adding_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = adding_problem(8, 10, seed=1), adding_problem(8, 10, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], adding_problem(8, 10, seed=2)[0])
    assert torch.equal(state, torch.get_rng_state())


def test_copy_memory_layout():
    x, y = copy_memory(50, delay=7, copy_length=4, seed=0)
    assert x.shape == y.shape == (50, 7 + 8)
    symbols = x[:, :4]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (x[:, 4:10] == COPY_BLANK).all()  # delay - 1 blanks
    assert (x[:, 10] == COPY_DELIMITER).all()
    assert (x[:, 11:] == COPY_BLANK).all()
    assert (y[:, :11] == COPY_BLANK).all()
    assert torch.equal(y[:, 11:], symbols)


def test_copy_and_reversal_targets():
    x, y = sequence_copy(20, 9, vocab=5, seed=0)
    assert torch.equal(x, y) and x.max() < 5 and x.min() >= 0
    x, y = sequence_reversal(20, 9, vocab=5, seed=0)
    for t in range(9):
        assert torch.equal(y[:, t], x[:, 8 - t])


@pytest.mark.parametrize(
    "call",
    [lambda: adding_problem(4, 1), lambda: copy_memory(4, 0), lambda: sequence_reversal(0, 3)],
)
def test_bad_sizes_are_named(call):
    with pytest.raises(ValueError, match="must be >= "):
        call()


def test_mnist1d_as_a_sequence(tmp_path):
    s = load_mnist1d_sequence(num_samples=200, cache_dir=tmp_path)
    x, y = s.train.tensors
    assert x.shape == (160, 40, 1) and y.shape == (160,)
    assert s.name == "mnist1d_seq" and s.num_classes == 10
