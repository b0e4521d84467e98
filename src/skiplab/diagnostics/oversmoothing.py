"""Oversmoothing of node representations: Dirichlet energy and mean average distance.

* Dirichlet energy (Cai & Wang 2020, "A Note on Over-Smoothing for Graph Neural Networks"; Rusch,
  Bronstein & Mishra 2023): with self-loops, ``d_i`` the degree of node i,

      E(X) = 1/N * sum_{(i,j) in E} || x_i / sqrt(1 + d_i) - x_j / sqrt(1 + d_j) ||^2 / 2

  i.e. ``tr(X^T (I - D^-1/2 A D^-1/2) X) / N`` over the self-looped graph. It is 0 exactly
  when the features are constant up to the degree scaling: oversmoothed. ``normalized=False``
  drops the degree scaling.
* Mean average distance, MAD (Chen et al. 2020, "Measuring and Relieving the Over-smoothing
  Problem", AAAI): the mean cosine distance ``1 - cos(x_i, x_j)`` over node pairs (all pairs or
  the edges), averaged per node first; near 0 when all nodes point the same way.

:func:`layer_features` and :func:`oversmoothing_profile` work on any PyG model: they hook the
given modules (default every ``MessagePassing`` layer) and measure what each one outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._probe import eval_mode

__all__ = [
    "dirichlet_energy",
    "layer_features",
    "mean_average_distance",
    "oversmoothing_profile",
    "rayleigh_quotient",
]


def _check(x: torch.Tensor, edge_index: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"node features must be (N, C), got {tuple(x.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be (2, E), got {tuple(edge_index.shape)}")
    if edge_index.numel() and int(edge_index.max()) >= x.shape[0]:
        raise ValueError(
            f"edge_index refers to node {int(edge_index.max())} but x has {x.shape[0]} nodes"
        )


@torch.no_grad()
def dirichlet_energy(x: torch.Tensor, edge_index: torch.Tensor, normalized: bool = True) -> float:
    """Dirichlet energy per node of features ``x`` on the graph (see the module docstring).

    Args:
        x: node features ``(N, C)``.
        edge_index: ``(2, E)``, both directions of each undirected edge (PyG convention);
            self-loops are ignored (they contribute nothing).
        normalized: scale by ``1 / sqrt(1 + degree)`` (the GCN-normalised Laplacian).

    Returns:
        The energy divided by the number of nodes (a float >= 0).
    """
    _check(x, edge_index)
    x = x.detach().double()
    src, dst = edge_index
    keep = src != dst
    src, dst = src[keep], dst[keep]
    if normalized:
        deg = torch.bincount(dst, minlength=x.shape[0]).double() + 1.0  # with the self-loop
        x = x / deg.sqrt().unsqueeze(1)
    diff = x[src] - x[dst]  # (E, C)
    # Each undirected edge appears twice, hence the 1/2.
    return float(0.5 * diff.pow(2).sum() / x.shape[0])


def rayleigh_quotient(x: torch.Tensor, edge_index: torch.Tensor) -> float:
    """Scale-free oversmoothing: ``tr(X^T (I - P) X) / tr(X^T X)`` in [0, 2].

    The Dirichlet energy scales with ``||X||^2``, so networks whose features differ in size
    cannot be compared by it; the quotient can. It is 0 exactly when every column of ``X`` is
    proportional to ``D^1/2 1``, the fixed point of repeated GCN propagation.
    """
    norm = float(x.detach().double().pow(2).sum()) / x.shape[0]
    return dirichlet_energy(x, edge_index) / norm if norm > 0 else 0.0


@torch.no_grad()
def mean_average_distance(
    x: torch.Tensor, edge_index: torch.Tensor | None = None, eps: float = 1e-12
) -> float:
    """MAD (Chen et al. 2020): mean cosine distance between node representations.

    Args:
        x: node features ``(N, C)``.
        edge_index: restrict to these pairs ``(2, E)`` (MAD on neighbours); default all pairs
            ``i != j`` (the global MAD).

    Returns:
        A float in [0, 2]; nodes without any pair are left out of the average.
    """
    x = x.detach().double()
    if x.dim() != 2:
        raise ValueError(f"node features must be (N, C), got {tuple(x.shape)}")
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(eps)  # (N, C)
    n = x.shape[0]
    if edge_index is None:
        dist = 1.0 - unit @ unit.T  # (N, N)
        dist.fill_diagonal_(0.0)
        per_node = dist.sum(1) / max(n - 1, 1)
        return float(per_node.mean())
    _check(x, edge_index)
    src, dst = edge_index
    keep = src != dst
    src, dst = src[keep], dst[keep]
    d = 1.0 - (unit[src] * unit[dst]).sum(1)  # (E,)
    total = torch.zeros(n, dtype=x.dtype).index_add_(0, dst, d)
    count = torch.bincount(dst, minlength=n)
    has = count > 0
    if not bool(has.any()):
        return 0.0
    return float((total[has] / count[has]).mean())


def _default_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from torch_geometric.nn import MessagePassing

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, MessagePassing)]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no MessagePassing layers to hook; pass modules="
        )
    return found


@torch.no_grad()
def layer_features(
    model: nn.Module,
    inputs: Sequence[Any],
    modules: Iterable[tuple[str, nn.Module]] | None = None,
) -> list[tuple[str, torch.Tensor]]:
    """Run ``model(*inputs)`` once in eval mode and return what each hooked module output.

    Args:
        model: any module, e.g. a PyG model called as ``model(x, edge_index)``.
        inputs: the positional inputs.
        modules: ``(name, module)`` pairs to hook; default every ``MessagePassing`` layer.

    Returns:
        ``(name, features (N, C))`` in call order (the model's train/eval mode is restored).
    """
    targets = list(modules) if modules is not None else _default_modules(model)
    captured: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, module in targets:

        def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            out = out[0] if isinstance(out, tuple) else out
            captured.append((name, out.detach()))

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return captured


def oversmoothing_profile(
    model: nn.Module,
    x: torch.Tensor,
    edge_index: torch.Tensor,
    modules: Iterable[tuple[str, nn.Module]] | None = None,
    *,
    input_energy: bool = True,
    mad: bool = True,
) -> list[dict[str, Any]]:
    """Dirichlet energy and MAD of the input and of every hooked layer's output.

    Args:
        input_energy: also measure the input features (as layer 0).
        mad: also compute the all-pairs MAD, ``O(N^2 C)`` per layer (``nan`` when False).

    Returns:
        One dict per layer ``{"layer", "name", "energy", "rq", "mad"}`` (``rq``: the
        :func:`rayleigh_quotient`); layer 0 is the input
        features when ``input_energy`` is True.
    """
    feats = layer_features(model, (x, edge_index), modules)
    if input_energy:
        feats.insert(0, ("input", x))
    start = 0 if input_energy else 1
    return [
        {"layer": i, "name": name, "energy": dirichlet_energy(h, edge_index),
         "rq": rayleigh_quotient(h, edge_index),
         "mad": mean_average_distance(h) if mad else float("nan")}
        for i, (name, h) in enumerate(feats, start=start)
    ]  # fmt: skip
