"""CIFAR-style residual networks and their plain twins, in 1-D and 2-D.

He et al. 2015, "Deep Residual Learning for Image Recognition", section 4.2: a 3x3 stem, three
stages of ``n`` basic blocks with 16/32/64 channels (``depth = 6n + 2``), global average pooling
and a linear classifier. The post-activation block is ``relu(x + BN(W2 relu(BN(W1 x))))``.

He et al. 2016, "Identity Mappings in Deep Residual Networks": the pre-activation block
``x + W2 relu(BN(W1 relu(BN(x))))`` keeps the identity path free of nonlinearities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from skiplab.models._registry import register_family_example, register_model
from skiplab.nn import Residual, make_shortcut, reset_residual_inits
from skiplab.nn.residual import BranchInit

NormFactory = Callable[[int], nn.Module]
ScaleFactory = Callable[[int], nn.Module]


@dataclass
class ResNetConfig:
    """Architecture of a CIFAR-style (plain or residual) network."""

    depth: int = 20  # 6n + 2 weighted layers; 20/32/44/56/110 are the paper's
    dim: int = 2  # 2: images (NCHW); 1: sequences (NCL), e.g. MNIST-1D
    in_channels: int = 3  # CIFAR-10 is RGB
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)  # the paper's stages; each later one halves the size
    skip: bool = True  # False: the plain twin of the same depth
    preact: bool = False  # True: He et al. 2016 pre-activation blocks
    shortcut: str = "A"  # "A" zero-pad (parameter-free, the paper's CIFAR choice) or "B" 1x1 conv
    norm_layer: NormFactory | None = None  # default BatchNorm{dim}d
    act_layer: Callable[[], nn.Module] = nn.ReLU
    branch_init: BranchInit | None = None  # e.g. ZeroGamma(): every block an identity at init
    scale: ScaleFactory | None = None  # channels -> module on the branch, e.g. lambda c: ReZero()
    drop_path: float = 0.0  # stochastic depth, linearly increasing over blocks up to this value
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the config

    def __post_init__(self) -> None:
        if (self.depth - 2) % 6 != 0 or self.depth < 8:
            raise ValueError(
                f"ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {self.depth}"
            )
        if self.dim not in (1, 2):
            raise ValueError(f"dim must be 1 (sequences) or 2 (images), got {self.dim}")
        if self.shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {self.shortcut!r}")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6


def _conv(dim: int, cin: int, cout: int, stride: int = 1) -> nn.Module:
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    return conv(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _basic_block(cfg: ResNetConfig, cin: int, cout: int, stride: int, drop: float) -> Residual:
    norm = cfg.norm_layer or (nn.BatchNorm1d if cfg.dim == 1 else nn.BatchNorm2d)
    act = cfg.act_layer
    if cfg.preact:
        branch = nn.Sequential(
            norm(cin), act(), _conv(cfg.dim, cin, cout, stride),
            norm(cout), act(), _conv(cfg.dim, cout, cout),
        )  # fmt: skip
        post = None
    else:
        branch = nn.Sequential(
            _conv(cfg.dim, cin, cout, stride), norm(cout), act(),
            _conv(cfg.dim, cout, cout), norm(cout),
        )  # fmt: skip
        post = act()
    return Residual(
        branch,
        make_shortcut(cfg.shortcut, cin, cout, stride, cfg.dim, cfg.norm_layer),
        scale=cfg.scale(cout) if cfg.scale else None,
        branch_init=cfg.branch_init,
        post=post,
        drop_path=drop,
        skip=cfg.skip,
    )


class ResNet(nn.Module):
    """A CIFAR-style ResNet (or its plain twin when ``cfg.skip`` is False).

    Shapes:
        input ``(B, in_channels, H, W)`` (dim 2) or ``(B, in_channels, L)`` (dim 1);
        returns logits ``(B, num_classes)``.
    """

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        norm = cfg.norm_layer or (nn.BatchNorm1d if cfg.dim == 1 else nn.BatchNorm2d)
        width = cfg.widths[0]
        stem: list[nn.Module] = [_conv(cfg.dim, cfg.in_channels, width)]
        if not cfg.preact:
            stem += [norm(width), cfg.act_layer()]
        self.stem = nn.Sequential(*stem)
        n, total = cfg.blocks_per_stage, cfg.blocks_per_stage * len(cfg.widths)
        blocks: list[nn.Module] = []
        for s, cout in enumerate(cfg.widths):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                drop = cfg.drop_path * len(blocks) / max(total - 1, 1)
                blocks.append(_basic_block(cfg, width, cout, stride, drop))
                width = cout
        self.blocks = nn.Sequential(*blocks)
        # Pre-activation nets end with the BN-ReLU their last block left out (He et al. 2016).
        self.final = nn.Sequential(norm(width), cfg.act_layer()) if cfg.preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool1d(1) if cfg.dim == 1 else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                m.reset_parameters()
        reset_residual_inits(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.cfg.dim + 2 or x.shape[1] != self.cfg.in_channels:
            layout = "(B, C, L)" if self.cfg.dim == 1 else "(B, C, H, W)"
            raise ValueError(
                f"ResNet expects input {layout} with C={self.cfg.in_channels}, got {tuple(x.shape)}"
            )
        return self.final(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)  # (B, C)
        return self.head(x)


def _resnet(depth: int, **kwargs: Any) -> ResNet:
    return ResNet(replace(ResNetConfig(depth=depth), **kwargs))


register_family_example("resnet", lambda: (torch.randn(2, 3, 32, 32),))


@register_model
def resnet20(**kwargs: Any) -> ResNet:
    """ResNet-20 (He et al. 2015): 0.27M parameters with option A on CIFAR-10."""
    return _resnet(20, **kwargs)


@register_model
def resnet32(**kwargs: Any) -> ResNet:
    """ResNet-32 (He et al. 2015): 0.46M parameters."""
    return _resnet(32, **kwargs)


@register_model
def resnet44(**kwargs: Any) -> ResNet:
    """ResNet-44 (He et al. 2015): 0.66M parameters."""
    return _resnet(44, **kwargs)


@register_model
def resnet56(**kwargs: Any) -> ResNet:
    """ResNet-56 (He et al. 2015): 0.85M parameters."""
    return _resnet(56, **kwargs)


@register_model
def resnet110(**kwargs: Any) -> ResNet:
    """ResNet-110 (He et al. 2015): 1.7M parameters."""
    return _resnet(110, **kwargs)


@register_model
def plain20(**kwargs: Any) -> ResNet:
    """Plain-20 (He et al. 2015): ResNet-20 without its shortcuts."""
    return _resnet(20, **{"skip": False, **kwargs})


@register_model
def plain32(**kwargs: Any) -> ResNet:
    """Plain-32: ResNet-32 without its shortcuts."""
    return _resnet(32, **{"skip": False, **kwargs})


@register_model
def plain44(**kwargs: Any) -> ResNet:
    """Plain-44: ResNet-44 without its shortcuts."""
    return _resnet(44, **{"skip": False, **kwargs})


@register_model
def plain56(**kwargs: Any) -> ResNet:
    """Plain-56 (He et al. 2015): ResNet-56 without its shortcuts."""
    return _resnet(56, **{"skip": False, **kwargs})


@register_model
def plain110(**kwargs: Any) -> ResNet:
    """Plain-110: ResNet-110 without its shortcuts."""
    return _resnet(110, **{"skip": False, **kwargs})


@register_model
def preresnet20(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-20 (He et al. 2016)."""
    return _resnet(20, **{"preact": True, **kwargs})


@register_model
def preresnet56(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-56 (He et al. 2016)."""
    return _resnet(56, **{"preact": True, **kwargs})


@register_model
def preresnet110(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-110 (He et al. 2016): 1.7M parameters."""
    return _resnet(110, **{"preact": True, **kwargs})


@register_model
def resnet_cifar(**kwargs: Any) -> ResNet:
    """Any depth ``6n + 2``: ``create_model("resnet_cifar", depth=1202)``."""
    return ResNet(ResNetConfig(**kwargs))
