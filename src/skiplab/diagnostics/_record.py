"""Record one real forward pass as a data-flow graph, with the module that ran every op.

A :class:`torch.overrides.TorchFunctionMode` sees every torch function and tensor method the
model calls (``F.linear``, ``Tensor.__add__``, ``torch.cat``, PyG's ``index_select`` and
``scatter_add_``), on real tensors, so Python control flow, keyword inputs, ``ModelOutput``
returns and message passing all run as they always do. A composite function (``F.layer_norm``,
``F.scaled_dot_product_attention``, ``F.multi_head_attention_forward``) is one op: the mode is
off while it runs. Forward pre- and post-hooks on every submodule keep the stack of running
modules, so each op knows the innermost module whose ``forward`` called it.

Only tensors that depend on an input become nodes. Parameters, buffers and tensors computed from
them alone (``self.weight.t()``, a position-bias table, a causal mask from ``arange``) are
*static*: they mark the op that uses them (a weight layer, a parameterised op) but are not part
of the data flow. Tensors are matched to nodes by identity; an in-place op (``add_``, ``x[i] =``)
makes a new node for the same tensor, and the value its old node had is copied first.
"""

from __future__ import annotations

import numbers
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

ADD_OPS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})
SUB_OPS = frozenset({"sub", "sub_", "__sub__", "__rsub__", "__isub__"})
CAT_OPS = frozenset({"cat", "concat", "concatenate"})
LERP_OPS = frozenset({"lerp", "lerp_"})
MUL_OPS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__"})
DIV_OPS = frozenset({"div", "div_", "__truediv__", "__itruediv__"})
SIGMOID_OPS = frozenset({"sigmoid", "sigmoid_"})
# ops that take only a shape (and dtype, device) from their tensor argument
SHAPE_ONLY_OPS = frozenset(
    {
        "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
        "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor",
    }
)  # fmt: skip
# ops that only move or reshape values (and dropout, which rescales by a random mask): a scale
# factor seen through them still scales the merge operand
PASS_THROUGH_OPS = frozenset(
    {
        "view", "reshape", "permute", "transpose", "contiguous", "flatten", "unflatten",
        "squeeze", "unsqueeze", "clone", "to", "dropout", "dropout1d", "dropout2d", "dropout3d",
        "alpha_dropout", "feature_alpha_dropout",
    }
)  # fmt: skip
_ADDITIVE = ADD_OPS | SUB_OPS
_INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


NodeHook = Callable[["Node", Any, Any], Any]


@dataclass(eq=False)
class Node:
    """One input-dependent tensor produced by a recorded op.

    Args:
        index: position in forward order.
        name: ``"<op>_<index>"`` (inputs: the argument name).
        op: the torch function or method name (``"input"`` for the model's inputs).
        module: qualified name of the innermost module running when the op ran ("" for root).
        parents: data-flow parents (input-dependent tensor arguments), in argument order.
        operands: for merge candidates (adds, concats, lerps), the node of each operand in order
            (``None`` for an operand that is not input-dependent); empty otherwise.
        weight: the op applies a weight matrix (a parameter with >= 2 dims, or that parameter
            reshaped or rescaled: ``self.weight.t()``, a spectral-norm weight) other than by
            adding it (linear, conv, embedding, matmul by a weight).
        params: the op uses any parameter (a norm's affine weights, a LayerScale gamma).
        gather: the op indexes floating data with an integer tensor that depends on an input
            (message passing along ``edge_index``).
        factor: for a product or quotient with one data operand, what the other one is:
            ``"param"`` (a parameter or a tensor computed from parameters), ``"const"`` (a Python
            number other than 1, products only) or ``""``.
        dims, shape, floating: of the tensor.
    """

    index: int
    name: str
    op: str
    module: str
    parents: tuple[int, ...]
    operands: tuple[int | None, ...] = ()
    weight: bool = False
    params: bool = False
    gather: bool = False
    factor: str = ""
    dims: int = 0
    shape: tuple[int, ...] = ()
    floating: bool = True


@dataclass
class Recording:
    """The recorded data-flow graph of one forward pass, and each node's value.

    ``ancestors[i]`` is a bit set (a Python int) of every node that node ``i`` depends on.
    ``overwritten`` holds the nodes whose tensor a later in-place op changed (the ``out`` of
    ``out += identity``, an add's output fed to ``nn.ReLU(inplace=True)``): a probe that keeps
    such a tensor to differentiate through must keep a copy the model does not write to.
    """

    nodes: list[Node] = field(default_factory=list)
    ancestors: list[int] = field(default_factory=list)
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    output: Any = None
    keep_values: bool = True
    overwritten: set[int] = field(default_factory=set)

    def add(self, node: Node, value: torch.Tensor) -> None:
        anc = 0
        for p in node.parents:
            anc |= self.ancestors[p] | (1 << p)
        self.nodes.append(node)
        self.ancestors.append(anc)
        if self.keep_values:
            self.values[node.index] = value


class _Paused(threading.local):
    depth = 0


_PAUSED = _Paused()


@contextmanager
def unrecorded() -> Iterator[None]:
    """Ops run inside the block are not recorded: for a probe's module hooks, whose arithmetic
    on a block's output would otherwise become nodes of the pass and shift every later index."""
    _PAUSED.depth += 1
    try:
        yield
    finally:
        _PAUSED.depth -= 1


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Tensors in ``obj`` and in its (nested) lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, Mapping):
        for o in obj.values():
            yield from _tensors(o)


def _mutates(name: str, kwargs: Mapping[str, Any]) -> bool:
    inplace = name.endswith("_") and not name.startswith("__")
    inplace = inplace or (name.startswith("__i") and name.endswith("__")) or name == "__setitem__"
    return inplace or bool(kwargs.get("inplace")) or kwargs.get("out") is not None


class _Recorder(TorchFunctionMode):
    """Builds a :class:`Recording` from the torch functions called while it is active."""

    def __init__(
        self,
        stack: list[str],
        hooks: Mapping[int, NodeHook] | None = None,
        keep_values: bool = True,
    ) -> None:
        super().__init__()
        self.rec = Recording(keep_values=keep_values)
        self.stack = stack
        self.hooks = dict(hooks or {})
        self.node_of: dict[int, int] = {}  # id(tensor) -> node index
        # id(tensor) -> (computed from parameters, is a weight matrix or a view of one)
        self.static: dict[int, tuple[bool, bool]] = {}
        # every seen tensor, so ids stay unique: held while values are kept anyway; otherwise a
        # weak reference drops a dead tensor's entries (a pass that keeps no values must not
        # hold every activation of the batch alive)
        self.keep: list[torch.Tensor] = []
        self._refs: dict[int, weakref.ref[torch.Tensor]] = {}

    def _hold(self, t: torch.Tensor) -> None:
        """Keep ``id(t)`` meaning ``t``: hold ``t``, or forget its entries when it dies."""
        if self.rec.keep_values:
            self.keep.append(t)
            return
        key = id(t)
        self._refs[key] = weakref.ref(t, lambda _ref: self._forget(key))

    def release(self) -> None:
        """Drop the weak references: their callbacks hold the recorder, which holds the hooks
        (and what they keep), a cycle that would otherwise outlive the pass until the cycle
        collector runs."""
        self._refs.clear()

    def _forget(self, key: int) -> None:
        self.node_of.pop(key, None)
        self.static.pop(key, None)
        self._refs.pop(key, None)

    def mark_inputs(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        named = [(f"input{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
        for name, obj in named:
            for j, t in enumerate(_tensors(obj)):
                if id(t) not in self.node_of:
                    self._new_node(t, name if j == 0 else f"{name}.{j}", "input", ())

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def,override]  # fmt: skip
        kwargs = kwargs or {}
        if _PAUSED.depth:  # a probe's own arithmetic inside the pass (a module hook's statistics)
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "") or str(func)
        ins = list(_tensors((args, kwargs)))
        if _mutates(name, kwargs):
            for t in _tensors((args[:1], kwargs.get("out"))):
                if id(t) in self.node_of:
                    self.rec.overwritten.add(self.node_of[id(t)])
                    if self.rec.keep_values:  # the value its node had, before the op writes
                        self.rec.values[self.node_of[id(t)]] = t.detach().clone()
        out = func(*args, **kwargs)
        outs = list(_tensors(out))
        if name == "__setitem__":  # ``x[i] = v`` returns nothing: x itself is the new value
            outs = list(_tensors(args[:1]))
        if outs:
            first = len(self.rec.nodes)
            self._record(name, args, ins, outs)
            if first in self.hooks and len(self.rec.nodes) > first:
                out = self._intervene(first, args, out)
        return out

    def _intervene(self, index: int, args: Any, out: Any) -> Any:
        """Let the hook of node ``index`` see (and replace) the op's output."""
        new = self.hooks[index](self.rec.nodes[index], args, out)
        if new is not out and isinstance(new, torch.Tensor):
            self.node_of[id(new)] = index
            self._hold(new)
            if self.rec.keep_values:
                self.rec.values[index] = new
        return new

    def _is_static_param(self, t: torch.Tensor) -> bool:
        return isinstance(t, nn.Parameter) or self.static.get(id(t), (False, False))[0]

    def _is_weight(self, t: torch.Tensor) -> bool:
        if isinstance(t, nn.Parameter):
            return t.dim() >= 2
        return self.static.get(id(t), (False, False))[1] and t.dim() >= 2

    def _record_static(self, name: str, ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        from_params = name not in SHAPE_ONLY_OPS and any(map(self._is_static_param, ins))
        # a weight reshaped or rescaled elementwise is still one (``self.weight.t()``, spectral
        # norm's ``w / sigma``); a weight applied to a constant (``W_hh h_0``) or looked up
        # (T5's relative-position bias) is not
        first = ins[0] if ins else None
        weight = first is not None and self._is_weight(first)
        weight = weight and all(t.numel() == first.numel() for t in outs)  # type: ignore[union-attr]
        for t in outs:
            self.node_of.pop(id(t), None)
            self.static[id(t)] = (from_params, weight)
            self._hold(t)

    def _record(
        self, name: str, args: Any, ins: list[torch.Tensor], outs: list[torch.Tensor]
    ) -> None:
        data = [t for t in ins if id(t) in self.node_of]
        if not data or name in SHAPE_ONLY_OPS:
            self._record_static(name, ins, outs)
            return
        parents = tuple(dict.fromkeys(self.node_of[id(t)] for t in data))
        statics = [t for t in ins if id(t) not in self.node_of and self._is_static_param(t)]
        flags = {
            "weight": name not in _ADDITIVE and any(map(self._is_weight, statics)),
            "params": bool(statics),
            "gather": _gathers(data),
            "operands": self._operands(name, args),
            "factor": self._factor(name, args),
        }
        for i, t in enumerate(outs):
            self._new_node(t, name if i == 0 else f"{name}.{i}", name, parents, **flags)

    def _new_node(
        self, t: torch.Tensor, label: str, op: str, parents: tuple[int, ...], **flags: Any
    ) -> None:
        index = len(self.rec.nodes)
        node = Node(
            index, label if op == "input" else f"{label}_{index}", op,
            self.stack[-1] if self.stack else "", parents,
            dims=t.dim(), shape=tuple(t.shape), floating=t.is_floating_point(), **flags,
        )  # fmt: skip
        self.static.pop(id(t), None)
        self.node_of[id(t)] = index
        self._hold(t)
        self.rec.add(node, t)

    def _node(self, a: Any) -> int | None:
        return self.node_of.get(id(a)) if isinstance(a, torch.Tensor) else None

    def _operands(self, name: str, args: Any) -> tuple[int | None, ...]:
        if name in ADD_OPS | LERP_OPS:
            return tuple(self._node(a) for a in args[:2])
        if name in CAT_OPS and args and isinstance(args[0], list | tuple):
            return tuple(self._node(a) for a in args[0])
        return ()

    def _factor(self, name: str, args: Any) -> str:
        if name not in MUL_OPS | DIV_OPS or len(args) < 2:
            return ""
        data = [a for a in args[:2] if self._node(a) is not None]
        if len(data) != 1:
            return ""
        other = args[1] if data[0] is args[0] else args[0]
        if isinstance(other, torch.Tensor) and self._is_static_param(other):
            return "param"
        is_number = isinstance(other, numbers.Number) and not isinstance(other, bool)
        if name in MUL_OPS and is_number and other != 1:
            return "const"
        return ""


def _gathers(data: list[torch.Tensor]) -> bool:
    return any(t.dtype in _INTEGER for t in data) and any(t.is_floating_point() for t in data)


@contextmanager
def module_stack(model: nn.Module) -> Iterator[list[str]]:
    """Forward hooks on every submodule that keep the qualified names of the running modules."""
    stack: list[str] = []

    def push(name: str) -> Any:
        return lambda _m, _a: stack.append(name)

    def pop(_m: nn.Module, _a: Any, _o: Any) -> None:
        stack.pop()

    with ExitStack() as hooks:
        for name, m in model.named_modules():
            hooks.callback(m.register_forward_pre_hook(push(name)).remove)
            hooks.callback(m.register_forward_hook(pop, always_call=True).remove)
        yield stack


def record(
    model: nn.Module,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    hooks: Mapping[int, NodeHook] | None = None,
    grad: bool = False,
    keep_values: bool = True,
) -> Recording:
    """Run ``model(*args, **kwargs)`` once and record its data flow.

    Args:
        hooks: node index -> ``hook(node, args, output)``, called right after the op that makes
            that node ran; what it returns replaces the op's output in the model's forward pass
            (a lesion) or is the output itself (a probe that keeps the tensor). Node indices are
            those of an earlier recording of the same model on inputs of the same structure:
            a forward pass makes the same ops in the same order when its control flow does not
            depend on values. A hook should check ``node.op`` and ``node.module`` against what
            it expects (:func:`check_node`).
        grad: record with autograd on (the hooks see tensors that gradients flow through);
            default off.
        keep_values: keep every node's value (default); off, only the graph is kept (a pass
            over many examples that only needs its hooks), and the recording holds no tensor
            alive: its memory is that of the model's own forward pass.

    Returns:
        the :class:`Recording`, with ``output`` the model's return value.
    """
    kwargs = dict(kwargs or {})
    with module_stack(model) as stack, torch.set_grad_enabled(grad):
        recorder = _Recorder(stack, hooks, keep_values)
        recorder.mark_inputs(args, kwargs)
        try:
            with recorder:
                recorder.rec.output = model(*args, **kwargs)
        finally:
            recorder.release()
    return recorder.rec


def check_node(node: Node, op: str, module: str) -> None:
    """Raise when a re-run's node is not the op a hook was registered for.

    Raises:
        RuntimeError: the model's forward pass made other ops than in the recording the node
            index came from (control flow that depends on values or on the batch).
    """
    if node.op != op or node.module != module:
        raise RuntimeError(
            f"node {node.index} of this forward pass is {node.op!r} in "
            f"{node.module or '(root)'}, not {op!r} in {module or '(root)'} as when the merges "
            "were found: the model's forward pass takes another path on these inputs"
        )
