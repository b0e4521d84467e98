"""Lesion studies (Veit, Wilber & Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", section 4).

Deleting a residual block ``y = s(x) + F(x)`` removes its branch and keeps its shortcut,
``y = s(x)``: of the ``2^n`` paths through ``n`` blocks, half survive. Deleting a layer of a
plain network (``y = x`` in its place) leaves no path at all that the network was trained on.
Veit et al. found test error barely moves when one block of a ResNet is deleted, and a VGG
network falls to chance.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._probe import eval_mode, find_blocks
from skiplab.nn import Residual


class LesionError(ValueError):
    """A block that cannot be deleted (its output shape differs from its input's)."""


def _lesioned_forward(block: nn.Module) -> Any:
    if isinstance(block, Residual) and block.shortcut is not None:
        shortcut, post = block.shortcut, block.post

        def forward(x: torch.Tensor) -> torch.Tensor:
            return post(shortcut(x))  # branch removed, shortcut kept

        return forward

    def identity(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x  # a plain layer deleted: its input passes on unchanged

    return identity


@contextmanager
def lesioned(model: nn.Module, names: Sequence[str]) -> Iterator[nn.Module]:
    """Delete the blocks ``names`` of ``model`` for the duration of the block.

    A skiplab ``Residual`` with a skip loses its branch (``y = post(shortcut(x))``); any other
    block (a plain twin's, or a hand-written one) is replaced by the identity. The blocks'
    ``forward`` is restored on exit, even on error.
    """
    modules = [model.get_submodule(n) for n in names]
    try:
        for m in modules:
            m.forward = _lesioned_forward(m)  # type: ignore[method-assign]
        yield model
    finally:
        for m in modules:
            if "forward" in m.__dict__:
                del m.forward


def deletable_blocks(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[list[str], list[str]]:
    """(blocks that can be deleted, blocks that cannot) for ``model`` on ``inputs``.

    A residual block with a shortcut can always be deleted; another block only when its output
    has its input's shape (a plain network's downsampling layer cannot).
    """
    shapes: dict[str, tuple[Any, Any]] = {}
    blocks = find_blocks(model)
    handles = [
        b.register_forward_hook(
            lambda _m, i, o, n=n: shapes.__setitem__(n, (tuple(i[0].shape), tuple(o.shape)))
        )
        for n, b in blocks
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    ok, not_ok = [], []
    for n, b in blocks:
        residual = isinstance(b, Residual) and b.shortcut is not None
        if residual or (n in shapes and shapes[n][0] == shapes[n][1]):
            ok.append(n)
        else:
            not_ok.append(n)
    return ok, not_ok


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``(x, y)``."""
    correct = 0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
    return correct / max(len(x), 1)


@dataclass
class LesionResult:
    """Accuracies after deletions.

    Args:
        base: accuracy of the intact model.
        single: block name -> accuracy with that block deleted.
        random: ``k`` -> accuracies with ``k`` random deletable blocks deleted (one per draw).
        not_deletable: blocks whose deletion is undefined (shape-changing plain layers).
    """

    base: float
    single: dict[str, float] = field(default_factory=dict)
    random: dict[int, list[float]] = field(default_factory=dict)
    not_deletable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "single": self.single,
            "random": {str(k): v for k, v in self.random.items()},
            "not_deletable": self.not_deletable,
        }


def lesion_study(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    ks: Sequence[int] = (),
    draws: int = 5,
    seed: int = 0,
    batch_size: int = 1000,
) -> LesionResult:
    """Accuracy on ``(x, y)`` after deleting each block, and ``k`` random blocks at a time.

    Args:
        ks: numbers of blocks to delete together (Veit et al. Fig. 5b); sizes larger than the
            number of deletable blocks are left out.
        draws: random subsets per ``k``.
        seed: seed of the subsets.
    """
    ok, not_ok = deletable_blocks(model, (x[:2],))
    result = LesionResult(accuracy(model, x, y, batch_size), not_deletable=not_ok)
    for name in ok:
        with lesioned(model, [name]):
            result.single[name] = accuracy(model, x, y, batch_size)
    rng = random.Random(seed)
    for k in ks:
        if k > len(ok):
            continue
        result.random[k] = []
        for _ in range(draws):
            with lesioned(model, rng.sample(ok, k)):
                result.random[k].append(accuracy(model, x, y, batch_size))
    return result
