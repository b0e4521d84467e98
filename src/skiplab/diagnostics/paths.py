"""Paths through a network (Veit, Wilber & Belongie 2016, section 3 and 4.2).

Unrolled, ``n`` residual blocks ``x_{i+1} = x_i + F_i(x_i)`` give ``2^n`` paths from input to
output: each block is either passed through its branch or skipped, so the number of branches a
path runs through is ``Binomial(n, 1/2)``. A plain network has one path, of length ``n``.

Two views, both computed with networkx on a directed acyclic graph:

* :func:`block_paths`: the chain of blocks with a branch edge (length 1) and, where the block
  has a skip, a shortcut edge (length 0);
* :func:`graph_paths`: the traced computation graph, counting weight layers (convolutions,
  linear maps) along each path: valid for any model :func:`~skiplab.diagnostics.trace` handles.

Path counts grow like ``2^n``, so paths are never enumerated: a dynamic programme over the
topological order carries, for every node, the number of paths of each length reaching it.

:func:`path_gradient_contribution` measures how much gradient flows along paths of each length
(Veit et al. section 4.2): for a random set of ``k`` blocks the gradient passes only through
their branches and only through the other blocks' shortcuts; the mean input-gradient norm times
the number ``C(n, k)`` of such paths is the total contribution of length ``k``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from skiplab.diagnostics._probe import batch_statistics
from skiplab.diagnostics._record import Recording
from skiplab.diagnostics.skips import SkipReport, Traced, _Graph, _tensor_args
from skiplab.nn import Residual


@dataclass
class PathStats:
    """Distribution of path lengths: ``counts[L]`` paths of length ``L``."""

    counts: list[float]
    unit: str

    @property
    def total(self) -> float:
        return float(sum(self.counts))

    @property
    def mean(self) -> float:
        c = np.asarray(self.counts, dtype=float)
        return float((c * np.arange(len(c))).sum() / c.sum()) if c.sum() else math.nan

    @property
    def longest(self) -> int:
        nz = np.nonzero(np.asarray(self.counts))[0]
        return int(nz[-1]) if nz.size else 0

    @property
    def shortest(self) -> int:
        nz = np.nonzero(np.asarray(self.counts))[0]
        return int(nz[0]) if nz.size else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "counts": self.counts, "total": self.total, "mean": self.mean,
            "longest": self.longest, "shortest": self.shortest,
        }  # fmt: skip


def _count_paths(graph: nx.DiGraph, source: Any, sink: Any) -> list[float]:
    """Number of source-to-sink paths by length; edge attribute ``length`` is 0 or 1."""
    dist: dict[Any, np.ndarray] = {source: np.array([1.0])}
    for node in nx.topological_sort(graph):
        if node == source:
            continue
        acc = np.zeros(1)
        for pred in graph.predecessors(node):
            if pred not in dist:
                continue
            for data in _edge_datas(graph, pred, node):
                shifted = np.concatenate([np.zeros(int(data.get("length", 0))), dist[pred]])
                if len(shifted) > len(acc):
                    acc = np.concatenate([acc, np.zeros(len(shifted) - len(acc))])
                acc[: len(shifted)] += shifted
        if acc.any():
            dist[node] = acc
    out = dist.get(sink, np.zeros(1))
    return np.trim_zeros(out, "b").tolist() or [0.0]


def _edge_datas(graph: nx.DiGraph, u: Any, v: Any) -> list[dict[str, Any]]:
    if isinstance(graph, nx.MultiDiGraph):
        return list(graph.get_edge_data(u, v).values())
    return [graph.edges[u, v]]


def block_chain_graph(skips: Sequence[bool]) -> nx.MultiDiGraph:
    """The block chain: node ``i`` is the input of block ``i``; block ``i`` adds a branch edge
    ``i -> i+1`` of length 1 and, when ``skips[i]``, a shortcut edge of length 0."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(len(skips) + 1))
    for i, has_skip in enumerate(skips):
        g.add_edge(i, i + 1, length=1, kind="branch")
        if has_skip:
            g.add_edge(i, i + 1, length=0, kind="shortcut")
    return g


def block_paths(skips: Sequence[bool]) -> PathStats:
    """Path-length distribution (in blocks) of a chain of blocks; binomial for all skips."""
    return PathStats(_count_paths(block_chain_graph(skips), 0, len(skips)), "blocks")


def model_block_paths(model: nn.Module) -> PathStats:
    """:func:`block_paths` for a model's chain of skiplab blocks (``skip`` flags in order)."""
    from skiplab.diagnostics._probe import find_blocks

    flags = [isinstance(b, Residual) and b.shortcut is not None for _, b in find_blocks(model)]
    return block_paths(flags)


def computation_graph(graph: Traced | Recording | SkipReport) -> tuple[nx.DiGraph, Any, Any]:
    """The data-flow graph of a trace or a recorded forward pass, from input to output.

    Edge ``u -> v`` has ``length`` 1 when ``v`` is a weight layer (convolution, linear map,
    embedding, a matmul by a weight), else 0. A :class:`Traced` graph's nodes are fx node names
    (source: the first placeholder, sink: the output); a :class:`Recording`'s are node indices
    (see :func:`recording_endpoints`). A :class:`SkipReport` gives its recording, or its trace
    where it has no recording. Returns ``(graph, source, sink)``.
    """
    if isinstance(graph, SkipReport):
        graph = _report_graph(graph)
    if isinstance(graph, Recording):
        return _recording_graph(graph)
    g = _Graph(graph)
    dag = nx.DiGraph()
    source = next(n for n in g.nodes if n.op == "placeholder")
    out_node = next(n for n in g.nodes if n.op == "output")
    for n in g.nodes:
        if not (n is out_node or g.carries_tensor(n)):
            continue
        length = 1 if g.is_weight_layer(n) else 0
        for p in _tensor_args(n):
            if p.op != "get_attr" and g.carries_tensor(p) and g.depends_on_input(p):
                dag.add_edge(p.name, n.name, length=length)
    return dag, source.name, out_node.name


def _report_graph(report: SkipReport) -> Traced | Recording:
    if report.recording is not None:
        return report.recording
    if report.traced is not None:
        return report.traced
    raise ValueError("the SkipReport holds neither a recording nor a trace: no graph to count")


def recording_endpoints(rec: Recording) -> tuple[int, int]:
    """``(source, sink)`` node indices of a recorded forward pass.

    The source is the model's first input (its first positional argument, else its first
    keyword argument: GPT-2's ``input_ids``, a graph's node features ``x``); the sink is the
    node of the output's primary tensor (a ``ModelOutput``'s ``logits``,
    :func:`~skiplab.diagnostics._inputs.primary`).

    Raises:
        ValueError: the recording has no input, kept no values (``keep_values=False``: the
            output cannot be matched to a node), or its output depends on no input.
    """
    from skiplab.diagnostics._inputs import primary

    source = next((n.index for n in rec.nodes if n.op == "input"), None)
    if source is None:
        raise ValueError("the recording has no input node: the model took no tensor input")
    if not rec.values:
        raise ValueError(
            "the recording kept no values (keep_values=False): its output cannot be matched to "
            "a node; record with keep_values=True"
        )
    out = primary(rec.output)
    sink = next((i for i in reversed(range(len(rec.nodes))) if rec.values.get(i) is out), None)
    if sink is None:
        raise ValueError(
            f"the model's output (shape {tuple(out.shape)}) is no node of the recording: it "
            "depends on no input"
        )
    return source, sink


def _recording_graph(rec: Recording) -> tuple[nx.DiGraph, int, int]:
    source, sink = recording_endpoints(rec)
    dag = nx.DiGraph()
    dag.add_nodes_from((source, sink))
    for node in rec.nodes:
        for p in node.parents:
            dag.add_edge(p, node.index, length=int(node.weight))
    return dag, source, sink


def _recording_paths(rec: Recording) -> list[float]:
    """:func:`_count_paths` over a recording, whose node indices are already in topological
    order (every parent is recorded before its child): one pass, no graph built."""
    source, sink = recording_endpoints(rec)
    dist: dict[int, np.ndarray] = {source: np.array([1.0])}
    for node in rec.nodes[source + 1 : sink + 1]:
        reached = [dist[p] for p in node.parents if p in dist]
        if not reached:
            continue
        acc = np.zeros(max(map(len, reached)) + int(node.weight))
        for d in reached:
            acc[int(node.weight) : int(node.weight) + len(d)] += d
        dist[node.index] = acc
    out = dist.get(sink, np.zeros(1))
    return np.trim_zeros(out, "b").tolist() or [0.0]


def graph_paths(graph: Traced | Recording | SkipReport) -> PathStats:
    """Input-to-output path-length distribution of a model, in weight layers.

    Args:
        graph: a torch.fx :class:`Traced` model, a recorded forward pass (:class:`Recording`,
            any model: ``transformers``, PyG), or a :class:`SkipReport` (its recording, else its
            trace). Both graphs of a model fx traces give the same counts.

    Paths are counted by a dynamic programme over the graph in topological order (linear in
    its size), as floats: a network of ``n`` residual blocks has about ``2^n`` of them.
    """
    if isinstance(graph, SkipReport):
        graph = _report_graph(graph)
    if isinstance(graph, Recording):
        return PathStats(_recording_paths(graph), "weight layers")
    dag, source, sink = computation_graph(graph)
    return PathStats(_count_paths(dag, source, sink), "weight layers")


def chain_path_stats(n_nodes: int, shortcut: tuple[int, int] | None = None) -> dict[str, float]:
    """Longest shortest path (diameter) and average shortest path of a chain of ``n_nodes``
    neurons, optionally with one extra edge ``shortcut`` (undirected, networkx, exact)."""
    g = nx.path_graph(n_nodes)
    if shortcut is not None:
        g.add_edge(*shortcut)
    return {
        "nodes": float(n_nodes),
        "diameter": float(nx.diameter(g)),
        "average": float(nx.average_shortest_path_length(g)),
    }


def path_gradient_contribution(
    model: nn.Module,
    inputs: tuple[Any, ...],
    target: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    samples: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Gradient magnitude reaching the first block's input along paths of each length.

    Only skiplab ``Residual`` blocks with a skip take part (their branch and shortcut are known
    modules); batch-norm layers use batch statistics and nothing is updated.

    Returns:
        ``n`` (blocks), ``lengths`` (0..n), ``mean_grad`` (mean input-gradient norm of one path
        of each length over ``samples`` random block sets), ``paths`` (``C(n, k)``) and
        ``total`` (``mean_grad * paths``, the contribution of all paths of that length).
    """
    blocks = [b for b in model.modules() if isinstance(b, Residual) and b.shortcut is not None]
    n = len(blocks)
    if n == 0:
        raise ValueError("path_gradient_contribution needs skiplab Residual blocks with a skip")
    rng = random.Random(seed)
    through_branch: set[int] = set()
    leaf: dict[str, torch.Tensor] = {}
    handles = []

    def make_input_leaf(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0].detach().requires_grad_(True)
        leaf["x"] = x
        return (x, *args[1:])

    def gate(i: int, part: str) -> Callable[..., torch.Tensor]:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            on_path = (i in through_branch) == (part == "branch")
            return out if on_path else out.detach()

        return hook

    handles.append(blocks[0].register_forward_pre_hook(make_input_leaf))
    for i, b in enumerate(blocks):
        assert b.shortcut is not None
        handles.append(b.drop_path.register_forward_hook(gate(i, "branch")))
        handles.append(b.shortcut.register_forward_hook(gate(i, "shortcut")))
    mean_grad = []
    try:
        with batch_statistics(model):
            for k in range(n + 1):
                norms = []
                for _ in range(samples if 0 < k < n else 1):
                    through_branch.clear()
                    through_branch.update(rng.sample(range(n), k))
                    loss = loss_fn(model(*inputs), target)
                    (g,) = torch.autograd.grad(loss, leaf["x"], allow_unused=True)
                    norms.append(0.0 if g is None else float(g.norm()))
                mean_grad.append(float(np.mean(norms)))
    finally:
        for h in handles:
            h.remove()
    paths = [float(math.comb(n, k)) for k in range(n + 1)]
    return {
        "n": n,
        "lengths": list(range(n + 1)),
        "mean_grad": mean_grad,
        "paths": paths,
        "total": [m * p for m, p in zip(mean_grad, paths)],
    }
