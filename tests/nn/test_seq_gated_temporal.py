"""GatedSkip, Highway and TemporalSkip: the merges, their plain twins and their errors."""

import pytest
import torch
from torch import nn

from skiplab.nn import GatedSkip, Highway, SkipShapeError, TemporalSkip, count_skips, name_skips


def test_gated_skip_is_the_gru_mix_and_its_limits():
    carry, cand = torch.randn(3, 5), torch.randn(3, 5)
    z = torch.rand(3, 5)
    out = GatedSkip()(carry, cand, z)
    torch.testing.assert_close(out, (1 - z) * carry + z * cand)
    # z -> 0 is the identity highway, z -> 1 forgets the carry
    torch.testing.assert_close(GatedSkip()(carry, cand, torch.zeros(3, 5)), carry)
    torch.testing.assert_close(GatedSkip()(carry, cand, torch.ones(3, 5)), cand)


def test_gated_skip_gradient_through_carry_is_one_minus_z():
    carry = torch.randn(4, requires_grad=True)
    z = torch.full((4,), 0.25)
    GatedSkip()(carry, torch.randn(4), z).sum().backward()
    torch.testing.assert_close(carry.grad, torch.full((4,), 0.75))


def test_gated_plain_twin_drops_the_carry():
    carry, cand, z = torch.randn(2, 3), torch.randn(2, 3), torch.rand(2, 3)
    plain = GatedSkip(skip=False)
    torch.testing.assert_close(plain(carry, cand, z), z * cand)
    assert count_skips(plain) == 0 and count_skips(GatedSkip()) == 1


def test_gated_skip_refuses_broadcasting_and_names_the_block():
    model = name_skips(nn.ModuleDict({"mix": GatedSkip()}))
    with pytest.raises(SkipShapeError, match=r"'mix'.*\(2, 3\).*\(2, 1\)"):
        model["mix"](torch.randn(2, 3), torch.randn(2, 1), torch.rand(2, 1))


def test_highway_starts_close_to_carrying_its_input():
    torch.manual_seed(0)
    hw = Highway(nn.Linear(8, 8), nn.Linear(8, 8))  # gate bias -2: T ~ 0.12
    x = torch.randn(16, 8)
    with torch.no_grad():
        out, branch = hw(x), hw.branch(x)
    # closer to x than to the branch output
    assert (out - x).norm() < 0.3 * (out - branch).norm()
    assert count_skips(Highway(nn.Linear(8, 8), nn.Linear(8, 8), skip=False)) == 0


def test_temporal_skip_adds_the_mean_of_the_k_back_states():
    past = [torch.full((1, 2), float(i)) for i in range(6)]  # h_0..h_5, computing h_6
    new = torch.zeros(1, 2)
    out = TemporalSkip(ks=(2, 4))(new, past)
    torch.testing.assert_close(out, torch.full((1, 2), (4.0 + 2.0) / 2))
    # before enough history, h_0 stands in
    out = TemporalSkip(ks=(4,))(new, past[:2])
    torch.testing.assert_close(out, past[0])
    assert torch.equal(TemporalSkip(ks=(2,), skip=False)(new, past), new)


@pytest.mark.parametrize("ks", [(), (0,), (2, 2), (-1, 3)])
def test_temporal_skip_rejects_bad_ks(ks):
    with pytest.raises(ValueError, match="distinct integers >= 1"):
        TemporalSkip(ks=ks)


def test_temporal_skip_repr_shows_ks():
    assert "ks=(2, 4)" in repr(TemporalSkip(ks=(2, 4)))


def test_temporal_average_merge_is_convex_and_checked():
    past = [torch.full((1, 2), 3.0), torch.full((1, 2), 6.0)]
    out = TemporalSkip(ks=(2,), merge="average")(torch.zeros(1, 2), past)
    torch.testing.assert_close(out, torch.full((1, 2), 1.5))
    with pytest.raises(ValueError, match="merge must be one of"):
        TemporalSkip(merge="concat")
