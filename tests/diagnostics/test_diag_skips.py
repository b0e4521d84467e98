import importlib
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from skiplab.diagnostics import find_skips
from skiplab.models import create_model, example_inputs
from skiplab.nn import Residual

ROOT = Path(__file__).resolve().parents[2]


def _examples():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("examples.custom_models")


def test_resnet_and_plain_twin():
    x = torch.randn(2, 3, 16, 16)
    res = find_skips(create_model("resnet20", shortcut="B"), (x,))
    assert res.method == "torch.fx" and res.note == ""
    assert [m.kind for m in res.merges] == ["residual"] * 9
    assert [m.module for m in res.merges] == [f"blocks.{i}" for i in range(9)]
    # option-B projection (conv + BN) on the two downsampling blocks, identity elsewhere
    assert [m.shortcut_layers for m in res.merges] == [0, 0, 0, 1, 0, 0, 1, 0, 0]
    assert all(m.branch_layers == 2 for m in res.merges)
    assert find_skips(create_model("plain20"), (x,)).merges == []


def test_norms_and_ratio_are_exact():
    torch.manual_seed(0)
    branch = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(nn.Linear(4, 4), Residual(branch))
    x = torch.randn(3, 4)
    (m,) = find_skips(model, (x,)).merges
    h = model[0](x)
    sn = h.norm(dim=1).mean().item()
    bn = branch(h).norm(dim=1).mean().item()
    assert m.shortcut_norm == pytest.approx(sn, rel=1e-6)
    assert m.branch_norm == pytest.approx(bn, rel=1e-6)
    assert m.ratio == pytest.approx(bn / sn, rel=1e-6)


def test_hand_written_nanogpt_block_and_gelu_is_not_a_skip():
    ex = _examples()
    report = find_skips(ex.nanogpt(), (torch.randn(2, 1, 40),))
    assert report.method == "torch.fx"
    # two residual adds per block (attention, MLP); GELU's x + 0.044715 x^3 is not counted,
    # nor is the token + position embedding sum
    assert [m.kind for m in report.merges] == ["residual"] * 8
    assert {m.module for m in report.merges} == {f"blocks.{i}" for i in range(4)}
    assert all(m.shortcut_layers == 0 and m.branch_layers == 2 for m in report.merges)


def test_hand_written_unet_concat_skips():
    ex = _examples()
    report = find_skips(ex.unet(), (torch.randn(2, 1, 8, 8),))
    # the encoder features are the fork itself; the decoder side went down and up again:
    # pool, bottom (2 convs), up2 (1) = 3 layers, and 3 + dec2 (2) + enc2 (2) + up1 (1) = 8
    got = [(m.kind, m.shortcut_layers, m.branch_layers) for m in report.merges]
    assert got == [("concat", 0, 3), ("concat", 0, 8)]


class Highway(nn.Module):
    """y = T * H(x) + (1 - T) * x, written out by hand."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.h = nn.Linear(d, d)
        self.t = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.t(x))
        return t * torch.relu(self.h(x)) + (1 - t) * x


def test_gated_mix_found():
    (m,) = find_skips(Highway(6), (torch.randn(3, 6),)).merges
    assert m.kind == "gated"


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(Residual(nn.Linear(4, 4)), Residual(nn.Linear(4, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, 0] = 0.0  # item assignment: torch.fx cannot record it
        return self.blocks(x)


def test_fx_failure_is_said_and_the_recorded_forward_pass_finds_the_skips():
    report = find_skips(Untraceable(), (torch.randn(2, 4),))
    assert report.method == "forward" and report.traced is None
    assert "torch.fx tracing failed" in report.note
    assert [(m.module, m.method) for m in report.merges] == [
        ("blocks.0", "forward"),
        ("blocks.1", "forward"),
    ]
    assert all(math.isfinite(m.ratio) for m in report.merges)


def test_discovery_leaves_model_untouched():
    model = create_model("resnet20").eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    find_skips(model, (torch.randn(2, 3, 8, 8),))
    assert not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_discovery_removes_its_hooks():
    model = create_model("resnet20")
    find_skips(model, (torch.randn(2, 3, 8, 8),))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class InPlace(nn.Module):
    """``x[:, 0] = 0`` then ``x + f(x)``: the shortcut is the overwritten x."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x[:, 0] = 0.0
        return x + self.fc(x)


def test_in_place_assignment_is_a_new_value_of_the_same_tensor():
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(3, 4)
    (m,) = find_skips(model, (x,)).merges
    h = model.stem(x).detach()
    h[:, 0] = 0.0
    assert m.method == "forward" and m.module == ""
    assert m.shortcut_norm == pytest.approx(h.norm(dim=1).mean().item(), rel=1e-6)
    assert m.branch_norm == pytest.approx(model.fc(h).norm(dim=1).mean().item(), rel=1e-6)


def test_a_merge_fx_misses_is_kept_and_named():
    # spectral norm: fx traces the computed weight as a constant, so it sees no weight layer in
    # the discriminator's blocks; the recorded forward pass sees W / sigma as the weight
    name = "gan_discriminator_mnist"
    report = find_skips(create_model(name), example_inputs(name))
    assert report.method == "torch.fx"
    assert [(m.module, m.method) for m in report.merges] == [
        (f"blocks.{i}", "forward") for i in range(4)
    ]
    assert "found only in the recorded forward pass: residual in blocks.0" in report.note


def test_gradient_split_and_branch_variance_skip_merges_the_traced_graph_lacks():
    # The discriminator's merges are found only by the recorded forward pass; re-running the
    # fx graph for them used to raise KeyError on a node name it does not have, and then gave
    # no split at all. The split now re-runs the recorded forward pass: all 4 merges.
    import torch.nn.functional as F

    from skiplab.diagnostics import gradient_split, signal_propagation

    name = "gan_discriminator_mnist"
    model = create_model(name)
    (x,) = example_inputs(name)
    split = gradient_split(model, (x,), torch.ones(x.shape[0], 1), F.mse_loss)
    assert split["modules"] == [f"blocks.{i}" for i in range(4)]
    assert all(0 < g < float("inf") for g in split["shortcut_grad"] + split["branch_grad"])
    stats = signal_propagation(model, (x,))
    assert len(stats["var"]) > 0 and all(v == v for v in stats["var"])
