"""Find the skips of any ``nn.Module``: residual adds, concatenations and gated mixes.

The model is traced with ``torch.fx`` by a tracer that runs every operation on the real example
inputs while it records the graph, so shape checks and other Python control flow on concrete
values trace (plain ``symbolic_trace`` refuses them), and every node's value is known: the norms
of a merge's two operands come with the graph. Where tracing still fails (data-dependent loops,
unsupported calls), discovery falls back to forward hooks on skiplab's own
:class:`~skiplab.nn.Residual` blocks and says so in :attr:`SkipReport.method` and ``note``.

A merge is a skip when its operands share an earlier tensor (the fork) and the *shortcut*
operand passes through fewer weight layers after the fork than the *branch* operand does; an
add whose branch holds no parameterised layer (``x + 0.044715 * x**3`` inside a GELU) is not a
skip.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from skiplab.diagnostics._probe import batch_statistics, eval_mode
from skiplab.nn import Residual

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


def trace(model: nn.Module, inputs: Sequence[Any]) -> Traced:
    """Trace ``model`` on ``inputs`` with ``torch.fx``, keeping every node's value (no grad).

    Raises:
        Exception: whatever tracing raised (callers fall back to hooks).
    """
    tracer = _ValueTracer()
    tracer._inputs = list(inputs)
    with torch.no_grad():
        graph = tracer.trace(model)
    return Traced(graph, tracer.values, model)


@dataclass
class Merge:
    """One skip found in a model.

    Args:
        kind: ``"residual"`` (an add), ``"concat"`` or ``"gated"`` (an add of gate-weighted terms).
        name: the graph node (or block) where the merge happens.
        module: qualified name of the module that performs it.
        shortcut: what the shortcut operand is (node name) and ``branch`` the branch operand.
        shortcut_layers, branch_layers: weight layers between the fork and each operand.
        shortcut_norm, branch_norm: mean per-example L2 norm of each operand (for a gated mix,
            of the two values the gates weigh).
        ratio: ``branch_norm / shortcut_norm``.
        shape: shape of the merge output.
        fork: the graph node both operands come from.
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SkipReport:
    """What :func:`find_skips` found and how.

    Args:
        merges: the skips, in forward order.
        method: ``"torch.fx"`` or ``"module hooks"`` (the fallback).
        note: why the fallback was used, empty when tracing worked.
        traced: the trace, when ``method`` is ``"torch.fx"`` (for path analysis).
    """

    merges: list[Merge]
    method: str
    note: str = ""
    traced: Traced | None = None

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


def merges_in(traced: Traced) -> list[Merge]:
    """Every skip merge in a traced graph (see the module docstring for the rule)."""
    g = _Graph(traced)
    found: list[Merge] = []
    for node in g.nodes:
        hit = _classify(g, node)
        if hit is None:
            continue
        kind, ops = hit
        if kind == "gated":
            # compare what the gates weigh, not the gate-weighted terms: the gate itself is
            # computed from both and would be their latest common ancestor
            ops = [g.ungated(o) for o in ops]
        scored = []
        forks: dict[tuple[fx.Node, fx.Node], fx.Node] = {}
        for i, a in enumerate(ops):
            for b in ops[i + 1 :]:
                fork = g.fork(a, b)
                if fork is None:
                    continue
                forks[(a, b)] = fork
                la, lb = g.layers_between(fork, a), g.layers_between(fork, b)
                if a is fork:
                    la = (0, 0)
                if b is fork:
                    lb = (0, 0)
                (short, ls), (branch, lbr) = sorted(((a, la), (b, lb)), key=lambda t: t[1])
                if lbr[1] > 0 and ls < lbr and g.keeps_rank(fork, short):
                    scored.append((short, ls, branch, lbr, fork))
        if not scored:
            continue
        short, ls, branch, lbr, fork = max(scored, key=lambda s: s[3][1] - s[1][1])
        sv, bv = traced.values[short], traced.values[branch]
        sn, bn = _per_example_norm(sv), _per_example_norm(bv)
        out = traced.values.get(node)
        found.append(
            Merge(
                kind=kind, name=node.name, module=traced.module_of(node),
                shortcut=short.name, branch=branch.name,
                shortcut_layers=ls[0], branch_layers=lbr[0],
                shortcut_norm=sn, branch_norm=bn,
                ratio=bn / sn if sn > 0 else math.inf,
                shape=list(out.shape) if isinstance(out, torch.Tensor) else [],
                fork=fork.name,
            )
        )  # fmt: skip
    return found


def _hook_merges(model: nn.Module, inputs: Sequence[Any]) -> list[Merge]:
    """Fallback: skiplab ``Residual`` blocks observed through forward hooks."""
    seen: dict[str, dict[str, torch.Tensor]] = {}
    handles = []

    def grab(block: str, part: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            seen.setdefault(block, {})[part] = out.detach()

        return hook

    try:
        for name, m in model.named_modules():
            if isinstance(m, Residual) and m.shortcut is not None:
                handles.append(m.shortcut.register_forward_hook(grab(name, "shortcut")))
                handles.append(m.drop_path.register_forward_hook(grab(name, "branch")))
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    merges = []
    for name, parts in seen.items():
        sn, bn = _per_example_norm(parts["shortcut"]), _per_example_norm(parts["branch"])
        merges.append(
            Merge(
                "residual", name, name, f"{name}.shortcut", f"{name}.branch", 0, 1, sn, bn,
                bn / sn if sn > 0 else math.inf, list(parts["branch"].shape),
            )
        )  # fmt: skip
    return merges


def find_skips(model: nn.Module, inputs: Sequence[Any], *, mode: str = "batch") -> SkipReport:
    """Find every skip of ``model`` on example ``inputs`` (no gradients, no buffer updates).

    Args:
        model: any ``nn.Module``.
        inputs: positional inputs of one forward call.
        mode: ``"batch"`` (training mode, batch-norm on batch statistics, nothing updated: the
            right view at init) or ``"eval"`` (eval mode: a trained model as it is evaluated).

    Returns:
        a :class:`SkipReport`; ``method`` says whether ``torch.fx`` tracing worked or the
        module-hook fallback (which sees only skiplab ``Residual`` blocks) was used.
    """
    if mode not in ("batch", "eval"):
        raise ValueError(f"mode must be 'batch' or 'eval', got {mode!r}")
    with ExitStack() as stack:
        if mode == "batch":
            stack.enter_context(batch_statistics(model))
        else:
            stack.enter_context(eval_mode(model))
        try:
            traced = trace(model, inputs)
        except Exception as err:  # any tracing failure: fall back, and say why
            note = (
                f"torch.fx tracing failed ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
                "fell back to module hooks, which see only skiplab Residual blocks"
            )
            return SkipReport(_hook_merges(model, inputs), "module hooks", note)
        return SkipReport(merges_in(traced), "torch.fx", "", traced)
