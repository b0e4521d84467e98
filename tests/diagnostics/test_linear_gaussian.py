import numpy as np
import pytest

from skiplab.diagnostics import gaussian_mi, linear_block_mi, stacked_mutual_information
from skiplab.diagnostics.linear_gaussian import make_branch, noisy_copy_information, sample_stack


def test_sampled_stack_matches_its_closed_form():
    rng = np.random.default_rng(0)
    fs = [make_branch("random", 3, rng) for _ in range(2)]
    x, y = sample_stack(fs, np.eye(3), 0.5, True, 30_000, rng)
    assert x.shape == y.shape == (30_000, 3)
    closed = stacked_mutual_information(fs, np.eye(3), 0.5, True)[-1]
    assert gaussian_mi(x, y) == pytest.approx(closed, abs=0.05)
    with pytest.raises(ValueError, match="must be one of"):
        make_branch("dense", 3, rng)


def test_branch_families():
    rng = np.random.default_rng(1)
    assert not make_branch("zero", 4, rng).any()
    assert np.linalg.matrix_rank(make_branch("low-rank", 6, rng)) == 2
    assert np.linalg.matrix_rank(make_branch("low-rank", 2, rng)) == 1
    big = make_branch("random", 400, rng)  # entries N(0, 1/d): E |F v|^2 = |v|^2
    v = rng.standard_normal(400)
    assert np.sum((big @ v) ** 2) / np.sum(v**2) == pytest.approx(1.0, rel=0.2)


def test_noisy_copy_information_is_the_residual_block_with_a_zero_branch():
    cov = np.diag([2.0, 1.0, 0.5])
    full = noisy_copy_information(cov, 0.5)
    assert full == pytest.approx(0.5 * np.sum(np.log1p(np.diag(cov) / 0.25)), rel=1e-12)
    assert linear_block_mi(np.zeros((3, 3)), cov, 0.5, True) == pytest.approx(full, rel=1e-12)
