"""Concatenating skips: dense connectivity, crop-and-concat long skips, layer concatenation.

* :class:`DenseConcat` -- DenseNet (Huang et al. 2017): ``y = [x, F(x)]`` along the channels,
  so every later layer sees every earlier feature map.
* :class:`CropConcat` / :class:`CropAdd` -- U-Net long skips (Ronneberger et al. 2015): the
  encoder map is centre-cropped to the decoder map and concatenated (or added). With valid
  (unpadded) convolutions the encoder map is larger, by an even margin when the sizes align.
* :class:`LayerConcat` -- jumping knowledge (Xu et al. 2018): the representations of all layers
  are concatenated at the output, a skip from every layer to the head.

All are :class:`~skiplab.nn.SkipModule` parts; ``skip=False`` gives the plain twin, which keeps
the branch (or the decoder path, or the last layer) alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from skiplab.nn._merge import SkipShapeError, block_name
from skiplab.nn.residual import SkipModule


def center_crop(x: torch.Tensor, size: Sequence[int], *, who: str = "center_crop") -> torch.Tensor:
    """Crop the trailing spatial axes of ``x`` to ``size`` around the centre.

    Ronneberger et al. 2015, Fig. 1: "cropping is necessary due to the loss of border pixels in
    every convolution". The margin on each axis must be even and non-negative, else the crop
    would shift the map by half a pixel against the decoder (a silent misalignment).

    Args:
        x: ``(B, C, *S)``.
        size: target spatial size, one entry per spatial axis.
        who: the block named in the error message.

    Returns:
        ``(B, C, *size)``, a view of ``x``.

    Raises:
        SkipShapeError: the target is larger than ``x`` or a margin is odd.
    """
    spatial = tuple(x.shape[2:])
    if len(spatial) != len(size):
        raise SkipShapeError(
            f"{who}: cannot crop a map with spatial shape {spatial} to {tuple(size)} "
            f"(different number of spatial axes)"
        )
    index: list[slice] = [slice(None), slice(None)]
    for axis, (have, want) in enumerate(zip(spatial, size)):
        margin = have - want
        if margin < 0 or margin % 2:
            raise SkipShapeError(
                f"{who}: cannot centre-crop the skip of spatial shape {spatial} to the decoder's "
                f"{tuple(size)}: axis {axis} margin {margin} is "
                f"{'negative' if margin < 0 else 'odd'}; the skip must be larger by an even "
                "number of pixels (choose an input size the network aligns, e.g. with "
                "skiplab.models.unet.nearest_valid_size)"
            )
        index.append(slice(margin // 2, have - margin // 2))
    return x[tuple(index)]


class DenseConcat(SkipModule):
    """Dense connectivity (Huang et al. 2017): ``y = concat(x, F(x))`` on ``dim``.

    Args:
        branch: the layer F; its output must match ``x`` on every axis except ``dim``.
        dim: the concatenation axis, 1 for ``(B, C, ...)`` and -1 for ``(N, C)`` (default 1).
        skip: False builds the plain twin ``y = F(x)``.

    Shapes:
        input ``(B, C_in, *S)``, output ``(B, C_in + C_F, *S)`` (``(B, C_F, *S)`` if plain).
    """

    def __init__(self, branch: nn.Module, dim: int = 1, *, skip: bool = True) -> None:
        super().__init__()
        self.branch = branch
        self.dim = dim
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if not self.skip:
            return out
        _check_concat(self, x, out, self.dim)
        return torch.cat([x, out], dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, skip={self.skip}"


class _CropMerge(SkipModule):
    """A long skip from an encoder map to a decoder map; subclasses define :meth:`merge`."""

    def __init__(self, *, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip

    def merge(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Merge the encoder map ``skip`` ``(B, C_s, *S_s)`` into the decoder map ``x``."""
        if not self.skip:
            return x
        if skip.shape[0] != x.shape[0] or skip.dim() != x.dim():
            raise SkipShapeError(
                f"{type(self).__name__} '{block_name(self)}': encoder map {tuple(skip.shape)} and "
                f"decoder map {tuple(x.shape)} differ in batch size or number of axes"
            )
        cropped = center_crop(
            skip, x.shape[2:], who=f"{type(self).__name__} '{block_name(self)}'"
        )  # (B, C_s, *S)
        return self.merge(cropped, x)

    def extra_repr(self) -> str:
        return f"skip={self.skip}"


class CropConcat(_CropMerge):
    """U-Net long skip (Ronneberger et al. 2015): ``y = concat(crop(e), d)`` on the channels.

    Args:
        skip: False builds the plain twin ``y = d`` (no long skip).

    Shapes:
        ``e``: ``(B, C_e, *S_e)``, ``d``: ``(B, C_d, *S)`` with ``S_e - S`` even and >= 0;
        returns ``(B, C_e + C_d, *S)``.
    """

    def merge(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([skip, x], dim=1)  # (B, C_e + C_d, *S)


class CropAdd(_CropMerge):
    """Additive long skip: ``y = crop(e) + d`` (as in the FCN/LinkNet family of decoders).

    Args:
        skip: False builds the plain twin ``y = d``.

    Shapes:
        ``e``: ``(B, C, *S_e)``, ``d``: ``(B, C, *S)``; returns ``(B, C, *S)``.
    """

    def merge(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if skip.shape != x.shape:
            raise SkipShapeError(
                f"CropAdd '{block_name(self)}': cropped encoder map {tuple(skip.shape)} and "
                f"decoder map {tuple(x.shape)} differ in channels; an additive skip needs equal "
                "channel counts (use CropConcat or a 1x1 projection)"
            )
        return skip + x


class LayerConcat(SkipModule):
    """Jumping knowledge by concatenation (Xu et al. 2018): ``y = [h_1, ..., h_L]``.

    Args:
        dim: the feature axis (default -1, node features ``(N, C)``).
        skip: False builds the plain twin ``y = h_L`` (only the last layer reaches the head).

    Shapes:
        a sequence of ``(N, C_l)`` maps; returns ``(N, sum C_l)`` (``(N, C_L)`` if plain).
    """

    def __init__(self, dim: int = -1, *, skip: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.skip = skip

    def forward(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        if not layers:
            raise ValueError(f"LayerConcat '{block_name(self)}' got no layer outputs")
        if not self.skip:
            return layers[-1]
        for h in layers[1:]:
            _check_concat(self, layers[0], h, self.dim)
        return torch.cat(list(layers), dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, skip={self.skip}"


def _check_concat(module: nn.Module, a: torch.Tensor, b: torch.Tensor, dim: int) -> None:
    """Raise unless ``a`` and ``b`` agree on every axis but ``dim`` (no broadcasting)."""
    axis = dim % a.dim()
    same = a.dim() == b.dim() and all(
        p == q for i, (p, q) in enumerate(zip(a.shape, b.shape)) if i != axis
    )
    if not same:
        raise SkipShapeError(
            f"{type(module).__name__} '{block_name(module)}': cannot concatenate shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)} on axis {dim}: every other axis must match"
        )
