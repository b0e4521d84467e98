"""How large the backward signal is along a network: per-block gradient norms of one pass.

He et al. 2016 (Identity Mappings, eq. 5) write the gradient reaching block ``l`` of a residual
stack as ``dL/dx_l = dL/dx_L (1 + d/dx_l sum_i F_i)``: the identity path carries ``dL/dx_L``
back unchanged. Two views of one backward pass show whether it does in a given network:

- :class:`OutputGradientProbe`: ``||dL/dx||`` of the signal between blocks (the first block's
  input, then every block's output; Frobenius norm over the batch);
- :func:`block_gradient_norms`: those and, from
  :class:`~skiplab.diagnostics.gradflow.GradientFlowProbe`, the norm of each block's parameter
  gradient, at initialisation with batch statistics; :func:`plot_block_gradients` draws them
  against depth.

Blocks are found by :func:`~skiplab.diagnostics._probe.find_blocks` and named by their
qualified module names, so any model with skiplab blocks (or a block list) works.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.diagnostics._probe import AbstractProbe, batch_statistics, find_blocks
from skiplab.diagnostics.gradflow import GradientFlowProbe

__all__ = ["BlockGradients", "OutputGradientProbe", "block_gradient_norms", "plot_block_gradients"]


class OutputGradientProbe(AbstractProbe):
    """``||dL/dx||`` at the input of the first block and at the output of every block.

    Records the last backward pass (a forward pass without backward leaves the previous one).

    Returns (``collect()``):
        ``blocks`` (names), ``input_grad`` (norm at the first block's input, e.g. the stem's
        output; NaN when that input carries no gradient, e.g. the raw data) and
        ``output_grad`` (one norm per block, in forward order).
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = []
        self._norms: dict[int, float] = {}

    def __repr__(self) -> str:
        return "OutputGradientProbe()"

    def _attach(self, model: nn.Module) -> None:
        blocks = find_blocks(model)
        if not blocks:
            raise ValueError(f"{type(model).__name__} has no blocks to probe")
        self.blocks = [name for name, _ in blocks]
        first = blocks[0][1]
        self._keep(first.register_forward_pre_hook(lambda _m, args: self._watch(0, args[0])))
        for i, (_, block) in enumerate(blocks, start=1):
            self._keep(block.register_forward_hook(self._output_hook(i)))

    def _output_hook(self, i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            self._watch(i, out)

        return hook

    def _watch(self, i: int, t: Any) -> None:
        """Record the norm of the gradient reaching ``t`` (a tensor hook, freed with the graph)."""
        if isinstance(t, torch.Tensor) and t.requires_grad:
            t.register_hook(lambda g: self._norms.__setitem__(i, g.detach().norm().item()))

    def collect(self) -> dict[str, Any]:
        n = len(self.blocks)
        norms = [self._norms.get(i, float("nan")) for i in range(n + 1)]
        return {"blocks": list(self.blocks), "input_grad": norms[0], "output_grad": norms[1:]}


@dataclass
class BlockGradients:
    """Per-block gradient norms of one backward pass.

    Attributes:
        blocks: qualified block names, input side first.
        parameter: ``||dL/dtheta||`` of each block's parameters.
        signal: ``||dL/dx||`` at the first block's input, then at each block's output
            (``len(blocks) + 1`` values).
    """

    blocks: list[str]
    parameter: list[float]
    signal: list[float]


def block_gradient_norms(
    model: nn.Module,
    inputs: tuple[Any, ...],
    target: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> BlockGradients:
    """One forward and backward pass of ``loss_fn(model(*inputs), target)`` with batch
    statistics (nothing is updated; gradients are cleared afterwards)."""
    flow, signal = GradientFlowProbe(split=False), OutputGradientProbe()
    with batch_statistics(model), flow.attached(model), signal.attached(model):
        model.zero_grad(set_to_none=True)
        loss_fn(model(*inputs), target).backward()
        params, out = flow.collect(), signal.collect()
    model.zero_grad(set_to_none=True)
    by_group = dict(zip(params["groups"], params["grad_norm"][-1]))
    return BlockGradients(
        out["blocks"],
        [by_group[b] for b in out["blocks"]],
        [out["input_grad"], *out["output_grad"]],
    )


def plot_block_gradients(
    curves: Mapping[str, tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]],
    path: str | os.PathLike[str],
    boundaries: Sequence[float] = (),
    title: str = "at init",
) -> None:
    """Per-block parameter and signal gradient norms against depth, one line per model.

    Args:
        curves: ``{label: (parameter, signal)}``, each a list over seeds of
            :attr:`BlockGradients.parameter` / :attr:`BlockGradients.signal`; the line is the
            geometric mean over seeds, the band the min-max. Labels choose the colours
            (:func:`skiplab._plot.color_for`: residual blue, plain orange).
        path: the PNG to write.
        boundaries: x positions of dotted vertical lines (e.g. stage changes).
        title: appended to both panel titles.
    """
    from skiplab import _plot  # matplotlib only when a figure is drawn

    fig, axes = _plot.subplots(1, 2, width=5.0, height=3.9)
    panels = (
        (axes[0][0], 0, 1, "||dL/dθ|| of the block", "per block: parameter gradient",
         "block (input side left)"),
        (axes[0][1], 1, 0, "||dL/d(block output)||", "per block: output gradient",
         "block (0 = first block's input; input side left)"),
    )  # fmt: skip
    for ax, which, start, ylabel, name, xlabel in panels:
        for label, pair in curves.items():
            arr = np.asarray(pair[which], dtype=float)  # (seeds, blocks)
            xs = np.arange(start, start + arr.shape[1])
            color = _plot.color_for(label)
            ax.fill_between(xs, arr.min(0), arr.max(0), color=color, alpha=0.25)
            ax.semilogy(xs, np.exp(np.log(arr).mean(0)), color=color, lw=2, label=label)
        for x in boundaries:
            ax.axvline(x, color=_plot.REFERENCE, lw=0.8, ls=":")
        ax.set(title=f"{name} {title}", xlabel=xlabel, ylabel=ylabel)
        ax.legend()
    _plot.save(fig, path)
