"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation") with its long skips as parts, and its plain twin without them.

The contracting path applies two 3x3 convolutions and a 2x2 max-pool per level; the expanding
path up-samples with a 2x2 transposed convolution, merges the encoder map of the same level
(the long skip) and applies two 3x3 convolutions:

    d_l = conv(conv(merge(e_l, up(d_{l+1}))))

With **valid** (unpadded) convolutions every conv loses 2 pixels, so ``e_l`` is larger than
``up(d_{l+1})`` and must be centre-cropped (:class:`~skiplab.nn.concat.CropConcat`); the paper's
572x572 input gives a 388x388 output. Only some input sizes align (every pooled map even);
:func:`nearest_valid_size` finds one. With **same** padding the input side must be divisible by
``2**levels``. ``merge="add"`` uses an additive long skip instead of concatenation, and
``skip=False`` removes the long skips: the decoder then sees only the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from skiplab.models._registry import register_model
from skiplab.nn.concat import CropAdd, CropConcat

NormFactory = Callable[[int], nn.Module]

PADDINGS = ("valid", "same")
MERGES = ("concat", "add")


@dataclass
class UNetConfig:
    """Architecture of a U-Net (or its plain twin when ``skip`` is False)."""

    levels: int = 4  # max-pools on the contracting path; the paper's network has 4
    width: int = 64  # channels of the first level, doubled at each level down (the paper's 64)
    in_channels: int = 1  # the paper's EM stacks are grey-scale
    num_classes: int = 2  # cell vs membrane/background in the paper
    padding: str = "valid"  # "valid": the paper's unpadded convs + crop; "same": padding 1
    merge: str = "concat"  # "concat": the paper's crop-and-concat; "add": additive long skips
    skip: bool = True  # False: the plain twin, a decoder without long skips
    norm_layer: NormFactory | None = nn.BatchNorm2d  # the paper had none; BN trains in far fewer
    # steps, which CPU-scale experiments need; pass None for the original
    act_layer: Callable[[], nn.Module] = nn.ReLU

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"UNet levels must be >= 1, got {self.levels}")
        if self.padding not in PADDINGS:
            raise ValueError(f"UNet padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.merge not in MERGES:
            raise ValueError(f"UNet merge must be one of {MERGES}, got {self.merge!r}")


def output_size(size: int, levels: int = 4, padding: str = "valid") -> int:
    """Side length of the U-Net output for an input of side ``size``.

    Raises:
        ValueError: ``size`` does not align (a pooled map of odd or non-positive side), with the
            nearest sizes that do.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    out = _trace(size, levels, padding)
    if out is None:
        below, above = _neighbours(size, levels, padding)
        rule = (
            "every map before a 2x2 pool must have an even side and every map a positive one"
            if padding == "valid"
            else f"the side must be divisible by 2**levels = {2**levels}"
        )
        works = " and ".join(str(s) for s in (below, above) if s is not None)
        raise ValueError(
            f"input side {size} does not align in a {padding} U-Net with {levels} levels "
            f"({rule}); nearest sizes that work: {works} "
            f"(nearest_valid_size({size}, {levels}, {padding!r}))"
        )
    return out


def nearest_valid_size(size: int, levels: int = 4, padding: str = "valid") -> int:
    """The input side closest to ``size`` that the U-Net aligns (the larger one on a tie)."""
    if _trace(size, levels, padding) is not None:
        return size
    below, above = _neighbours(size, levels, padding)
    if below is None or size - below > above - size:
        return above
    return below


def _trace(size: int, levels: int, padding: str) -> int | None:
    """Follow one spatial side through the network; None where it fails to align."""
    loss = 4 if padding == "valid" else 0  # two 3x3 convs without padding lose 2 pixels each
    s = size
    for _ in range(levels):
        s -= loss
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= loss
    if s <= 0:
        return None
    for _ in range(levels):
        s = 2 * s - loss
        if s <= 0:
            return None
    return s


def _neighbours(size: int, levels: int, padding: str) -> tuple[int | None, int]:
    below = next((s for s in range(size - 1, 0, -1) if _trace(s, levels, padding)), None)
    above = next(s for s in range(size + 1, size + 2 ** (levels + 3)) if _trace(s, levels, padding))
    return below, above


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by the norm and the activation (one U-Net level)."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig) -> None:
        pad = 0 if cfg.padding == "valid" else 1
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(nn.Conv2d(c, cout, 3, padding=pad, bias=cfg.norm_layer is None))
            if cfg.norm_layer is not None:
                layers.append(cfg.norm_layer(cout))
            layers.append(cfg.act_layer())
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net with crop-and-concat (or additive) long skips; ``cfg.skip=False`` drops them.

    Shapes:
        input ``(B, in_channels, H, W)`` with ``H`` and ``W`` aligned (see :func:`output_size`);
        returns logits ``(B, num_classes, H_out, W_out)``, ``H_out = output_size(H)`` (equal to
        ``H`` with same padding).
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [cfg.width * 2**i for i in range(cfg.levels + 1)]
        self.down = nn.ModuleList()
        cin = cfg.in_channels
        for w in widths[:-1]:
            self.down.append(DoubleConv(cin, w, cfg))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], cfg)
        self.up = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.dec = nn.ModuleList()
        merge_cls = CropConcat if cfg.merge == "concat" else CropAdd
        for w_in, w in zip(widths[:0:-1], widths[-2::-1]):
            self.up.append(nn.ConvTranspose2d(w_in, w, kernel_size=2, stride=2))
            self.skips.append(merge_cls(skip=cfg.skip))
            concat = cfg.skip and cfg.merge == "concat"
            self.dec.append(DoubleConv(2 * w if concat else w, w, cfg))
        self.head = nn.Conv2d(widths[0], cfg.num_classes, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # He et al. 2015 init, as Ronneberger et al. recommend for ReLU U-Nets (section 3).
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def output_size(self, size: int) -> int:
        """Output side for an input of side ``size`` (raises for sizes that do not align)."""
        return output_size(size, self.cfg.levels, self.cfg.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(
                f"UNet expects (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}"
            )
        for side in x.shape[2:]:
            self.output_size(int(side))  # a clear error before any conv misaligns
        encoded = []
        for block in self.down:
            x = block(x)  # (B, C_l, H_l, W_l)
            encoded.append(x)
            x = self.pool(x)  # (B, C_l, H_l / 2, W_l / 2)
        x = self.bottleneck(x)  # (B, C_L, H_L, W_L)
        for up, skip, block, e in zip(self.up, self.skips, self.dec, reversed(encoded)):
            x = up(x)  # (B, C_l, 2 H, 2 W)
            x = block(skip(e, x))  # the long skip: crop(e_l) merged with the decoder map
        return self.head(x)  # (B, num_classes, H_out, W_out)


def _unet(**kwargs: Any) -> UNet:
    return UNet(replace(UNetConfig(), **kwargs))


# 188 is the smallest side a 4-level valid U-Net aligns (output 4x4); 32 for same padding.
def _example_valid() -> tuple[torch.Tensor]:
    return (torch.randn(1, 1, 188, 188),)


def _example_same() -> tuple[torch.Tensor]:
    return (torch.randn(1, 1, 32, 32),)


@register_model(example=_example_valid)
def unet(**kwargs: Any) -> UNet:
    """U-Net (Ronneberger et al. 2015): 4 levels, 64-1024 channels, valid convs, crop-and-concat;
    572x572 in, 388x388 out."""
    return _unet(**kwargs)


@register_model(example=_example_same)
def unet_same(**kwargs: Any) -> UNet:
    """U-Net with same-padded convolutions: output side equals input side (a multiple of 16)."""
    return _unet(**{"padding": "same", **kwargs})


@register_model(example=_example_valid)
def unet_additive(**kwargs: Any) -> UNet:
    """U-Net whose long skips add the cropped encoder map instead of concatenating it."""
    return _unet(**{"merge": "add", **kwargs})


@register_model(example=lambda: (torch.randn(2, 1, 44, 44),))
def unet_small(**kwargs: Any) -> UNet:
    """A 2-level, 16-channel valid U-Net for CPU experiments (44x44 in, 4x4 out; 92 -> 52)."""
    return _unet(**{"levels": 2, "width": 16, **kwargs})
