import pytest
import torch
from torch import nn

from skiplab.diagnostics import block_spectral_norms, exact_jacobian, singular_values, spectral_norm
from skiplab.models import create_model
from skiplab.nn import Residual


def test_power_iteration_matches_exact_on_small_nets():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4))
    x = torch.randn(6, dtype=torch.float32)
    exact = torch.linalg.svdvals(exact_jacobian(mlp, x))[0].item()
    est = spectral_norm(mlp, x, iters=200, tol=1e-7)
    assert est.converged and est.sigma == pytest.approx(exact, rel=1e-4)
    conv = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv1d(3, 2, 3, padding=1))
    xc = torch.randn(1, 2, 7)
    sv = singular_values(conv, xc)
    assert sv.shape == (14,) and torch.all(sv[:-1] >= sv[1:])
    assert spectral_norm(conv, xc, iters=300, tol=1e-8).sigma == pytest.approx(
        sv[0].item(), rel=1e-3
    )


def test_linear_residual_block_is_identity_plus_w():
    torch.manual_seed(1)
    w = nn.Linear(5, 5, bias=False)
    block = Residual(w)
    x = torch.randn(5)
    expected = torch.linalg.matrix_norm(torch.eye(5) + w.weight.detach(), ord=2).item()
    assert spectral_norm(block, x, iters=500, tol=1e-9).sigma == pytest.approx(expected, rel=1e-4)
    # the plain twin is W alone
    plain = Residual(w, skip=False)
    wn = torch.linalg.matrix_norm(w.weight.detach(), ord=2).item()
    assert spectral_norm(plain, x, iters=500, tol=1e-9).sigma == pytest.approx(wn, rel=1e-4)


def test_block_spectral_norms_on_resnet():
    torch.manual_seed(0)
    out = block_spectral_norms(
        create_model("resnet20", dim=1, in_channels=1), (torch.randn(4, 1, 16),), iters=8
    )
    assert len(out["sigma"]) == 9 and all(s > 0 for s in out["sigma"])
    assert out["network"] > 0 and 1 <= out["network_iterations"] <= 8
