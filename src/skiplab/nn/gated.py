"""Gated skips: a learned, input-dependent mix of the carried input and a candidate.

Highway networks (Srivastava, Greff & Schmidhuber 2015) and the GRU (Cho et al. 2014) share one
merge,

    y = (1 - z) * carry + z * candidate,      z in (0, 1) elementwise,

a residual connection whose branch weight is computed from the data: written as
``y = carry + z * (candidate - carry)`` it is ``x + F(x)`` with a gated ``F``. With ``z -> 0``
the merge is an identity highway (``dy/dcarry = I``); with ``z -> 1`` it forgets the carry.

* :class:`GatedSkip` -- the merge alone, as a :class:`~skiplab.nn.SkipModule`; its plain twin
  drops the carry, ``y = z * candidate``.
* :class:`Highway` -- a highway layer built from a branch ``H``, a gate ``T`` and a
  :class:`GatedSkip`: ``y = (1 - T(x)) * x + T(x) * H(x)``.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplab.nn._merge import check_same_shape
from skiplab.nn.residual import SkipModule


class GatedSkip(SkipModule):
    """The gated merge ``y = (1 - z) * carry + z * candidate``.

    Args:
        skip: False builds the plain twin ``y = z * candidate``: the same gate and candidate,
            no carried term, so nothing reaches ``y`` from ``carry`` except through the
            candidate.

    Shapes:
        ``carry``, ``candidate`` and ``z`` must have identical shapes (no broadcasting), e.g.
        ``(B, H)`` for one recurrent step; the output has the same shape.
    """

    def __init__(self, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip

    def forward(
        self, carry: torch.Tensor, candidate: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        if candidate.shape != z.shape:
            check_same_shape(self, "gate * candidate", z, candidate, "Give the gate z one "
                             "value per element of the candidate.")  # fmt: skip
        if not self.skip:
            return z * candidate
        if carry.shape != candidate.shape:
            check_same_shape(self, "carry + candidate", carry, candidate, "The carried state "
                             "and the candidate must have the same shape.")  # fmt: skip
        return carry + z * (candidate - carry)  # = (1 - z) * carry + z * candidate

    def extra_repr(self) -> str:
        return f"skip={self.skip}"


class Highway(nn.Module):
    """Highway layer (Srivastava et al. 2015): ``y = (1 - T(x)) * x + T(x) * H(x)``.

    Args:
        branch: the transform ``H``; must keep the shape of ``x``.
        gate: the transform gate's pre-activation ``T`` (a module; ``sigmoid`` is applied
            here), e.g. ``nn.Linear(d, d)``.
        gate_bias: initial bias of ``gate`` if it has one (default -2: Srivastava et al.
            recommend a negative bias so that the layer starts close to carrying ``x``).
        skip: False builds the plain twin ``y = T(x) * H(x)``.

    Shapes:
        input ``(..., D)``; ``branch(x)`` and ``gate(x)`` of the same shape; output the same.
    """

    def __init__(
        self, branch: nn.Module, gate: nn.Module, *, gate_bias: float = -2.0, skip: bool = True
    ) -> None:
        super().__init__()
        self.branch = branch
        self.gate = gate
        self.gate_bias = float(gate_bias)
        self.merge = GatedSkip(skip=skip)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bias = getattr(self.gate, "bias", None)
        if isinstance(bias, torch.Tensor):
            with torch.no_grad():
                bias.fill_(self.gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.gate(x))
        return self.merge(x, self.branch(x), z)

    def extra_repr(self) -> str:
        return f"gate_bias={self.gate_bias:g}"
