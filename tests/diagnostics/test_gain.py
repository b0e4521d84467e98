import numpy as np
import torch

from skiplab.diagnostics.gain import bounds_hold, gain_summary, stack_gain
from skiplab.models.gan import Discriminator, GANConfig


def test_residual_gain_within_bounds_and_plain_gain_shrinks():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    res = stack_gain(Discriminator(GANConfig(d_blocks=12, hidden=32)), x)
    torch.manual_seed(0)
    plain = stack_gain(Discriminator(GANConfig(d_blocks=12, hidden=32, skip=False)), x)
    assert res["c"].shape == (64, 12) and res["gain"].shape == res["input_grad"].shape == (64,)
    assert bounds_hold(res["gain"], res["c"]) == 1.0
    assert (res["c"] < 1.0 + 1e-3).all()  # spectral norm: each branch at most 1-Lipschitz
    assert plain["gain"].mean() < 0.1 * res["gain"].mean()


def test_the_probe_leaves_the_discriminator_as_it_was():
    torch.manual_seed(0)
    d = Discriminator(GANConfig(d_blocks=3, hidden=16))
    before = {k: v.clone() for k, v in d.state_dict().items()}
    stack_gain(d, torch.randn(8, 2))
    assert d.training  # back in train mode
    assert all(p.grad is None for p in d.parameters())  # no gradients left behind
    # eval mode: spectral norm's power-iteration vectors are not updated by the probe
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())


def test_bounds_hold_counts_samples_outside_the_bounds():
    c = np.full((4, 2), 0.5)  # bounds (0.5^2, 1.5^2) = (0.25, 2.25)
    assert bounds_hold(np.array([0.3, 1.0, 2.0, 2.2]), c) == 1.0
    assert bounds_hold(np.array([0.1, 1.0, 3.0, 2.2]), c) == 0.5


def test_gain_summary_medians():
    torch.manual_seed(0)
    s = gain_summary(Discriminator(GANConfig(d_blocks=4, hidden=16)), torch.randn(32, 2))
    assert s.in_bounds == 1.0 and 0 < s.c_mean <= s.c + 1e-6 and s.input_grad > 0
    assert (1 - s.c) ** 4 <= s.gain <= (1 + s.c) ** 4
