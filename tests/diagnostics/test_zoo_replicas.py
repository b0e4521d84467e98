"""Skip discovery on hand-written replicas of classic blocks, by both methods.

These trace with ``torch.fx``, so :func:`find_skips` reports the fx merges; the recorded forward
pass alone (``use_fx=False``) must find the same merges, with the same owners.

* ResNet basic blocks (He et al. 2016): one add per block; the downsampling block's shortcut is a
  1x1 conv + BN (one weight layer).
* DenseNet (Huang et al. 2017): one concat per dense layer, ``cat([x, H(x)])``.
* ConvNeXt (Liu et al. 2022): one add per block, the branch scaled by LayerScale's ``gamma``.
* ViT encoder blocks (Dosovitskiy et al. 2021) on ``nn.MultiheadAttention``: two adds per block;
  the class-token concat and the position-embedding add are not skips.
* ReZero (Bachlechner et al. 2021) and a constant ``x + 0.5 * f(x)``: scaled branches.
* Highway (Srivastava et al. 2015): one gated mix.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.diagnostics import find_skips


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2))
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.norm(x)))], dim=1)  # (B, cin + growth, H, W)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(*(DenseLayer(8 + i * growth, growth) for i in range(layers)))
        self.fc = nn.Linear(8 + layers * growth, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(self.stem(x)).mean(dim=(2, 3)))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self.pwconv2(F.gelu(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).permute(0, 3, 1, 2)  # (B, C, H, W)
        return shortcut + x


class ConvNeXt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.stages = nn.Sequential(ConvNeXtBlock(8), ConvNeXtBlock(8))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, dim: int = 16, depth: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*(ViTBlock(dim) for _ in range(depth)))
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, dim)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.blocks(x)[:, 0])


class ReZeroBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * torch.relu(self.fc(x))


class HalfBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.fc(x)


class Highway(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.h = nn.Linear(dim, dim)
        self.t = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.t(x))
        return t * torch.relu(self.h(x)) + (1 - t) * x


def _image():
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _vector():
    return torch.randn(4, 6, generator=torch.Generator().manual_seed(0))


MODELS = {
    "resnet": (ResNet, _image),
    "densenet": (DenseNet, _image),
    "convnext": (ConvNeXt, _image),
    "vit": (ViT, _image),
    "rezero": (lambda: nn.Sequential(ReZeroBlock(6), ReZeroBlock(6), HalfBlock(6)), _vector),
    "highway": (lambda: nn.Sequential(nn.Linear(6, 6), Highway(6)), _vector),
}
# per model: (kind, owner, scale) of every merge, in forward order
EXPECTED = {
    "resnet": [("residual", b, "") for b in ("layer1.0", "layer1.1", "layer2.0")],
    "densenet": [("concat", f"block.{i}", "") for i in range(3)],
    "convnext": [("residual", f"stages.{i}", "branch") for i in range(2)],
    "vit": [("residual", f"blocks.{i}", "") for i in range(2) for _ in range(2)],
    "rezero": [("residual", f"{i}", "branch") for i in range(3)],
    "highway": [("gated", "1", "")],
}


@pytest.fixture(scope="module")
def reports():
    out = {}
    for name, (build, data) in MODELS.items():
        torch.manual_seed(0)
        model, x = build(), data()
        out[name] = (find_skips(model, (x,)), find_skips(model, (x,), use_fx=False))
    return out


def _summary(report):
    return [(m.kind, m.module, m.scale) for m in report.merges]


@pytest.mark.parametrize("name", list(MODELS))
def test_recorded_forward_finds_every_merge_with_its_owner(reports, name):
    _, forward = reports[name]
    assert forward.method == "forward" and forward.traced is None
    assert _summary(forward) == EXPECTED[name]
    assert {m.method for m in forward.merges} == {"forward"}


@pytest.mark.parametrize("name", list(MODELS))
def test_fx_and_the_recorded_forward_agree(reports, name):
    fx, forward = reports[name]
    assert fx.method == "torch.fx" and fx.note == ""
    assert {m.method for m in fx.merges} == {"fx"}
    assert _summary(fx) == _summary(forward)
    got = [(m.shortcut_layers, m.branch_layers, m.branch_module) for m in fx.merges]
    assert got == [(m.shortcut_layers, m.branch_layers, m.branch_module) for m in forward.merges]
    for a, b in zip(fx.merges, forward.merges):
        assert a.shortcut_norm == pytest.approx(b.shortcut_norm, rel=1e-5)
        assert a.branch_norm == pytest.approx(b.branch_norm, rel=1e-5)


def test_resnet_projection_shortcut_is_one_weight_layer(reports):
    _, forward = reports["resnet"]
    assert [m.shortcut_layers for m in forward.merges] == [0, 0, 1]
    assert [m.shortcut_module for m in forward.merges] == ["", "", "layer2.0.shortcut"]
    assert all(m.branch_layers == 2 for m in forward.merges)


class DataDependentDepth(nn.Module):
    """Applies its block as many times as the input asks: no static graph exists."""

    def __init__(self) -> None:
        super().__init__()
        self.block = ReZeroBlock(6)

    def forward(self, x: torch.Tensor, *, repeats: torch.Tensor) -> torch.Tensor:
        for _ in range(int(repeats)):
            x = self.block(x)
        return x


def test_data_dependent_loop_and_keyword_inputs():
    model, x = DataDependentDepth(), _vector()
    for repeats in (2, 3):
        report = find_skips(model, (x,), kwargs={"repeats": torch.tensor(repeats)}, use_fx=False)
        assert [(m.kind, m.module) for m in report.merges] == [("residual", "block")] * repeats
