"""Paths through a network (Veit, Wilber & Belongie 2016, section 3 and 4.2).

Unrolled, ``n`` residual blocks ``x_{i+1} = x_i + F_i(x_i)`` give ``2^n`` paths from input to
output: each block is either passed through its branch or skipped, so the number of branches a
path runs through is ``Binomial(n, 1/2)``. A plain network has one path, of length ``n``.

Two views, both computed with networkx on a directed acyclic graph:

* :func:`block_paths`: the chain of blocks with a branch edge (length 1) and, where the block
  has a skip, a shortcut edge (length 0);
* :func:`graph_paths`: the computation graph, counting weight layers (convolutions, linear
  maps, embeddings) along each path: a torch.fx trace, or the recorded forward pass of any
  model (:mod:`skiplab.diagnostics._record`: ``transformers`` and PyG models included).

Path counts grow like ``2^n``, so paths are never enumerated: a dynamic programme over the
topological order carries, for every node, the number of paths of each length reaching it.

:func:`path_gradient_contribution` measures how much gradient flows along paths of each length
(Veit et al. section 4.2): for a random set of ``k`` residual merges (found in the recorded
forward pass) the gradient passes only through their branches and only through the other merges'
shortcuts; the mean norm of the gradient at the first merge's fork times the number ``C(n, k)``
of such paths is the total contribution of length ``k``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, LossFn, Task, infer_task
from skiplab.diagnostics._record import Node, Recording, check_node, record
from skiplab.diagnostics.skips import Merge, SkipReport, Traced, _Graph, _tensor_args
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
    (see :func:`recording_endpoints`; no edge runs from floating data into an integer or boolean
    tensor: a shape, a comparison or an index expanded to the data's shape carries none of its
    values). A :class:`SkipReport` gives its recording, or its trace where it has no recording.
    Returns ``(graph, source, sink)``.
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


def _carries(rec: Recording, parent: int, node: Node) -> bool:
    """The edge ``parent -> node`` carries values: an integer or boolean tensor computed from
    floating data (a scatter index expanded to the messages' shape, a comparison, a shape)
    holds none of them; integers from integers (token ids reshaped) still do."""
    return node.floating or not rec.nodes[parent].floating


def _recording_graph(rec: Recording) -> tuple[nx.DiGraph, int, int]:
    source, sink = recording_endpoints(rec)
    dag = nx.DiGraph()
    dag.add_nodes_from((source, sink))
    for node in rec.nodes:
        for p in node.parents:
            if _carries(rec, p, node):
                dag.add_edge(p, node.index, length=int(node.weight))
    return dag, source, sink


def _recording_paths(rec: Recording) -> list[float]:
    """:func:`_count_paths` over a recording, whose node indices are already in topological
    order (every parent is recorded before its child): one pass, no graph built."""
    source, sink = recording_endpoints(rec)
    dist: dict[int, np.ndarray] = {source: np.array([1.0])}
    for node in rec.nodes[source + 1 : sink + 1]:
        reached = [dist[p] for p in node.parents if p in dist and _carries(rec, p, node)]
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
    inputs: Any,
    target: Any = None,
    loss_fn: LossFn | None = None,
    *,
    task: Task | None = None,
    samples: int = 5,
    seed: int = 0,
    mode: str = "batch",
) -> dict[str, Any]:
    """Gradient magnitude reaching the first residual merge's fork along paths of each length.

    Works on any model whose residual adds :func:`~skiplab.diagnostics.find_skips` finds in
    the recorded forward pass (skiplab ``Residual`` blocks, ``transformers`` layers, hand-written
    blocks), provided they form a chain: every merge's fork comes after the previous merge
    (GPT-2's attention and MLP adds, a ResNet's blocks; not GCNII's initial residual, whose
    fork ``x0`` is the first layer's input). For a random set of ``k`` merges the gradient
    passes only through those merges' branch operands and only through the other merges'
    shortcut operands (Veit et al. section 4.2): each gated merge ``m = s + b`` is re-run as
    ``m - (s - stop_grad(s))`` (or with ``b``), the same value with the gradient of one operand
    cut, through hooks on a re-recorded forward pass. Merges with an ``alpha=`` keyword
    (``torch.add(s, b, alpha=c)``) are gated as if ``alpha`` were 1.

    Args:
        inputs: anything :meth:`Inputs.of` takes (a tuple of positional arguments, a mapping of
            keyword arguments such as GPT-2's ``input_ids``).
        target, loss_fn: ``loss_fn(primary(output), target)`` when ``loss_fn`` is given; integer
            labels alone give a classification loss, no target a next-token loss.
        task: the :class:`Task` (inferred from ``target`` and ``loss_fn`` when None).
        samples: random merge sets per length ``0 < k < n``.
        mode: ``"batch"`` (batch-norm on batch statistics, nothing updated, dropout off:
            :func:`~skiplab.diagnostics.batch_statistics`) or ``"eval"``.

    Returns:
        ``n`` (merges), ``lengths`` (0..n), ``mean_grad`` (mean norm of the gradient at the
        first merge's fork for one path of each length, over ``samples`` random merge sets),
        ``paths`` (``C(n, k)``) and ``total`` (``mean_grad * paths``, the contribution of all
        paths of that length).

    Raises:
        ValueError: no residual merge is found, the merges do not form a chain, or the first
            fork is a model input that is not a floating tensor argument.
    """
    from skiplab.diagnostics.skips import _discovery_mode, find_skips

    ins = Inputs.of(inputs)
    with _discovery_mode(model, mode):
        if task is None:
            task = infer_task(model, ins, target=target, loss_fn=loss_fn)
        report = find_skips(model, ins.args, kwargs=ins.kwargs, mode=mode, use_fx=False)
    assert report.recording is not None
    rec = report.recording
    merges = [m for m in report.merges if m.kind == "residual" and m.nodes is not None]
    n = len(merges)
    if n == 0:
        raise ValueError(
            f"path_gradient_contribution found no residual merge in {type(model).__name__}'s "
            f"recorded forward pass on inputs {ins.describe()}"
        )
    _check_chain(rec, merges)
    first = merges[0].nodes
    assert first is not None
    rng = random.Random(seed)
    through_branch: set[int] = set()
    leaf: dict[str, torch.Tensor] = {}

    def make_leaf(node: Node, _args: Any, value: torch.Tensor) -> torch.Tensor:
        check_node(node, rec.nodes[first.fork].op, rec.nodes[first.fork].module)
        leaf["x"] = value.detach().requires_grad_(True)
        return leaf["x"]

    hooks: dict[int, Any] = {}
    for i, m in enumerate(merges):
        assert m.nodes is not None
        hooks[m.nodes.merge] = _gate(rec, i, m, through_branch)
    run, from_input = ins, rec.nodes[first.fork].op == "input"
    if from_input:  # the first block takes the model's input itself: differentiate by it
        key, x = _input_of(ins, rec.nodes[first.fork].name)
        leaf["x"] = x.detach().requires_grad_(True)
        run = ins.replace(key, leaf["x"])
    else:
        hooks[first.fork] = make_leaf
    mean_grad = []
    with _discovery_mode(model, mode):
        for k in range(n + 1):
            norms = []
            for _ in range(samples if 0 < k < n else 1):
                through_branch.clear()
                through_branch.update(rng.sample(range(n), k))
                if not from_input:
                    leaf.pop("x", None)
                out = record(model, run.args, run.kwargs, hooks=hooks, grad=True, keep_values=False)
                if "x" not in leaf:
                    raise ValueError(
                        f"the first merge's fork {rec.nodes[first.fork].name} was not made by "
                        "an op of its own (a second output of one op): cannot take its gradient"
                    )
                loss = task.loss(out.output, ins)
                (g,) = torch.autograd.grad(loss, leaf["x"], allow_unused=True)
                norms.append(0.0 if g is None else float(g.norm()))
            mean_grad.append(float(np.mean(norms)))
    paths = [float(math.comb(n, k)) for k in range(n + 1)]
    return {
        "n": n,
        "lengths": list(range(n + 1)),
        "mean_grad": mean_grad,
        "paths": paths,
        "total": [m * p for m, p in zip(mean_grad, paths)],
    }


def _check_chain(rec: Recording, merges: Sequence[Merge]) -> None:
    """Every merge's fork is the previous merge or comes after it in the data flow."""
    for prev, m in itertools.pairwise(merges):
        assert prev.nodes is not None and m.nodes is not None
        fork, before = m.nodes.fork, prev.nodes.merge
        if fork != before and not rec.ancestors[fork] >> before & 1:
            raise ValueError(
                f"the residual merges do not form a chain: the fork of {m.name} (in "
                f"{m.module or '(root)'}) does not come after {prev.name} (in "
                f"{prev.module or '(root)'}), so paths through the merges are not the "
                "C(n, k) of a chain of blocks"
            )


def _gate(rec: Recording, i: int, merge: Merge, through_branch: set[int]) -> Any:
    """The hook that cuts the gradient of the operand of merge ``i`` that is off the path."""
    assert merge.nodes is not None
    node0 = rec.nodes[merge.nodes.merge]
    short_pos = node0.operands.index(merge.nodes.shortcut)

    def hook(node: Node, args: Any, out: torch.Tensor) -> torch.Tensor:
        check_node(node, node0.op, node0.module)
        keep_pos = 1 - short_pos if i in through_branch else short_pos
        kept, cut = args[keep_pos], args[1 - keep_pos]
        if cut is out:  # ``cut += kept`` in place: the cut operand's old value is gone
            return out.detach() + (kept - kept.detach())
        return out - (cut - cut.detach())

    return hook


def _input_of(inputs: Inputs, name: str) -> tuple[int | str, torch.Tensor]:
    """The argument (position or keyword) and tensor of the recording's input node ``name``."""
    key: int | str = int(name[5:]) if name[5:].isdigit() and name.startswith("input") else name
    value = inputs.args[key] if isinstance(key, int) else inputs.kwargs.get(key)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise ValueError(
            f"the first merge's fork is the model input {name!r}, which is not a floating "
            "tensor argument: cannot take the gradient at it"
        )
    return key, value
