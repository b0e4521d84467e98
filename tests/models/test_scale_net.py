import pytest
import torch

from skiplab.models.scale_net import (
    ScaleNet,
    UnitScale,
    branch_to_skip_ratio,
    homogeneity_error,
    make_block,
    normalised_branch,
)


def test_balanced_network_is_scale_invariant_end_to_end():
    torch.manual_seed(0)
    net = ScaleNet("balanced", 40, 16, 3, 10).double().eval()
    x = torch.randn(8, 40, dtype=torch.float64)
    out = net(x)
    for c in (1e-3, 1e3):
        torch.testing.assert_close(net(c * x), out, rtol=1e-9, atol=1e-12)
    std = ScaleNet("standard", 40, 16, 3, 10).double().eval()
    assert not torch.allclose(std(1e3 * x), std(x), atol=1e-3)
    assert "kind='balanced'" in repr(net)
    with pytest.raises(ValueError, match="must be one of"):
        ScaleNet("gated", 40, 16, 3, 10)


def test_standard_ratio_falls_like_one_over_scale():
    torch.manual_seed(0)
    z = torch.randn(64, 16)
    block = make_block("standard", normalised_branch(16)).eval()
    r1, r100 = branch_to_skip_ratio(block, z), branch_to_skip_ratio(block, 100 * z)
    assert r1 / r100 == pytest.approx(100, rel=0.01)
    with pytest.raises(ValueError, match="must be one of"):
        make_block("gated", normalised_branch(4))


def test_balanced_block_is_homogeneous_and_the_standard_one_is_not():
    torch.manual_seed(0)
    z = torch.randn(64, 16, dtype=torch.float64)
    balanced = make_block("balanced", normalised_branch(16)).double().eval()
    standard = make_block("standard", normalised_branch(16)).double().eval()
    assert max(homogeneity_error(balanced, z, c) for c in (1e-3, 1e3)) < 1e-12
    assert homogeneity_error(standard, z, 1e-3) > 0.1
    unit = UnitScale()(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    torch.testing.assert_close(
        unit, torch.tensor([[3.0, 4.0], [0.0, 0.0]]) / torch.tensor([[12.5**0.5], [1.0]])
    )
