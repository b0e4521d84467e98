"""Find the skips of any ``nn.Module``: residual adds, concatenations and gated mixes.

Two methods look at the model, and :class:`Merge` says which one found each merge:

* **forward** (always): one real forward pass ``model(*inputs, **kwargs)`` is recorded op by op
  under a :class:`torch.overrides.TorchFunctionMode`, with the stack of running modules (see
  :mod:`skiplab.diagnostics._record`). Nothing is traced symbolically, so data-dependent control
  flow, keyword inputs, ``ModelOutput`` returns, in-place ops and PyG message passing work:
  ``transformers`` and PyG models included.
* **fx** (where it traces): the model is traced with ``torch.fx`` by a tracer that runs every
  operation on the real example inputs while it records the graph, so shape checks and other
  Python control flow on concrete values trace, and every node's value is known. Its graph is what
  path analysis (:func:`~skiplab.diagnostics.graph_paths`) and the gradient split need, so where
  it traces, its merges are reported (``method == "fx"``, names are nodes of
  :attr:`SkipReport.traced`), each matched with the forward pass's merge of the same kind and
  owner; a merge only one method found is kept and named in :attr:`SkipReport.note`.

A merge is an add, a concatenation (``torch.cat``) or a ``lerp`` of tensors that all depend on
the inputs (``torch.stack`` is not one: an RNN collecting its per-step outputs is no skip, so
JumpingKnowledge's ``"max"`` and ``"lstm"`` modes are not found). It is a skip when its operands
share an earlier tensor (the fork) and the *shortcut* operand passes through fewer weight layers
after the fork than the *branch* operand does, the branch holding at least one parameterised op;
an add whose branch holds no parameterised layer (``x + 0.044715 * x**3`` inside a GELU) is not a
skip, nor are adds of something that does not depend on the input (a bias, position embeddings,
an attention mask from ``arange``, an RNN's zero initial state). In the recorded forward pass the
branch must hold a weight layer or message passing (an op that indexes the data with an integer
tensor from another input, such as ``edge_index``): GCNII's first-layer initial residual
``(1 - alpha) P x0 + alpha x0`` has no parameter on its branch, only propagation along the graph;
a bias or a norm alone makes no branch. ``torch.where`` is not read as a gated mix (it is mostly
masking), and GCNII's identity mapping ``(1 - beta) h + beta h W`` inside one ``addmm`` is one
weight layer, not a merge.

Kinds: ``"residual"`` (an add; ``scale`` says whether an operand is multiplied by a parameter or a
constant: ``"branch"`` for LayerScale, ReZero, SkipInit or ``x + alpha * f(x)``, ``"both"`` for a
fixed mix such as GCNII's ``(1 - alpha) h + alpha x0``), ``"gated"`` (an add of sigmoid-weighted
terms, ``torch.lerp``) and ``"concat"``. A merge's **owner** (:attr:`Merge.module`) is the
innermost module whose ``forward`` performed the merge op, by qualified name: ``transformer.h.3``
for GPT-2's two adds, ``encoder.layer.0.attention.output`` for BERT's attention add (BERT adds in
its output modules, before their LayerNorm).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import torch
import torch.fx as fx
from torch import nn

from skiplab.diagnostics._flow import FlowGraph
from skiplab.diagnostics._probe import batch_statistics, eval_mode
from skiplab.diagnostics._record import Node, Recording, record

_ADD_FUNCS: set[Any] = {operator.add, operator.iadd, torch.add}
_CAT_FUNCS: set[Any] = {torch.cat, torch.concat, torch.concatenate}
_MUL_FUNCS: set[Any] = {operator.mul, operator.imul, torch.mul}
_GATE_FUNCS: set[Any] = {torch.sigmoid, torch.nn.functional.sigmoid}
_GATE_MODULES = (nn.Sigmoid,)


class _ValueProxy(fx.Proxy):
    """A proxy that answers ``len()`` from the traced value (option-A padding asks for it)."""

    def __len__(self) -> int:
        return len(self.tracer.values[self.node])  # type: ignore[attr-defined]

    def __index__(self) -> int:
        return int(self.tracer.values[self.node])  # type: ignore[attr-defined]


class _ValueTracer(fx.Tracer):
    """``torch.fx`` tracing that also computes each node's value on real inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[fx.Node, Any] = {}
        self._inputs: list[Any] = []
        self._kwargs: dict[str, Any] = {}
        self._plain_getattr = False

    def _real(self, a: Any) -> Any:
        if isinstance(a, fx.Proxy):
            return self.values[a.node]
        if isinstance(a, fx.Node):
            return self.values[a]
        return a

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # type: ignore[no-untyped-def,override]  # fmt: skip
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if kind == "output":
            return proxy
        rargs = fx.node.map_aggregate(args, self._real)
        rkwargs = fx.node.map_aggregate(kwargs, self._real)
        self._plain_getattr = True  # real values: module attributes must not turn into proxies
        try:
            self.values[proxy.node] = self._compute(kind, target, rargs, rkwargs)
        finally:
            self._plain_getattr = False
        return proxy

    def _compute(self, kind: str, target: Any, rargs: Any, rkwargs: Any) -> Any:
        if kind == "placeholder":
            if str(target) in self._kwargs:
                return self._kwargs[str(target)]
            i = sum(n.op == "placeholder" for n in self.values)
            return self._inputs[i] if i < len(self._inputs) else (rargs[0] if rargs else None)
        if kind == "get_attr":
            value = self.root
            for atom in str(target).split("."):
                value = getattr(value, atom)
            return value
        if kind == "call_function":
            return target(*rargs, **rkwargs)
        if kind == "call_method":
            return getattr(rargs[0], str(target))(*rargs[1:], **rkwargs)
        if kind == "call_module":
            module = self.root.get_submodule(str(target))
            return type(module).forward(module, *rargs, **rkwargs)
        return None

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._plain_getattr:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ValueProxy(node, self)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.values[obj.node])

    def iter(self, obj: fx.Proxy):  # type: ignore[no-untyped-def,override]
        return iter([obj[i] for i in range(len(self.values[obj.node]))])  # type: ignore[index]


@dataclass
class Traced:
    """A traced model: the fx graph, every node's value, and the model it came from."""

    graph: fx.Graph
    values: dict[fx.Node, Any]
    root: nn.Module

    def module_of(self, node: fx.Node) -> str:
        """Qualified name of the innermost module whose forward created ``node`` ("" for root)."""
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        path = list(stack.values())[-1]
        return str(path[0] if isinstance(path, tuple) else path)


def trace(
    model: nn.Module, inputs: Sequence[Any], kwargs: Mapping[str, Any] | None = None
) -> Traced:
    """Trace ``model`` on ``inputs`` (and keyword ``kwargs``, matched to the placeholders of
    ``forward``'s arguments by name) with ``torch.fx``, keeping every node's value (no grad).

    Raises:
        Exception: whatever tracing raised (callers use the recorded forward pass alone).
    """
    tracer = _ValueTracer()
    tracer._inputs = list(inputs)
    tracer._kwargs = dict(kwargs or {})
    with torch.no_grad():
        graph = tracer.trace(model)
    return Traced(graph, tracer.values, model)


@dataclass(frozen=True)
class MergeNodes:
    """Indices of a merge's nodes in a :class:`~skiplab.diagnostics._record.Recording`."""

    merge: int
    shortcut: int
    branch: int
    fork: int


@dataclass
class Merge:
    """One skip found in a model.

    Args:
        kind: ``"residual"`` (an add), ``"concat"`` or ``"gated"`` (an add of gate-weighted terms,
            a ``lerp``).
        name: the graph node where the merge happens (of :attr:`SkipReport.traced` when
            ``method == "fx"``, of :attr:`SkipReport.recording` when ``"forward"``).
        module: the owner: qualified name of the innermost module whose ``forward`` performed
            the merge op ("" for the root model).
        shortcut: what the shortcut operand is (node name) and ``branch`` the branch operand.
        shortcut_layers, branch_layers: weight layers between the fork and each operand.
        shortcut_norm, branch_norm: mean per-example L2 norm of each operand (for a gated mix,
            of the two values the gates weigh).
        ratio: ``branch_norm / shortcut_norm``.
        shape: shape of the merge output.
        fork: the graph node both operands come from.
        method: ``"fx"`` or ``"forward"``: which method's graph ``name``, ``shortcut``, ``branch``
            and ``fork`` are nodes of (an fx merge was also found by the forward pass unless
            :attr:`SkipReport.note` says otherwise).
        branch_module: the module holding the branch's weight layers: the owner's child that
            contains all of them (GPT-2: ``transformer.h.0.attn``, ``transformer.h.0.mlp``), or
            the deepest module containing them where that is not inside the owner (BERT's
            attention add: ``encoder.layer.0.attention``); ``shortcut_module`` the same for the
            shortcut ("" for an identity shortcut). From the forward pass.
        scale: ``"branch"``, ``"shortcut"`` or ``"both"`` when that operand of a residual add is
            a product with a parameter or a Python constant (LayerScale, ReZero, GCNII's
            ``(1 - alpha) h + alpha x0``), "" otherwise. From the forward pass.
        nodes: where the merge is in :attr:`SkipReport.recording`: the indices of its merge,
            shortcut, branch and fork nodes (what a probe re-running the forward pass with hooks
            needs, :func:`skiplab.diagnostics._record.record`); ``None`` for a merge only
            torch.fx found.
    """

    kind: str
    name: str
    module: str
    shortcut: str
    branch: str
    shortcut_layers: int
    branch_layers: int
    shortcut_norm: float
    branch_norm: float
    ratio: float
    shape: list[int] = field(default_factory=list)
    fork: str = ""
    method: str = ""
    branch_module: str = ""
    shortcut_module: str = ""
    scale: str = ""
    nodes: MergeNodes | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SkipReport:
    """What :func:`find_skips` found and how.

    Args:
        merges: the skips, in forward order.
        method: ``"torch.fx"`` when the model traced (its merges are fx's, matched with the
            forward pass's) or ``"forward"`` when only the recorded forward pass was used.
        note: why torch.fx was not used, and any merge only one of the two methods found;
            empty when both traced and agreed.
        traced: the trace, when ``method`` is ``"torch.fx"`` (for path analysis).
        recording: the recorded forward pass (every node's value is kept).
    """

    merges: list[Merge]
    method: str
    note: str = ""
    traced: Traced | None = None
    recording: Recording | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "note": self.note,
            "merges": [m.as_dict() for m in self.merges],
            "counts": {k: sum(m.kind == k for m in self.merges) for k in ("residual", "concat", "gated")},
        }  # fmt: skip


def _per_example_norm(t: torch.Tensor) -> float:
    t = t.detach().float()
    if t.dim() == 0:
        return float(t.abs())
    return float(t.reshape(t.shape[0], -1).norm(dim=1).mean())


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []

    def keep(n: fx.Node) -> fx.Node:
        out.append(n)
        return n

    fx.node.map_arg((node.args, node.kwargs), keep)
    return out


class _Graph:
    """Ancestry and weight-layer counts over a traced graph."""

    def __init__(self, traced: Traced) -> None:
        self.t = traced
        self.nodes = list(traced.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.inputs = {n for n in self.nodes if n.op == "placeholder"}
        self._anc: dict[fx.Node, frozenset[fx.Node]] = {}
        for n in self.nodes:
            parents = [p for p in _tensor_args(n) if self.carries_tensor(p)]
            acc: set[fx.Node] = set(parents)
            for p in parents:
                acc |= self._anc[p]
            self._anc[n] = frozenset(acc)

    def is_tensor(self, n: fx.Node) -> bool:
        return isinstance(self.t.values.get(n), torch.Tensor)

    def carries_tensor(self, n: fx.Node) -> bool:
        """A tensor, or a tuple of them (``chunk``/``split`` outputs feed their ``getitem``s)."""
        v = self.t.values.get(n)
        if isinstance(v, list | tuple):
            return any(isinstance(e, torch.Tensor) for e in v)
        return isinstance(v, torch.Tensor)

    def ancestors(self, n: fx.Node) -> frozenset[fx.Node]:
        return self._anc[n]

    def depends_on_input(self, n: fx.Node) -> bool:
        return n in self.inputs or bool(self._anc[n] & self.inputs)

    def is_weight_layer(self, n: fx.Node) -> bool:
        """A node that applies a parameter with >= 2 dims (conv, linear, embedding, matmul by W)."""
        if n.op == "call_module":
            module = self.t.root.get_submodule(str(n.target))
            return any(p.dim() >= 2 for p in module.parameters())
        if n.op in ("call_function", "call_method"):
            for a in _tensor_args(n):
                v = self.t.values.get(a)
                if a.op == "get_attr" and isinstance(v, nn.Parameter) and v.dim() >= 2:
                    return True
        return False

    def has_params(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            return any(True for _ in self.t.root.get_submodule(str(n.target)).parameters())
        return any(
            a.op == "get_attr" and isinstance(self.t.values.get(a), nn.Parameter)
            for a in _tensor_args(n)
        )

    def layers_between(self, fork: fx.Node, n: fx.Node) -> tuple[int, int]:
        """(weight layers, parameterised ops) on the way from ``fork`` to ``n``, inclusive of n."""
        candidates = (self._anc[n] - self._anc[fork] - {fork}) | {n}
        region = {m for m in candidates if m is n or fork in self._anc[m]}
        weights = sum(self.is_weight_layer(m) for m in region)
        params = sum(self.has_params(m) for m in region)
        return weights, params

    def keeps_rank(self, fork: fx.Node, n: fx.Node) -> bool:
        """No tensor between ``fork`` and ``n`` has fewer dims than the fork.

        A shortcut carries the fork whole (identity, padding, projection, a crop); a slice such
        as an RNN's ``x[:, t]`` that drops a dimension is an input, not a skip.
        """
        rank = self.t.values[fork].dim()
        region = {m for m in (self._anc[n] | {n}) if fork in self._anc[m]}
        return all(self.t.values[m].dim() >= rank for m in region if self.is_tensor(m))

    def fork(self, a: fx.Node, b: fx.Node) -> fx.Node | None:
        """The latest tensor both ``a`` and ``b`` come from (one of them if it feeds the other)."""
        if a in self._anc[b]:
            return a
        if b in self._anc[a]:
            return b
        common = [
            n
            for n in (self._anc[a] & self._anc[b])
            if self.is_tensor(n) and n.op != "get_attr" and self.depends_on_input(n)
        ]
        return max(common, key=self.index.__getitem__) if common else None

    def is_gate(self, n: fx.Node) -> bool:
        """A gate-weighted term: ``g * x`` with ``g`` (or ``1 - g``) from a sigmoid."""
        if n.op != "call_function" or n.target not in _MUL_FUNCS:
            return False
        return any(self._is_gate_factor(a) for a in _tensor_args(n))

    def ungated(self, n: fx.Node) -> fx.Node:
        """The value a gate-weighted term ``g * v`` weighs (``n`` itself if not one)."""
        if not self.is_gate(n):
            return n
        for a in _tensor_args(n):
            if not self._is_gate_factor(a):
                return a
        return n

    def _is_gate_factor(self, a: fx.Node) -> bool:
        for m in (a, *self._near(a)):
            if m.op == "call_function" and m.target in _GATE_FUNCS:
                return True
            if m.op == "call_method" and m.target == "sigmoid":
                return True
            if m.op == "call_module" and isinstance(
                self.t.root.get_submodule(str(m.target)), _GATE_MODULES
            ):
                return True
        return False

    def _near(self, a: fx.Node) -> list[fx.Node]:
        # ``1 - g`` or ``g.unsqueeze(...)``: look one step back from the factor.
        return [p for p in _tensor_args(a)]


def _classify(g: _Graph, node: fx.Node) -> tuple[str, list[fx.Node]] | None:
    if node.op == "call_function" and node.target in _ADD_FUNCS:
        ops = [a for a in node.args[:2] if isinstance(a, fx.Node) and g.is_tensor(a)]
        if len(ops) == 2 and all(g.depends_on_input(o) for o in ops):
            kind = "gated" if any(g.is_gate(o) for o in ops) else "residual"
            return kind, ops
    if node.op == "call_method" and node.target in ("add", "add_"):
        ops = [a for a in node.args[:2] if isinstance(a, fx.Node) and g.is_tensor(a)]
        if len(ops) == 2 and all(g.depends_on_input(o) for o in ops):
            return "residual", ops
    if node.op == "call_function" and node.target in _CAT_FUNCS:
        seq = node.args[0] if node.args else node.kwargs.get("tensors")
        if isinstance(seq, list | tuple):
            ops = [a for a in seq if isinstance(a, fx.Node) and g.depends_on_input(a)]
            if len(ops) >= 2:
                return "concat", ops
    if node.op == "call_function" and node.target is torch.lerp:
        ops = [a for a in node.args[:2] if isinstance(a, fx.Node)]
        if len(ops) == 2:
            return "gated", ops
    return None


N = TypeVar("N")
M = TypeVar("M")  # the node a candidate came from (fx.Node, or the recording's Node)


class _Paths(Protocol[N]):
    """What the skip rule asks of a graph: fx's :class:`_Graph` and the recorded ``FlowGraph``."""

    def fork(self, a: N, b: N) -> N | None: ...
    def layers_between(self, fork: N, n: N) -> tuple[int, int]: ...
    def keeps_rank(self, fork: N, n: N) -> bool: ...
    def ungated(self, n: N) -> N: ...


@dataclass
class _Pair(Generic[N]):
    """The shortcut and branch operands of a skip, their (weight, parameterised) layer counts
    from the fork, and the fork."""

    short: N
    short_layers: tuple[int, int]
    branch: N
    branch_layers: tuple[int, int]
    fork: N


def _best_pair(g: _Paths[N], ops: Sequence[N]) -> _Pair[N] | None:
    """The operand pair that makes the merge a skip (the module docstring's rule), or None.

    Of several pairs (a concat of many tensors), the one whose branch has the most parameterised
    ops more than its shortcut.
    """
    scored: list[_Pair[N]] = []
    for i, a in enumerate(ops):
        for b in ops[i + 1 :]:
            fork = g.fork(a, b)
            if fork is None:
                continue
            la = (0, 0) if a == fork else g.layers_between(fork, a)
            lb = (0, 0) if b == fork else g.layers_between(fork, b)
            (short, ls), (branch, lbr) = sorted(((a, la), (b, lb)), key=lambda t: t[1])
            if lbr[1] > 0 and ls < lbr and g.keeps_rank(fork, short):
                scored.append(_Pair(short, ls, branch, lbr, fork))
    if not scored:
        return None
    return max(scored, key=lambda p: p.branch_layers[1] - p.short_layers[1])


def _skip_pairs(
    g: _Paths[N], hits: Sequence[tuple[M, tuple[str, list[N]] | None]]
) -> Iterator[tuple[M, str, _Pair[N]]]:
    """``(node, kind, pair)`` for each merge candidate ``(node, (kind, operands))`` of either
    graph whose operands hold a skip (:func:`_best_pair`)."""
    for node, hit in hits:
        if hit is None:
            continue
        kind, ops = hit
        if kind == "gated":
            # compare what the gates weigh, not the gate-weighted terms: the gate itself is
            # computed from both and would be their latest common ancestor
            ops = [g.ungated(o) for o in ops]
        pair = _best_pair(g, ops)
        if pair is not None:
            yield node, kind, pair


def _norms(short: Any, branch: Any) -> tuple[float, float, float]:
    sn, bn = _per_example_norm(short), _per_example_norm(branch)
    return sn, bn, (bn / sn if sn > 0 else math.inf)


def merges_in(traced: Traced) -> list[Merge]:
    """Every skip merge in a traced graph (see the module docstring for the rule)."""
    g = _Graph(traced)
    found: list[Merge] = []
    for node, kind, pair in _skip_pairs(g, [(n, _classify(g, n)) for n in g.nodes]):
        sn, bn, ratio = _norms(traced.values[pair.short], traced.values[pair.branch])
        out = traced.values.get(node)
        found.append(
            Merge(
                kind=kind, name=node.name, module=traced.module_of(node),
                shortcut=pair.short.name, branch=pair.branch.name,
                shortcut_layers=pair.short_layers[0], branch_layers=pair.branch_layers[0],
                shortcut_norm=sn, branch_norm=bn, ratio=ratio,
                shape=list(out.shape) if isinstance(out, torch.Tensor) else [],
                fork=pair.fork.name, method="fx",
            )
        )  # fmt: skip
    return found


def _scale(g: FlowGraph, kind: str, pair: _Pair[int]) -> str:
    if kind != "residual":
        return ""
    short, branch = g.is_scaled(pair.short), g.is_scaled(pair.branch)
    return {(True, True): "both", (False, True): "branch", (True, False): "shortcut"}.get(
        (short, branch), ""
    )


def _forward_merge(g: FlowGraph, node: Node, kind: str, pair: _Pair[int]) -> Merge:
    values, nodes = g.rec.values, g.nodes
    sn, bn, ratio = _norms(values[pair.short], values[pair.branch])
    return Merge(
        kind=kind, name=node.name, module=node.module,
        shortcut=nodes[pair.short].name, branch=nodes[pair.branch].name,
        shortcut_layers=pair.short_layers[0], branch_layers=pair.branch_layers[0],
        shortcut_norm=sn, branch_norm=bn, ratio=ratio, shape=list(node.shape),
        fork=nodes[pair.fork].name, method="forward",
        branch_module=g.holder(pair.fork, pair.branch, node.module),
        shortcut_module=g.holder(pair.fork, pair.short, node.module),
        scale=_scale(g, kind, pair),
        nodes=MergeNodes(node.index, pair.short, pair.branch, pair.fork),
    )  # fmt: skip


def forward_merges(rec: Recording) -> list[Merge]:
    """Every skip merge in a recorded forward pass (see the module docstring for the rule)."""
    g = FlowGraph(rec)
    hits = [(node, g.candidate(node.index)) for node in rec.nodes]
    return [_forward_merge(g, node, kind, pair) for node, kind, pair in _skip_pairs(g, hits)]


def _where(merges: Sequence[Merge]) -> str:
    return ", ".join(f"{m.kind} in {m.module or '(root)'}" for m in merges)


def _closest(m: Merge, candidates: list[Merge]) -> int:
    """The candidate with the same operand norms as ``m`` (the same values: the first one where
    dropout makes them differ)."""
    for i, c in enumerate(candidates):
        same = [math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-8) for a, b in
                ((m.shortcut_norm, c.shortcut_norm), (m.branch_norm, c.branch_norm))]  # fmt: skip
        if all(same) and c.shape == m.shape:
            return i
    return 0


def _combine(fx_merges: list[Merge], forward: list[Merge]) -> tuple[list[Merge], str]:
    """fx's merges, each completed from the forward pass's merge of the same kind and owner (in
    order), then the forward pass's merges fx did not find; and a note naming the differences."""
    waiting: dict[tuple[str, str], list[Merge]] = {}
    for m in forward:
        waiting.setdefault((m.kind, m.module), []).append(m)
    merged, fx_only = [], []
    for m in fx_merges:
        same = waiting.get((m.kind, m.module))
        if not same:
            fx_only.append(m)
            merged.append(m)
            continue
        f = same.pop(_closest(m, same))
        merged.append(
            replace(
                m,
                branch_module=f.branch_module,
                shortcut_module=f.shortcut_module,
                scale=f.scale,
                nodes=f.nodes,
            )
        )
    left = {id(m) for ms in waiting.values() for m in ms}
    forward_only = [m for m in forward if id(m) in left]
    notes = []
    if forward_only:
        notes.append(f"found only in the recorded forward pass: {_where(forward_only)}")
    if fx_only:
        notes.append(f"found only by torch.fx: {_where(fx_only)}")
    return merged + forward_only, "; ".join(notes)


def _fx_failed(err: Exception) -> str:
    first = str(err).splitlines()[0][:160] if str(err) else ""
    return (
        f"torch.fx tracing failed ({type(err).__name__}: {first}); "
        "merges from the recorded forward pass"
    )


@contextmanager
def _discovery_mode(model: nn.Module, mode: str) -> Iterator[None]:
    if mode not in ("batch", "eval"):
        raise ValueError(f"mode must be 'batch' or 'eval', got {mode!r}")
    with ExitStack() as stack:
        if mode == "batch":
            stack.enter_context(batch_statistics(model))
        else:
            stack.enter_context(eval_mode(model))
        yield


def find_skips(
    model: nn.Module,
    inputs: Sequence[Any] = (),
    *,
    kwargs: Mapping[str, Any] | None = None,
    mode: str = "batch",
    use_fx: bool = True,
) -> SkipReport:
    """Find every skip of ``model`` on example inputs (no gradients, no buffer updates).

    Args:
        model: any ``nn.Module`` (``transformers`` and PyG models included).
        inputs: positional inputs of one forward call.
        kwargs: keyword inputs of that call (``attention_mask=...``, ``decoder_input_ids=...``).
        mode: ``"batch"`` (batch-norm on batch statistics, nothing updated, dropout off: the
            right view at init) or ``"eval"`` (eval mode: a trained model as it is evaluated).
        use_fx: also trace with ``torch.fx`` where it works (its graph feeds path analysis);
            False uses the recorded forward pass alone.

    Returns:
        a :class:`SkipReport`; ``method`` says whether ``torch.fx`` traced, ``note`` why not, and
        each :class:`Merge` which method found it.
    """
    kwargs = dict(kwargs or {})
    with _discovery_mode(model, mode):
        rec = record(model, inputs, kwargs)
        forward = forward_merges(rec)
        if not use_fx:
            return SkipReport(forward, "forward", "", None, rec)
        try:
            traced = trace(model, inputs, kwargs)
        except Exception as err:  # any tracing failure: the forward pass stands alone, say why
            return SkipReport(forward, "forward", _fx_failed(err), None, rec)
        merged, note = _combine(merges_in(traced), forward)
    return SkipReport(merged, "torch.fx", note, traced, rec)
