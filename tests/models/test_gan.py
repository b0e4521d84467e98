import pytest
import torch

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
