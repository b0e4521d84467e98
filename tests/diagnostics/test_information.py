import itertools

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from skiplab import create_model
from skiplab.diagnostics import (
    gaussian_channel_mi,
    gaussian_mi,
    ksg_mi,
    layerwise_information,
    linear_block_mi,
    stacked_mutual_information,
)


def _monte_carlo_mi(a, cov_x, noise_std, n, rng):
    """I(X;Y) = E[ln p(y|x) - ln p(y)] by sampling, with the Gaussian densities from scipy."""
    d = a.shape[0]
    x = rng.multivariate_normal(np.zeros(cov_x.shape[0]), cov_x, size=n)
    noise = noise_std * rng.standard_normal((n, d))
    y = x @ a.T + noise
    log_cond = multivariate_normal(np.zeros(d), noise_std**2 * np.eye(d)).logpdf(noise)
    log_marg = multivariate_normal(np.zeros(d), a @ cov_x @ a.T + noise_std**2 * np.eye(d)).logpdf(
        y
    )
    terms = log_cond - log_marg
    return terms.mean(), terms.std() / np.sqrt(n), x, y


@pytest.mark.parametrize("kind", ["zero", "low_rank", "random"])
@pytest.mark.parametrize("residual", [True, False])
def test_closed_form_matches_monte_carlo_of_the_definition(kind, residual):
    rng = np.random.default_rng(0)
    d = 4
    f = {
        "zero": np.zeros((d, d)),
        "low_rank": np.outer(rng.standard_normal(d), rng.standard_normal(d)) / d,
        "random": rng.standard_normal((d, d)) / np.sqrt(d),
    }[kind]
    cov_x = np.diag([2.0, 1.0, 0.5, 0.25])
    a = np.eye(d) + f if residual else f
    closed = linear_block_mi(f, cov_x, 0.5, residual)
    mc, se, x, y = _monte_carlo_mi(a, cov_x, 0.5, 40_000, rng)
    assert abs(closed - mc) < 4 * se + 1e-9
    assert abs(gaussian_mi(x, y) - closed) < 0.03 + 0.01 * closed


def test_zero_branch_keeps_everything_with_skip_and_nothing_without():
    cov_x = np.diag([1.0, 2.0, 3.0])
    s = 0.3
    full = 0.5 * np.sum(np.log1p(np.diag(cov_x) / s**2))  # I(X; X + N)
    assert linear_block_mi(np.zeros((3, 3)), cov_x, s, residual=True) == pytest.approx(
        full, rel=1e-12
    )
    assert linear_block_mi(np.zeros((3, 3)), cov_x, s, residual=False) == 0.0


def test_plain_rank_r_block_is_bounded_by_rank():
    rng = np.random.default_rng(1)
    d, r, s = 8, 2, 0.1
    f = rng.standard_normal((d, r)) @ rng.standard_normal((r, d))
    plain = linear_block_mi(f, np.eye(d), s, residual=False)
    # only r directions of signal: at most r/2 ln(1 + sigma_max(F)^2 / s^2)
    bound = 0.5 * r * np.log1p(np.linalg.norm(f, 2) ** 2 / s**2)
    assert plain <= bound + 1e-9
    assert linear_block_mi(f, np.eye(d), s, residual=True) > plain


def test_stack_never_gains_information_and_first_layer_matches_one_block():
    rng = np.random.default_rng(2)
    d = 5
    fs = [0.5 * rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(12)]
    for residual in (True, False):
        mi = stacked_mutual_information(fs, np.eye(d), 0.4, residual)
        assert mi[0] == pytest.approx(linear_block_mi(fs[0], np.eye(d), 0.4, residual), rel=1e-12)
        assert all(b <= a + 1e-9 for a, b in itertools.pairwise(mi))  # data processing


def test_stack_matches_monte_carlo_of_the_stack():
    rng = np.random.default_rng(3)
    d, s, n = 3, 1.0, 20_000
    fs = [rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3)]
    x = rng.standard_normal((n, d))
    y = x
    for f in fs:
        y = y + y @ f.T + s * rng.standard_normal((n, d))
    closed = stacked_mutual_information(fs, np.eye(d), s, residual=True)[-1]
    assert abs(gaussian_mi(x, y) - closed) < 0.05
    assert 0.5 < closed < 2.0  # a range where KSG's downward bias stays small
    assert abs(ksg_mi(x, y, k=4) - closed) < 0.1


def test_ksg_on_independent_and_correlated_gaussians():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3000, 2))
    assert abs(ksg_mi(x, rng.standard_normal((3000, 2)))) < 0.03
    rho = 0.8
    y = rho * x[:, :1] + np.sqrt(1 - rho**2) * rng.standard_normal((3000, 1))
    exact = -0.5 * np.log(1 - rho**2)
    assert abs(ksg_mi(x[:, :1], y) - exact) < 0.05


def test_gaussian_channel_mi_checks_shapes_and_definiteness():
    with pytest.raises(ValueError, match="must be"):
        gaussian_channel_mi(np.eye(3), np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="not positive definite"):
        gaussian_channel_mi(np.eye(2), np.eye(2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="more samples"):
        gaussian_mi(np.zeros((3, 2)), np.zeros((3, 2)))


def test_layerwise_information_of_a_linear_net_is_the_closed_form():
    torch.manual_seed(0)
    d, n, s = 4, 20_000, 0.5
    lin = torch.nn.Linear(d, d, bias=False).double()
    x = torch.randn(n, d, dtype=torch.float64)
    got = layerwise_information(torch.nn.Sequential(lin), x, s, layers=["0"])
    w = lin.weight.detach().numpy()
    assert got["0"] == pytest.approx(gaussian_channel_mi(w, np.eye(d), s**2 * np.eye(d)), abs=0.02)
    assert got["input"] == pytest.approx(0.5 * d * np.log1p(1 / s**2), abs=0.02)


def test_layerwise_information_residual_mlp_keeps_more_than_plain_at_depth():
    x = torch.randn(512, 40)
    result = {}
    for skip in (True, False):
        torch.manual_seed(0)
        model = create_model("resmlp", depth=40, skip=skip)
        info = layerwise_information(model, x, noise_std=0.1)
        assert next(iter(info)) == "input" and len(info) == 21
        result[skip] = list(info.values())[-1]
    assert result[True] > result[False]
    with pytest.raises(ValueError, match="unknown layer"):
        layerwise_information(model, x, 0.1, layers=["nope"])
