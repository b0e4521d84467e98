import pytest
import torch

from skiplab.claims.c10_gan_stability import bounds_hold, stack_gain
from skiplab.models.gan import Discriminator, GANConfig, Generator
from skiplab.nn import count_skips


def test_shapes_and_plain_twin():
    cfg = GANConfig(d_blocks=3, hidden=16)
    d, g = Discriminator(cfg), Generator(cfg)
    assert d(torch.randn(5, 2)).shape == (5, 1)
    assert g(torch.randn(5, 16)).shape == (5, 2)
    assert (
        count_skips(d) == 3 and count_skips(Discriminator(GANConfig(d_blocks=3, skip=False))) == 0
    )
    with pytest.raises(ValueError, match="\\(B, 2\\)"):
        d(torch.randn(5, 3))


def test_residual_gain_within_bounds_and_plain_gain_shrinks():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    res = stack_gain(Discriminator(GANConfig(d_blocks=12, hidden=32)), x)
    torch.manual_seed(0)
    plain = stack_gain(Discriminator(GANConfig(d_blocks=12, hidden=32, skip=False)), x)
    assert res["c"].shape == (64, 12)
    assert bounds_hold(res["gain"], res["c"]) == 1.0
    assert (res["c"] < 1.0 + 1e-3).all()  # spectral norm: each branch at most 1-Lipschitz
    assert plain["gain"].mean() < 0.1 * res["gain"].mean()
