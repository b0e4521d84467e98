import torch

from skiplab.data import grid_of_gaussians, ring_of_gaussians


def test_true_samples_cover_every_mode_with_high_quality():
    for mix in (ring_of_gaussians(), grid_of_gaussians()):
        s = mix.mode_stats(mix.sample(5000, torch.Generator().manual_seed(0)))
        assert s["modes"] == mix.num_modes
        assert s["hq_frac"] > 0.98


def test_collapsed_and_spread_samples_are_caught():
    ring = ring_of_gaussians()
    collapsed = ring.centers[:1].repeat(1000, 1)
    s = ring.mode_stats(collapsed)
    assert s["modes"] == 1 and s["hq_frac"] == 1.0
    spread = torch.zeros(1000, 2)  # all at the centre of the ring: between the modes
    assert ring.mode_stats(spread)["hq_frac"] == 0.0
    assert grid_of_gaussians().num_modes == 25
