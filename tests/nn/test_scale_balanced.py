import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from skiplab.nn import ScaleBalancedResidual


def _block(seed: int, stat: str = "std", skip: bool = True) -> ScaleBalancedResidual:
    torch.manual_seed(seed)
    branch = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    return ScaleBalancedResidual(branch, stat=stat, skip=skip).double()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    k=st.integers(-40, 40),
    stat=st.sampled_from(["std", "rms"]),
    skip=st.booleans(),
)
def test_exactly_homogeneous_for_powers_of_two(seed, k, stat, skip):
    # Multiplying by 2**k is exact in floating point, so homogeneity must hold bit for bit.
    block = _block(seed, stat, skip)
    x = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    c = 2.0**k
    assert torch.equal(block(c * x), c * block(x))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    log_c=st.floats(-3 * math.log(10), 3 * math.log(10)),
    stat=st.sampled_from(["std", "rms"]),
)
def test_homogeneous_for_any_positive_scale(seed, log_c, stat):
    block = _block(seed, stat)
    x = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    c = math.exp(log_c)
    torch.testing.assert_close(block(c * x), c * block(x), rtol=1e-12, atol=0.0)


def test_per_sample_scales_and_batch_independence():
    block = _block(0)
    x = torch.randn(3, 8, dtype=torch.float64)
    c = torch.tensor([[1e-3], [1.0], [1e3]], dtype=torch.float64)
    torch.testing.assert_close(block(c * x), c * block(x), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(block(x[1:2]), block(x)[1:2], rtol=1e-12, atol=1e-15)


def test_branch_to_skip_ratio_does_not_depend_on_scale():
    block = _block(1)
    x = torch.randn(64, 8, dtype=torch.float64)
    ratios = []
    for c in (1e-3, 1.0, 1e3):
        y = block(c * x)
        ratios.append(((y - c * x).norm() / (c * x).norm()).item())
    assert max(ratios) - min(ratios) < 1e-12 * max(ratios)
    assert 0.05 < ratios[0] < 20  # the branch is neither negligible nor dominant


def test_zero_scale_sample_passes_through_and_is_finite():
    block = _block(2)
    x = torch.zeros(2, 8, dtype=torch.float64)
    x[1] = 3.0  # constant sample: std 0
    y = block(x)
    assert torch.isfinite(y).all()
    assert torch.equal(y, x)


def test_bad_stat_and_shapes_are_named():
    with pytest.raises(ValueError, match=r"stat must be one of \('std', 'rms'\)"):
        ScaleBalancedResidual(nn.Identity(), stat="var")
    block = ScaleBalancedResidual(nn.Linear(8, 4))
    with pytest.raises(ValueError, match="input \\+ branch"):
        block(torch.randn(2, 8))
    with pytest.raises(ValueError, match="expects a batch"):
        block(torch.randn(8))
    assert "stat='std'" in repr(block)
