import pytest
import torch

from skiplab.claims import reproduce, select_claims
from skiplab.claims.c06_scale_balance import (
    ScaleNet,
    branch_to_skip_ratio,
    make_block,
    normalised_branch,
)
from skiplab.store import Store


def test_balanced_network_is_scale_invariant_end_to_end():
    torch.manual_seed(0)
    net = ScaleNet("balanced", 40, 16, 3, 10).double().eval()
    x = torch.randn(8, 40, dtype=torch.float64)
    out = net(x)
    for c in (1e-3, 1e3):
        torch.testing.assert_close(net(c * x), out, rtol=1e-9, atol=1e-12)
    std = ScaleNet("standard", 40, 16, 3, 10).double().eval()
    assert not torch.allclose(std(1e3 * x), std(x), atol=1e-3)


def test_standard_ratio_falls_like_one_over_scale():
    torch.manual_seed(0)
    z = torch.randn(64, 16)
    block = make_block("standard", normalised_branch(16)).eval()
    r1, r100 = branch_to_skip_ratio(block, z), branch_to_skip_ratio(block, 100 * z)
    assert r1 / r100 == pytest.approx(100, rel=0.01)
    with pytest.raises(ValueError, match="must be one of"):
        make_block("gated", normalised_branch(4))


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C06"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        num = store.latest_verdict("C06", "tiny").evidence["numbers"]
    assert num["standard_ratio_loglog_slope"] == pytest.approx(-1.0, abs=0.05)
    assert abs(num["balanced_ratio_loglog_slope"]) < 1e-3
    assert num["balanced_max_homogeneity_error"] < 1e-5
