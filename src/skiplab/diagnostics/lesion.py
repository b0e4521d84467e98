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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, Task, _tensors, batches, infer_task, primary
from skiplab.diagnostics._probe import _skip_modules, eval_mode, find_blocks
from skiplab.diagnostics._record import Node, NodeHook, check_node, record
from skiplab.diagnostics.skips import Merge, find_skips
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
    """Scores after deletions.

    Args:
        base: score of the intact model.
        single: unit name -> score with that unit deleted.
        random: ``k`` -> scores with ``k`` random deletable units deleted (one per draw).
        not_deletable: units whose deletion is undefined (shape-changing plain layers).
        metric: what the scores are (the task's ``metric_name``).
        units: unit name -> its owner module (a residual merge) or its kind (a block).
    """

    base: float
    single: dict[str, float] = field(default_factory=dict)
    random: dict[int, list[float]] = field(default_factory=dict)
    not_deletable: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    units: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "single": self.single,
            "random": {str(k): v for k, v in self.random.items()},
            "not_deletable": self.not_deletable,
            "metric": self.metric,
            "units": self.units,
        }


def _in_place(op: str) -> bool:
    return op.startswith("__i") or (op.endswith("_") and not op.startswith("__"))


def _merge_hook(merge: Merge, node: Node) -> NodeHook:
    """A hook that replaces the output of ``merge``'s add by its shortcut operand."""
    assert merge.nodes is not None
    pos = node.operands.index(merge.nodes.shortcut)
    op = node.op

    def hook(n: Node, args: Any, out: Any) -> Any:
        check_node(n, op, merge.module)
        if not _in_place(op):
            return args[pos]
        if pos != 0:  # x += branch-less shortcut: x now holds the sum, overwrite it
            args[0].copy_(args[pos])
        else:  # the shortcut was overwritten by the sum: take the branch back out
            args[0].sub_(args[1 - pos] if len(args) > 1 else 0)
        return args[0]

    return hook


def _block_identity(block: nn.Module) -> Any:
    def hook(_m: nn.Module, args: Any, kwargs: Any, out: Any) -> Any:
        x = next(iter(_tensors((args, kwargs))))
        if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
            return (x, *out[1:])
        return x

    return block.register_forward_hook(hook, with_kwargs=True)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    return next(iter(_tensors(obj)), None)


def _identity_blocks(model: nn.Module, inputs: Inputs) -> tuple[list[str], list[str]]:
    shapes: dict[str, tuple[Any, Any]] = {}
    blocks = find_blocks(model, inputs)
    handles = []
    for n, b in blocks:

        def post(_m: nn.Module, a: Any, kw: Any, o: Any, n: str = n) -> None:
            x, y = _first_tensor((a, kw)), _first_tensor(o)
            shapes[n] = (None if x is None else x.shape, None if y is None else primary(o).shape)

        handles.append(b.register_forward_hook(post, with_kwargs=True))
    try:
        with eval_mode(model), torch.no_grad():
            inputs.head(2)(model)
    finally:
        for h in handles:
            h.remove()
    ok = [
        n
        for n, _ in blocks
        if n in shapes and shapes[n][0] is not None and shapes[n][0] == shapes[n][1]
    ]
    return ok, [n for n, _ in blocks if n not in ok]


def _weighted(task: Task, out: Any, chunk: Inputs) -> tuple[float, float]:
    """(score x weight, weight) of one chunk; an accuracy's is its exact count of hits."""
    score = task.score(out, chunk)
    if task.kind == "classification" and isinstance(task.target, torch.Tensor):
        n = task.target.numel()
        return float(round(score * n)), float(n)
    if task.kind == "next-token":
        n = primary(out)[:, :-1].shape[:2].numel()
        return float(round(score * n)), float(n)
    w = float(chunk.batch_size) if chunk.batched else 1.0
    return score * w, w


def _merge_units(model: nn.Module, ins: Inputs) -> dict[str, tuple[Merge, Node]]:
    """Every residual add of the forward pass, by its branch module (or ``"<owner> [k]"``)."""
    head = ins.head(2)
    report = find_skips(model, head.args, kwargs=head.kwargs, mode="eval", use_fx=False)
    found = [m for m in report.merges if m.kind == "residual" and m.nodes is not None]
    merges: dict[str, tuple[Merge, Node]] = {}
    if not found or report.recording is None:
        return merges
    rec = report.recording
    counts: dict[str, int] = {}
    for m in found:
        counts[m.branch_module] = counts.get(m.branch_module, 0) + 1
    per_owner: dict[str, int] = {}
    for m in found:
        assert m.nodes is not None
        if m.branch_module and counts[m.branch_module] == 1:
            name = m.branch_module
        else:
            k = per_owner.get(m.module, 0)
            per_owner[m.module] = k + 1
            name = f"{m.module or '(root)'} [{k}]"
        merges[name] = (m, rec.nodes[m.nodes.merge])
    return merges


def _score(
    model: nn.Module,
    ins: Inputs,
    task: Task,
    batch_size: int,
    deleted: Sequence[str],
    mode: str,
    merges: dict[str, tuple[Merge, Node]],
) -> float:
    total, acc = 0.0, 0.0
    with eval_mode(model), torch.no_grad(), ExitStack() as stack:
        if mode == "skiplab":
            stack.enter_context(lesioned(model, deleted))
        elif mode == "identity":
            for n in deleted:
                stack.callback(_block_identity(model.get_submodule(n)).remove)
        hooks = {}
        for n in deleted if mode == "merge" else ():
            m, node = merges[n]
            assert m.nodes is not None
            hooks[m.nodes.merge] = _merge_hook(m, node)
        for chunk, t in batches(ins, task, batch_size):
            if mode == "merge":
                out = record(model, chunk.args, chunk.kwargs, hooks=hooks, keep_values=False).output
            else:
                out = chunk(model)
            acc_w, w = _weighted(t, out, chunk)
            acc += acc_w
            total += w
    return acc / max(total, 1.0)


def _block_kind(block: nn.Module) -> str:
    return "shortcut" if isinstance(block, Residual) and block.shortcut is not None else "identity"


def lesion_study(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    task: Task | None = None,
    ks: Sequence[int] = (),
    draws: int = 5,
    seed: int = 0,
    batch_size: int = 1000,
) -> LesionResult:
    """The task's score after deleting each unit, and ``k`` random units at a time.

    Units: the blocks of a skiplab model (a ``Residual`` loses its branch, a plain block becomes
    the identity); else every residual add found in the forward pass (deleted: its output is its
    shortcut operand), named by its branch module; else the model's blocks, replaced by the
    identity where their output has their input's shape.

    Args:
        inputs: anything :meth:`Inputs.of` takes (a tensor ``x``).
        target: labels (``y``); None for next-token prediction.
        task: the :class:`Task`; inferred from the output and ``target`` when None.
        ks: numbers of units to delete together (Veit et al. Fig. 5b); sizes larger than the
            number of deletable units are left out.
        draws: random subsets per ``k``.
        seed: seed of the subsets.
    """
    ins = Inputs.of(inputs)
    if task is None:
        with eval_mode(model):
            task = infer_task(model, ins, target=target)
    merges: dict[str, tuple[Merge, Node]] = {}
    if _skip_modules(model):
        ok, not_ok = deletable_blocks(model, ins.head(2).args)
        kinds = {n: _block_kind(model.get_submodule(n)) for n in ok}
        mode = "skiplab"
    elif merges := _merge_units(model, ins):
        ok, not_ok, mode = list(merges), [], "merge"
        kinds = {n: m.module for n, (m, _) in merges.items()}
    else:
        ok, not_ok = _identity_blocks(model, ins)
        kinds, mode = dict.fromkeys(ok, "identity"), "identity"

    def score(deleted: Sequence[str]) -> float:
        return _score(model, ins, task, batch_size, deleted, mode, merges)

    result = LesionResult(score([]), not_deletable=not_ok, metric=task.metric_name, units=kinds)
    for name in ok:
        result.single[name] = score([name])
    rng = random.Random(seed)
    for k in ks:
        if k > len(ok):
            continue
        result.random[k] = []
        for _ in range(draws):
            result.random[k].append(score(rng.sample(ok, k)))
    return result
