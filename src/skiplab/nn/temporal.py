"""Temporal skips: connections from step ``t - k`` to step ``t`` of a recurrence.

A recurrent network unrolled over T steps is a T-layer deep network whose every layer shares
its weights, so a gradient from step T back to step 0 crosses T Jacobians and can vanish like
``rho^T``. A skip from ``t - k`` to ``t`` (El Hihi & Bengio 1995; the "recurrent skip
coefficients" of Zhang et al. 2016) shortens that path to ``T / k`` hops. skiplab's temporal
skip is a residual connection through time:

    h_t = cell(x_t, h_{t-1}) + (1 / |K|) * sum_{k in K} h_{t-k},

with ``h_{t-k} = h_0`` for ``t - k < 0``. Along the skips alone the recurrence is the averaging
``s_t = mean_k s_{t-k}``, whose Jacobian is a convex combination of identities, so the skip path
carries the gradient from ``T`` to ``0`` without shrinking it geometrically; the plain twin
``h_t = cell(x_t, h_{t-1})`` keeps only the ``rho^T`` path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from skiplab.nn._merge import check_same_shape
from skiplab.nn.residual import SkipModule

MERGES = ("add", "average")


class TemporalSkip(SkipModule):
    """Merge a new recurrent state with the states ``k`` steps back, for every ``k`` in ``ks``.

    ``y_t = new + mean_{k in ks} past[t - k]`` (``past[0]`` stands in for negative indices).

    Args:
        ks: the skip lengths, each an integer >= 2 (``k = 1`` is the recurrence itself); several
            at once are averaged (default ``(2,)``).
        skip: False builds the plain twin, ``y_t = new``.

    Shapes:
        ``new``: ``(B, H)``; ``past``: the states ``h_0 .. h_{t-1}``, each ``(B, H)``
        (``len(past) = t >= 1``). Returns ``(B, H)``.
    """

    def __init__(self, ks: Sequence[int] = (2,), skip: bool = True, merge: str = "add") -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"TemporalSkip merge must be one of {MERGES}, got {merge!r}")
        self.merge = merge
        ks = tuple(int(k) for k in ks)
        if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
            raise ValueError(f"TemporalSkip ks must be distinct integers >= 1, got {ks}")
        self.ks = ks
        self.skip = skip

    def forward(self, new: torch.Tensor, past: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.skip:
            return new
        t = len(past)
        if t < 1:
            raise ValueError("TemporalSkip needs at least the initial state h_0 in `past`")
        carried = [past[max(t - k, 0)] for k in self.ks]  # h_{t-k}, each (B, H)
        if carried[0].shape != new.shape:
            check_same_shape(self, "new state + h_{t-k}", new, carried[0], "The cell must "
                             "return states of the shape it was given.")  # fmt: skip
        if self.merge == "average":
            return (new + torch.stack(carried).sum(0)) / (1 + len(carried))
        return new + torch.stack(carried).mean(0)

    def extra_repr(self) -> str:
        return f"ks={self.ks}, merge={self.merge!r}, skip={self.skip}"
