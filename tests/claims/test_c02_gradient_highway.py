import math

import pytest
import torch

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c02_gradient_highway import (
    block_gradient_norms,
    gradient_ratio,
    spectral_weights,
)
from skiplab.models import create_model
from skiplab.store import Store

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


def test_block_gradient_norms_cover_every_block():
    torch.manual_seed(0)
    model = create_model("resnet20", in_channels=1)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    act, par = block_gradient_norms(model, x, y)
    assert len(par) == 9 and len(act) == 10  # 3 stages x 3 blocks; activations add the stem
    assert all(math.isfinite(v) and v > 0 for v in act + par)


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C02"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C02", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        for branch in ("linear", "tanh", "worst"):
            for depth in (8, 24, 56, 110):
                assert n[f"{branch}_L{depth}_residual_min"] >= (1 - RHO) ** depth * (1 - 1e-9)
                assert n[f"{branch}_L{depth}_plain_max"] <= RHO**depth * (1 + 1e-9)
        # the article's example, met with equality by the extremal stack
        assert n["worst_L24_residual_min"] == pytest.approx(0.0798, abs=5e-5)
        # real nets at init: ResNet-56 within 10x, plain-56 at least 100x further off
        assert 0.1 <= n["resnet56_param_ratio_gmean"] <= 10
        assert n["plain56_param_ratio_gmean"] > 100 * n["resnet56_param_ratio_gmean"]
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        figs = select_claims("C02")[0].figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["ratio_vs_depth.png", "per_block_gradients.png"]
        assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
