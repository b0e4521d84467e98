"""Shortcut paths for residual blocks (He et al. 2015, "Deep Residual Learning", section 3.3).

* identity: ``nn.Identity()``, used when the branch keeps the shape.
* option A (:class:`PadShortcut`): subsample by the stride and zero-pad the new channels; no
  parameters, so the shortcut stays an identity on the channels it keeps.
* option B (:class:`ProjectionShortcut`): a strided 1x1 convolution and a normalisation layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NormFactory = Callable[[int], nn.Module]


class PadShortcut(nn.Module):
    """Option A: ``x[..., ::s, ::s]`` with ``out - in`` zero channels split around the input.

    Works for any number of spatial dimensions (NCL, NCHW, NCDHW).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output, ``>= in_channels``.
        stride: subsampling step along every spatial axis (default 1).

    Shapes:
        input ``(B, C_in, *S)``, output ``(B, C_out, *ceil(S / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"PadShortcut can only add channels (in_channels={in_channels}, "
                f"out_channels={out_channels}); use ProjectionShortcut (option B) to reduce them"
            )
        if stride < 1:
            raise ValueError(f"PadShortcut stride must be >= 1, got {stride}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"PadShortcut expects (B, {self.in_channels}, *spatial), got {tuple(x.shape)}"
            )
        if self.stride > 1:
            spatial = (slice(None, None, self.stride),) * (x.dim() - 2)
            x = x[(slice(None), slice(None), *spatial)]
        extra = self.out_channels - self.in_channels
        if extra == 0:
            return x
        # F.pad counts from the last axis: two zeros per spatial axis, then the channel axis.
        before = extra // 2
        return F.pad(x, (0, 0) * (x.dim() - 2) + (before, extra - before))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride} (option A)"


class ProjectionShortcut(nn.Sequential):
    """Option B: strided 1x1 convolution followed by a normalisation layer.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: convolution stride (default 1).
        dim: 1 for sequences (NCL), 2 for images (NCHW); default 2.
        norm_layer: called with the channel count; default ``BatchNorm{dim}d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dim: int = 2,
        norm_layer: NormFactory | None = None,
    ) -> None:
        conv_cls = _conv_class(dim)
        norm = norm_layer or (nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d)
        super().__init__(
            conv_cls(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            norm(out_channels),
        )


def _conv_class(dim: int) -> type[nn.Module]:
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be one of 1, 2, 3; got {dim!r}")
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]


SHORTCUT_OPTIONS = ("A", "B")


def make_shortcut(
    option: str,
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    dim: int = 2,
    norm_layer: NormFactory | None = None,
) -> nn.Module:
    """Identity when the shape is kept, else option ``"A"`` (pad) or ``"B"`` (projection)."""
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"shortcut option must be one of {SHORTCUT_OPTIONS}, got {option!r}")
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    if option == "A":
        return PadShortcut(in_channels, out_channels, stride)
    return ProjectionShortcut(in_channels, out_channels, stride, dim, norm_layer)
