import pytest
import torch

from skiplab.diagnostics.bounded_stacks import (
    bound_violations,
    gradient_ratio,
    plot_ratios,
    spectral_weights,
)

RHO = 0.1


def test_spectral_weights_have_norm_rho():
    gen = torch.Generator().manual_seed(0)
    for kind in ("gaussian", "negative_identity"):
        for w in spectral_weights(5, 12, RHO, gen, kind):
            assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(RHO, rel=1e-12)


def test_unknown_weight_kind_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="gaussian.*negative_identity"):
        spectral_weights(2, 4, RHO, torch.Generator(), "orthogonal")


@pytest.mark.parametrize("depth", [1, 8, 24])
def test_extremal_stack_meets_both_bounds_with_equality(depth):
    # W = -rho I: each residual block scales the gradient by exactly 1 - rho, each plain one by rho
    gen = torch.Generator().manual_seed(1)
    w = spectral_weights(depth, 6, RHO, gen, "negative_identity")
    x0 = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    res = gradient_ratio(w, x0, g, residual=True)
    plain = gradient_ratio(w, x0, g, residual=False)
    torch.testing.assert_close(res, torch.full_like(res, (1 - RHO) ** depth), rtol=1e-12, atol=0)
    torch.testing.assert_close(plain, torch.full_like(plain, RHO**depth), rtol=1e-12, atol=0)
    # met with equality: within the rounding slack, not a violation
    assert bound_violations(res.tolist(), plain.tolist(), depth, RHO) == []


@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_random_stacks_respect_the_bounds_and_sit_far_inside(activation):
    gen = torch.Generator().manual_seed(2)
    depth = 24
    w = spectral_weights(depth, 32, RHO, gen)
    x0 = torch.randn(16, 32, generator=gen, dtype=torch.float64)
    g = torch.randn(16, 32, generator=gen, dtype=torch.float64)
    res = gradient_ratio(w, x0, g, True, activation)
    plain = gradient_ratio(w, x0, g, False, activation)
    assert res.min() >= (1 - RHO) ** depth and res.max() <= (1 + RHO) ** depth
    assert plain.max() <= RHO**depth
    # random branches rarely align against the gradient: the residual ratio stays near 1
    assert res.min() > 0.5 and res.max() < 2.0


def test_gradient_ratio_rejects_an_unknown_activation():
    w = spectral_weights(1, 4, RHO, torch.Generator().manual_seed(0))
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="linear.*tanh"):
        gradient_ratio(w, x, x, True, "relu6")


def test_bound_violations_name_the_broken_bound():
    lower, upper = (1 - RHO) ** 8, RHO**8
    assert bound_violations([lower * 0.99], [upper], 8, RHO) == [
        f"L=8: residual {lower * 0.99:.3g} < (1-rho)^L = {lower:.3g}"
    ]
    (msg,) = bound_violations([1.0], [upper * 1.01], 8, RHO)
    assert msg.startswith("L=8: plain")


def test_plot_ratios_writes_a_figure(tmp_path):
    stacks = {"W x": {8: ([0.9, 1.1], [1e-10, 2e-10]), 24: ([0.8, 1.2], [1e-30, 1e-26])}}
    plot_ratios(stacks, RHO, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
