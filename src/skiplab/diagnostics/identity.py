"""Which residual blocks are an exact identity (up to their shortcut and post-activation).

A block ``y = post(shortcut(x) + F(x))`` whose branch ends in a normalisation with scale 0
(zero-gamma, Goyal et al. 2017; He et al. 2019) has ``F(x) = 0`` exactly at init, so
``y = post(shortcut(x))``. :class:`IdentityProbe` records every skiplab
:class:`~skiplab.nn.Residual` block with a shortcut during one forward pass and checks that
equation with ``torch.equal`` (no tolerance: 0 is exact in floating point).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._probe import AbstractProbe, eval_mode
from skiplab.nn import Residual


class IdentityProbe(AbstractProbe):
    """Record whether each residual block's output is exactly ``post(shortcut(x))``.

    ``collect()`` returns ``blocks`` (qualified module names, in the order they ran) and
    ``exact`` (one bool per block). Blocks without a shortcut (plain twins) are not recorded.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: list[tuple[str, bool]] = []

    def _attach(self, model: nn.Module) -> None:
        for name, module in model.named_modules():
            if isinstance(module, Residual) and module.shortcut is not None:
                self._keep(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        @torch.no_grad()
        def hook(block: Residual, inputs: tuple[Any, ...], out: torch.Tensor) -> None:
            assert block.shortcut is not None
            self._seen.append((name, torch.equal(out, block.post(block.shortcut(inputs[0])))))

        return hook

    def collect(self) -> dict[str, Any]:
        return {"blocks": [n for n, _ in self._seen], "exact": [e for _, e in self._seen]}


@torch.no_grad()
def identity_blocks(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """How many residual blocks of ``model`` give exactly ``post(shortcut(x))`` on their input
    in eval mode (the branch adds exactly 0), out of how many ran.

    Returns:
        ``(exact, blocks)``.
    """
    probe = IdentityProbe()
    with eval_mode(model), probe.attached(model):
        model(x)
        exact = probe.collect()["exact"]
    return sum(exact), len(exact)
