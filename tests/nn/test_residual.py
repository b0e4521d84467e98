import pytest
import torch
from torch import nn

from skiplab.nn import (
    DropPath,
    FixedScale,
    LayerScale,
    PadShortcut,
    ProjectionShortcut,
    Residual,
    ReZero,
    ScaleLastLayer,
    SkipInit,
    SkipShapeError,
    ZeroGamma,
    count_skips,
    make_shortcut,
    name_skips,
)


def conv_branch(cin: int = 8, cout: int = 8, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


def test_residual_adds_shortcut_and_branch():
    branch = nn.Linear(4, 4)
    block = Residual(branch)
    x = torch.randn(3, 4)
    torch.testing.assert_close(block(x), x + branch(x))


def test_plain_twin_has_no_shortcut():
    branch = nn.Linear(4, 4)
    block = Residual(branch, skip=False)
    x = torch.randn(3, 4)
    torch.testing.assert_close(block(x), branch(x))
    assert block.shortcut is None
    assert count_skips(nn.Sequential(block)) == 0
    assert count_skips(nn.Sequential(Residual(nn.Linear(4, 4)))) == 1


@pytest.mark.parametrize("scale", [ReZero(), SkipInit()])
def test_learnable_scalar_starts_as_exact_identity(scale):
    block = Residual(conv_branch(), scale=scale).eval()
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), x)


def test_zero_gamma_makes_block_exact_identity_and_survives_reset():
    block = Residual(conv_branch(), branch_init=ZeroGamma()).eval()
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), x)
    last_bn = block.branch[4]
    with torch.no_grad():
        last_bn.weight.fill_(1.0)
    block.reset_parameters()
    assert torch.equal(last_bn.weight, torch.zeros(8))
    # the first norm is untouched: zero-gamma is about the *last* norm only
    assert torch.equal(block.branch[1].weight, torch.ones(8))


def test_zero_gamma_without_norm_is_a_clear_error():
    with pytest.raises(ValueError, match="normalisation layer"):
        Residual(nn.Linear(3, 3), branch_init=ZeroGamma())


def test_fixed_scale_and_layer_scale():
    branch = nn.Linear(4, 4)
    x = torch.randn(2, 4)
    torch.testing.assert_close(Residual(branch, scale=FixedScale(0.5))(x), x + 0.5 * branch(x))
    ls = LayerScale(4, init=1e-5, channel_dim=-1)
    torch.testing.assert_close(Residual(branch, scale=ls)(x), x + 1e-5 * branch(x))
    with pytest.raises(ValueError, match="LayerScale\\(4\\) got 3 channels"):
        ls(torch.randn(2, 3))


def test_scale_last_layer_scales_only_the_last_weight():
    branch = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
    first, last = branch[0].weight.clone(), branch[2].weight.clone()
    Residual(branch, branch_init=ScaleLastLayer(0.25))
    torch.testing.assert_close(branch[2].weight, 0.25 * last)
    torch.testing.assert_close(branch[0].weight, first)


def test_shape_mismatch_names_block_shapes_and_fix():
    model = name_skips(nn.Sequential(nn.Identity(), Residual(conv_branch(8, 16, 2))))
    with pytest.raises(SkipShapeError) as err:
        model(torch.randn(2, 8, 8, 8))
    msg = str(err.value)
    assert "'1'" in msg  # the qualified name inside the model
    assert "(2, 8, 8, 8)" in msg and "(2, 16, 4, 4)" in msg
    assert "PadShortcut" in msg and "ProjectionShortcut" in msg


def test_broadcastable_shapes_are_refused_too():
    # (B, 1, H, W) + (B, C, H, W) would silently broadcast in PyTorch.
    block = Residual(nn.Conv2d(1, 4, 1))
    with pytest.raises(SkipShapeError, match=r"\(2, 1, 5, 5\) and \(2, 4, 5, 5\)"):
        block(torch.randn(2, 1, 5, 5))


@pytest.mark.parametrize("dim", [1, 2])
def test_option_a_pads_channels_and_subsamples(dim):
    sc = PadShortcut(4, 8, stride=2)
    x = torch.randn(2, 4, *([6] * dim))
    y = sc(x)
    assert y.shape == (2, 8, *([3] * dim))
    assert sum(p.numel() for p in sc.parameters()) == 0
    kept = y[:, 2:6]
    sub = x[(slice(None), slice(None), *([slice(None, None, 2)] * dim))]
    assert torch.equal(kept, sub)
    assert torch.count_nonzero(y[:, :2]) == 0 and torch.count_nonzero(y[:, 6:]) == 0


def test_option_b_projects_and_fixes_the_block():
    block = Residual(conv_branch(8, 16, 2), ProjectionShortcut(8, 16, stride=2))
    assert block(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    block_a = Residual(conv_branch(8, 16, 2), make_shortcut("A", 8, 16, 2))
    assert block_a(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)


def test_bad_options_list_allowed_values():
    with pytest.raises(ValueError, match=r"\('A', 'B'\)"):
        make_shortcut("C", 4, 8, 2)
    with pytest.raises(ValueError, match="ProjectionShortcut"):
        PadShortcut(8, 4)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)


def test_drop_path_keeps_expectation_and_is_identity_in_eval():
    torch.manual_seed(0)
    dp = DropPath(0.3)
    x = torch.ones(20000, 1)
    y = dp.train()(x)
    values = torch.unique(y)
    assert len(values) == 2 and values[0] == 0 and abs(values[1].item() - 1 / 0.7) < 1e-6
    assert abs(y.mean().item() - 1.0) < 0.03
    assert torch.equal(dp.eval()(x), x)


def test_repr_shows_variant():
    block = Residual(conv_branch(2, 4, 2), PadShortcut(2, 4, 2), branch_init=ZeroGamma())
    text = repr(block)
    assert "option A" in text and "ZeroGamma()" in text and "skip=True" in text
