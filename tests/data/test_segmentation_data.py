import pytest
import torch

from skiplab.data import load_cells, load_mnist_segmentation, make_cells


def test_cells_are_seeded_and_have_thin_boundaries():
    x1, m1 = make_cells(3, 64, seed=5)
    x2, m2 = make_cells(3, 64, seed=5)
    assert torch.equal(x1, x2) and torch.equal(m1, m2)
    assert not torch.equal(make_cells(3, 64, seed=6)[1], m1)
    assert x1.shape == (3, 1, 64, 64) and m1.shape == (3, 64, 64)
    assert 0.15 < m1.float().mean() < 0.7
    assert set(m1.unique().tolist()) == {0, 1}


def test_cells_splits_and_bad_arguments():
    s = load_cells(4, 2, 44, seed=0)
    assert s.num_train == 4 and s.num_test == 2 and s.input_shape == (1, 44, 44)
    with pytest.raises(ValueError, match="cell_radius"):
        make_cells(1, 32, cell_radius=(5, 2))


def test_mnist_segmentation_masks_are_the_digit():
    s = load_mnist_segmentation(20, 10, pad_to=44)
    x, m = s.train.tensors
    assert x.shape == (20, 1, 44, 44) and m.shape == (20, 44, 44)
    assert m[:, :8].sum() == 0  # padding is background
    assert 0.02 < m.float().mean() < 0.2
    with pytest.raises(ValueError, match="pad_to"):
        load_mnist_segmentation(2, 2, pad_to=29)
