"""Scales on the residual branch and residual-aware initialisation, as parts.

A scale multiplies the branch output before the merge, ``y = shortcut(x) + s * F(x)``:

* :class:`FixedScale` -- a constant ``s`` (e.g. ``1/sqrt(2L)`` or Fixup-style down-weighting).
* :class:`ReZero` -- one learnable scalar initialised to 0 (Bachlechner et al. 2020).
* :class:`SkipInit` -- one learnable scalar, initialised to a small value or 0, meant to replace
  normalisation (De & Smith 2020).
* :class:`LayerScale` -- a learnable per-channel vector initialised small (Touvron et al. 2021).

An init part changes the branch's own parameters when the block resets, without naming them:

* :class:`ZeroGamma` -- the weight of the branch's *last* normalisation layer is set to 0
  (Goyal et al. 2017), so the block is an exact identity at initialisation.
* :class:`ScaleLastLayer` -- the last conv/linear weight is multiplied by a factor, e.g.
  ``1/sqrt(2L)`` as in GPT-2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

NORM_TYPES: tuple[type[nn.Module], ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm)
WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FixedScale(nn.Module):
    """``s * x`` with a constant ``s``.

    Args:
        value: the scale.
    """

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value

    def extra_repr(self) -> str:
        return f"value={self.value:g}"


class _ScalarGain(nn.Module):
    def __init__(self, init: float) -> None:
        super().__init__()
        self.init = float(init)
        self.alpha = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.alpha

    def extra_repr(self) -> str:
        return f"init={self.init:g}"


class ReZero(_ScalarGain):
    """ReZero (Bachlechner et al. 2020): ``x + alpha * F(x)`` with a learnable ``alpha = 0``.

    Args:
        init: initial value of ``alpha`` (default 0: the block starts as the identity).
    """

    def __init__(self, init: float = 0.0) -> None:
        super().__init__(init)


class SkipInit(_ScalarGain):
    """SkipInit (De & Smith 2020): a learnable scalar on the branch, at or near 0 at init.

    Args:
        init: initial value (default 0).
    """

    def __init__(self, init: float = 0.0) -> None:
        super().__init__(init)


class LayerScale(nn.Module):
    """LayerScale (Touvron et al. 2021, CaiT): a learnable per-channel scale ``diag(g) F(x)``.

    Args:
        channels: number of channels.
        init: initial value of every entry of ``g`` (default 1e-5).
        channel_dim: the channel axis: 1 for NC..., -1 for (B, T, C) (default 1).
    """

    def __init__(self, channels: int, init: float = 1e-5, channel_dim: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.init = float(init)
        self.channel_dim = channel_dim
        self.gamma = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.channel_dim % x.dim()
        if x.shape[axis] != self.channels:
            raise ValueError(
                f"LayerScale({self.channels}) got {x.shape[axis]} channels on axis "
                f"{self.channel_dim} of input {tuple(x.shape)}"
            )
        shape = [1] * x.dim()
        shape[axis] = self.channels
        return x * self.gamma.view(shape)

    def extra_repr(self) -> str:
        return f"{self.channels}, init={self.init:g}, channel_dim={self.channel_dim}"


def last_module_of(branch: nn.Module, types: tuple[type[nn.Module], ...]) -> nn.Module | None:
    """The last submodule of ``branch`` (in registration order) that is one of ``types``."""
    found = None
    for module in branch.modules():
        if isinstance(module, types):
            found = module
    return found


class ZeroGamma:
    """Zero-gamma init (Goyal et al. 2017): zero the last normalisation weight of the branch.

    With the last norm's scale at 0 the branch outputs its bias (0 at init), so
    ``shortcut(x) + F(x) = x`` exactly for an identity shortcut.
    """

    def __call__(self, branch: nn.Module) -> None:
        norm = last_module_of(branch, NORM_TYPES)
        weight = getattr(norm, "weight", None)
        if norm is None or weight is None:
            raise ValueError(
                "ZeroGamma needs a normalisation layer with an affine weight in the branch "
                f"{type(branch).__name__}; use ReZero or SkipInit for normalisation-free branches"
            )
        with torch.no_grad():
            weight.zero_()

    def __repr__(self) -> str:
        return "ZeroGamma()"


class ScaleLastLayer:
    """Multiply the branch's last conv/linear weight by ``factor`` (e.g. ``1/sqrt(2L)``).

    Args:
        factor: the multiplier.
    """

    def __init__(self, factor: float) -> None:
        self.factor = float(factor)

    def __call__(self, branch: nn.Module) -> None:
        layer = last_module_of(branch, WEIGHT_TYPES)
        if layer is None:
            raise ValueError(
                f"ScaleLastLayer found no conv/linear layer in {type(branch).__name__}"
            )
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)
        with torch.no_grad():
            weight.mul_(self.factor)

    def __repr__(self) -> str:
        return f"ScaleLastLayer({self.factor:g})"
