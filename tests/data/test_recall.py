"""First-symbol recall: the class is the first token, every later token a distractor."""

import pytest
import torch

from skiplab.data.recall import first_symbol_recall


def test_the_class_is_the_first_token_and_the_rest_are_distractors():
    x, y = first_symbol_recall(400, 12, symbols=4, seed=3)
    assert x.shape == (400, 12, 8) and x.dtype == torch.float32
    assert y.shape == (400,) and y.dtype == torch.int64
    assert torch.equal(x.sum(-1), torch.ones(400, 12))  # one-hot
    tokens = x.argmax(-1)
    assert torch.equal(tokens[:, 0], y) and ((y >= 0) & (y < 4)).all()
    assert ((tokens[:, 1:] >= 4) & (tokens[:, 1:] < 8)).all()  # a disjoint distractor set
    # classes and distractors are uniform: each near 1/4 of 400 and of 400 x 11
    assert torch.bincount(y, minlength=4).min() > 70
    assert torch.bincount(tokens[:, 1:].flatten() - 4, minlength=4).min() > 1000


def test_length_one_has_no_distractors_and_the_generator_is_seeded():
    x, y = first_symbol_recall(5, 1, symbols=3, seed=0)
    assert x.shape == (5, 1, 6) and torch.equal(x[:, 0].argmax(-1), y)
    state = torch.get_rng_state()
    a, b = first_symbol_recall(8, 10, seed=1), first_symbol_recall(8, 10, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], first_symbol_recall(8, 10, seed=2)[0])
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone


@pytest.mark.parametrize(("n", "length", "symbols"), [(0, 5, 4), (3, 0, 4), (3, 5, 1)])
def test_bad_sizes_are_refused(n, length, symbols):
    with pytest.raises(ValueError, match="first_symbol_recall"):
        first_symbol_recall(n, length, symbols)
