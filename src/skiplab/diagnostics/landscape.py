"""Loss landscapes (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of
Neural Nets").

Around the parameters ``theta`` and along directions ``d1``, ``d2``:

    f(a)    = L(theta + a d1)               (1-D, section 3)
    f(a, b) = L(theta + a d1 + b d2)        (2-D, section 4)

with *filter-normalised* random directions (section 4): every filter ``d_i`` of a Gaussian
direction (a slice along the output dimension of a weight) is rescaled to the norm of the
corresponding filter of ``theta``, ``d_i <- d_i / ||d_i|| * ||theta_i||``, and the directions of
biases and normalisation parameters (every parameter with <= 1 dimension) are set to zero, as
the paper does.

Evaluation never copies the model. With ``chunk=1`` (the default) the weights are moved in
place to each grid point by three fused ``torch._foreach_*`` calls and restored bit for bit at
the end (one copy of the weights is kept, not of the model); with ``chunk > 1`` grid points are
batched with ``torch.func.vmap`` over ``torch.func.functional_call``, ``chunk`` points per
batched forward. On a CPU the vmapped convolutions with per-point weights measured slower than
the in-place loop (``bench/bench_landscape.py``), hence the default. The model is evaluated in
eval mode on a fixed batch of its real inputs (:class:`~skiplab.diagnostics._inputs.Inputs`:
positional and keyword arguments), without gradients, and scored by a
:class:`~skiplab.diagnostics._inputs.Task` on the output's primary tensor: class or node labels,
a language model's next-token loss, or a user's loss function.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skiplab import _plot
from skiplab.diagnostics._inputs import Inputs, Task, infer_task
from skiplab.diagnostics._probe import eval_mode

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]
Direction = dict[str, torch.Tensor]


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A Gaussian direction with each filter scaled to its weight's filter norm (Li et al. §4).

    Parameters with <= 1 dimension (biases, normalisation scales and shifts) get zeros.
    """
    direction: Direction = {}
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        d_norm = d.reshape(d.shape[0], -1).norm(dim=1)  # (filters,)
        p_norm = p.detach().reshape(p.shape[0], -1).norm(dim=1)
        scale = p_norm / d_norm.clamp_min(1e-12)
        direction[name] = d * scale.reshape(-1, *([1] * (p.dim() - 1)))
    return direction


def _evaluator(
    model: nn.Module, inputs: Inputs, task: Task, directions: list[Direction]
) -> Callable[..., torch.Tensor]:
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    moving = [n for n in params if any(bool(d[n].any()) for d in directions)]

    def point(*coords: torch.Tensor) -> torch.Tensor:
        shifted = dict(params)
        for n in moving:
            shifted[n] = params[n] + sum(c * d[n] for c, d in zip(coords, directions))
        out = torch.func.functional_call(
            model, (shifted, buffers), inputs.args, dict(inputs.kwargs)
        )
        return task.loss(out, inputs)

    return point


def _evaluate_inplace(
    model: nn.Module,
    inputs: Inputs,
    task: Task,
    directions: list[Direction],
    coords: list[torch.Tensor],
) -> np.ndarray:
    names = [n for n, _ in model.named_parameters() if any(bool(d[n].any()) for d in directions)]
    params = dict(model.named_parameters())
    moving: list[torch.Tensor] = [params[n] for n in names]
    dirs = [[d[n] for n in names] for d in directions]
    saved = [p.detach().clone() for p in moving]
    flat = [c.reshape(-1).tolist() for c in coords]
    out = []
    try:
        with torch.no_grad():
            for point in zip(*flat):
                torch._foreach_copy_(moving, saved)
                for c, d in zip(point, dirs):
                    torch._foreach_add_(moving, d, alpha=c)
                out.append(task.loss(inputs(model), inputs).float())
    finally:
        with torch.no_grad():
            torch._foreach_copy_(moving, saved)
    return torch.stack(out).reshape(coords[0].shape).cpu().numpy()


def _evaluate(
    point: Callable[..., torch.Tensor], coords: list[torch.Tensor], chunk: int
) -> np.ndarray:
    flat = [c.reshape(-1) for c in coords]
    out = []
    with torch.no_grad():
        batched = torch.func.vmap(point)
        for i in range(0, flat[0].numel(), chunk):
            out.append(batched(*(c[i : i + chunk] for c in flat)))
    return torch.cat(out).reshape(coords[0].shape).cpu().numpy()


def _problem(
    model: nn.Module,
    inputs: Any,
    target: Any,
    task: Task | None,
    loss_fn: LossFn | None,
    caller: str,
) -> tuple[Inputs, Task]:
    """The inputs and task of a landscape call."""
    if callable(inputs) and not isinstance(inputs, Inputs | torch.Tensor):
        raise TypeError(
            f"{caller}(model, inputs, target): the second argument is the model's inputs, got "
            f"the callable {getattr(inputs, '__name__', inputs)!r}; pass a loss as loss_fn="
        )
    ins = Inputs.of(inputs)
    if task is None:
        with eval_mode(model):
            task = infer_task(model, ins, target=target, loss_fn=loss_fn)
    elif target is not None or loss_fn is not None:
        raise TypeError(f"{caller} takes task= or target/loss_fn, not both")
    return ins, task


@dataclass
class LossLine:
    """``loss[i] = L(theta + alphas[i] * d)``."""

    alphas: list[float]
    loss: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {"alphas": self.alphas, "loss": self.loss}


@dataclass
class LossPlane:
    """``loss[j][i] = L(theta + xs[i] * d1 + ys[j] * d2)``."""

    xs: list[float]
    ys: list[float]
    loss: list[list[float]]

    def as_dict(self) -> dict[str, Any]:
        return {"xs": self.xs, "ys": self.ys, "loss": self.loss}


def loss_line(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    task: Task | None = None,
    loss_fn: LossFn | None = None,
    alphas: Any = None,
    direction: Direction | None = None,
    seed: int = 0,
    chunk: int = 1,
) -> LossLine:
    """1-D landscape ``L(theta + a d)`` (Li et al. §3, with a filter-normalised ``d``).

    The loss is the task's on the model's real inputs, ``task.loss(model(*args, **kwargs))``
    (of the output's primary tensor: a ``ModelOutput``'s ``logits``), in eval mode without
    gradients; the weights are restored bit for bit afterwards.

    Args:
        inputs: anything :meth:`Inputs.of` takes: a tensor, a tuple of positional arguments, a
            mapping of keyword arguments (GPT-2's ``input_ids``, ``attention_mask``), an
            :class:`Inputs`.
        target: integer labels (classification, a graph's node labels); None for a language
            model's next-token loss.
        task: the :class:`Task` (default inferred from ``target``, or ``loss_fn``).
        loss_fn: ``loss_fn(primary(output), target)`` instead of an inferred loss.
        alphas: the step sizes (default 41 points in [-1, 1]).
        direction: a direction per parameter name (default filter-normalised from ``seed``);
            pass ``{n: theta_end[n] - theta[n]}`` for the interpolation between two solutions.
        chunk: grid points per vmapped forward (the model must run under ``torch.func.vmap``);
            1 (default) moves the weights in place instead.

    Raises:
        ValueError: no loss can be inferred (pass ``target``, ``loss_fn`` or ``task``).
        TypeError: a callable where the inputs go (a loss belongs in ``loss_fn=``), or both
            ``task`` and a target or loss.
    """
    ins, task = _problem(model, inputs, target, task, loss_fn, "loss_line")
    a = torch.as_tensor(
        np.linspace(-1, 1, 41) if alphas is None else np.asarray(alphas), dtype=torch.float32
    )
    d = direction or filter_normalized_direction(model, torch.Generator().manual_seed(seed))
    with eval_mode(model):
        if chunk == 1:
            loss = _evaluate_inplace(model, ins, task, [d], [a])
        else:
            loss = _evaluate(_evaluator(model, ins, task, [d]), [a], chunk)
    return LossLine(a.tolist(), loss.tolist())


def loss_plane(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    task: Task | None = None,
    loss_fn: LossFn | None = None,
    span: float = 1.0,
    steps: int = 21,
    seed: int = 0,
    chunk: int = 1,
) -> LossPlane:
    """2-D landscape on a ``steps x steps`` grid over ``[-span, span]^2`` (Li et al. §4).

    Inputs, target, task and loss as in :func:`loss_line`.

    Args:
        span: half-width of the grid in units of the filter-normalised directions.
        steps: grid points per axis (default 21).
        seed: seed of the two random directions.
        chunk: grid points per vmapped forward (memory grows with it); 1 (default) moves the
            weights in place, point by point, and restores them.
    """
    ins, task = _problem(model, inputs, target, task, loss_fn, "loss_plane")
    gen = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(model, gen)
    d2 = filter_normalized_direction(model, gen)
    grid = torch.linspace(-span, span, steps)
    bb, aa = torch.meshgrid(grid, grid, indexing="ij")  # (steps, steps): row j is ys[j]
    with eval_mode(model):
        if chunk == 1:
            loss = _evaluate_inplace(model, ins, task, [d1, d2], [aa, bb])
        else:
            loss = _evaluate(_evaluator(model, ins, task, [d1, d2]), [aa, bb], chunk)
    return LossPlane(grid.tolist(), grid.tolist(), loss.tolist())


def plot_line(
    lines: dict[str, dict[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Draw one or more :class:`LossLine` dicts (label -> ``as_dict()``) on a log scale."""
    fig, axes = _plot.subplots(1, 1, width=5.5, height=3.8)
    ax = axes[0][0]
    for label, line in lines.items():
        ax.semilogy(line["alphas"], line["loss"], label=label, color=_plot.color_for(label), lw=2)
    ax.set(
        xlabel="step along filter-normalised direction",
        ylabel="loss (log)",
        title=title or "1-D loss landscape",
    )
    ax.legend()
    return _plot.save(fig, path)


def plot_plane(
    planes: dict[str, dict[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Contour (top row) and surface (bottom row) of each :class:`LossPlane` dict, log10 loss."""
    n = len(planes)
    fig, axes = _plot.subplots(2, n, width=4.6, height=4.0)
    for k, (label, plane) in enumerate(planes.items()):
        xs, ys = np.asarray(plane["xs"]), np.asarray(plane["ys"])
        z = np.log10(np.clip(np.asarray(plane["loss"], dtype=float), 1e-12, None))
        z = np.where(np.isfinite(z), z, np.nanmax(z[np.isfinite(z)]) if np.isfinite(z).any() else 0)
        ax = axes[0][k]
        cs = ax.contour(xs, ys, z, levels=20, cmap="viridis")
        ax.clabel(cs, fontsize=7, fmt="%.2f")
        ax.plot(0, 0, "r*", ms=10)
        ax.set(title=f"{label}: log10 loss contours", xlabel="d1", ylabel="d2")
        fig.delaxes(axes[1][k])
        ax3 = fig.add_subplot(2, n, n + k + 1, projection="3d")
        xx, yy = np.meshgrid(xs, ys)
        ax3.plot_surface(xx, yy, z, cmap="viridis", linewidth=0, antialiased=True)
        ax3.set(title=f"{label}: surface", xlabel="d1", ylabel="d2", zlabel="log10 loss")
    if title:
        fig.suptitle(title)
    return _plot.save(fig, path)


def sharpness(plane: dict[str, Any]) -> float:
    """Mean loss increase over the grid relative to the centre, a scalar summary of the plane."""
    z = np.asarray(plane["loss"], dtype=float)
    centre = z[z.shape[0] // 2, z.shape[1] // 2]
    finite = z[np.isfinite(z)]
    return float(finite.mean() - centre) if finite.size else math.inf
