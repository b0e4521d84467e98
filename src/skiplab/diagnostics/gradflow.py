"""Gradient flow: per-block gradient norms, and how a skip splits the gradient.

For a residual block ``y = s(x) + F(x)`` the gradient reaching the block input is
``dL/dx = dL/dy (ds/dx + dF/dx)``: the shortcut's share ``dL/dy ds/dx`` (exactly ``dL/dy`` for
an identity shortcut) and the branch's share ``dL/dy dF/dx``. :class:`GradientFlowProbe` records
both shares' norms per block, and the norm of every block's parameter gradients, at every
backward pass (at init or during training).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, Task, infer_task
from skiplab.diagnostics._probe import AbstractProbe, find_blocks
from skiplab.nn import Residual


class GradientFlowProbe(AbstractProbe):
    """Per-block parameter-gradient norms and per-skip gradient split, per backward pass.

    Parameters outside every block (stem, head) form the groups ``"(before)"`` and
    ``"(after)"``. A new record starts at every forward pass of the model; passes without a
    backward (evaluation) leave no record.

    Args:
        split: also record the shortcut/branch split of the input gradient of every skiplab
            ``Residual`` block (full backward hooks, which cost more than the norm hooks).
        every: record one backward pass in ``every`` (default 1: all).
        blocks: the blocks to group parameters by, ``(name, module)`` in forward order
            (default: :func:`~skiplab.diagnostics.find_blocks` of the model; pass the blocks
            found with inputs for a model without skiplab blocks).

    Returns (``collect()``):
        ``groups`` (names), ``grad_norm`` (steps x groups: L2 norm of the group's parameter
        gradients), and with ``split`` ``split_blocks``, ``shortcut_grad`` and ``branch_grad``
        (steps x blocks: norm of each path's share of ``dL/dx``).
    """

    def __init__(
        self,
        split: bool = True,
        every: int = 1,
        blocks: Sequence[tuple[str, nn.Module]] | None = None,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.split = split
        self.every = every
        self.blocks = list(blocks) if blocks is not None else None
        self.groups: list[str] = []
        self.split_blocks: list[str] = []
        self._step = -1
        self._sq: dict[int, torch.Tensor] = {}
        self._owner = torch.zeros(0, dtype=torch.long)
        self._split: dict[int, torch.Tensor] = {}
        self._params: list[torch.Tensor] = []
        self._residuals: list[Residual] = []

    def __repr__(self) -> str:
        return f"GradientFlowProbe(split={self.split}, every={self.every})"

    def _attach(self, model: nn.Module) -> None:
        blocks = self.blocks if self.blocks is not None else find_blocks(model)
        owner: dict[int, int] = {}
        self.groups = ["(before)"] + [name for name, _ in blocks] + ["(after)"]
        for gi, (_, block) in enumerate(blocks, start=1):
            for p in block.parameters():
                owner.setdefault(id(p), gi)
        seen_block = False
        for p in model.parameters():
            if id(p) in owner:
                seen_block = True
                continue
            owner[id(p)] = len(self.groups) - 1 if seen_block else 0
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._owner = torch.tensor([owner[id(p)] for p in self._params], dtype=torch.long)
        if self.split:
            residuals = [(n, b) for n, b in blocks if isinstance(b, Residual) and b.shortcut]
            self.split_blocks = [n for n, _ in residuals]
            self._residuals = [b for _, b in residuals]
        self._keep(model.register_forward_pre_hook(self._new_step))

    def _new_step(self, _module: nn.Module, _args: Any) -> None:
        # the hooks of the previous recorded pass have fired by now (its backward is done)
        self._release_step()
        self._step += 1
        if self._step % self.every:
            return
        # one hook per backward pass for all parameters, and one fused norm over their grads
        self._keep_step(
            torch.autograd.graph.register_multi_grad_hook(self._params, self._norms, mode="all")  # type: ignore[arg-type]
        )
        for bi, block in enumerate(self._residuals):
            assert block.shortcut is not None
            self._keep_step(block.shortcut.register_full_backward_hook(self._split_hook(bi, 0)))
            self._keep_step(block.branch.register_full_backward_hook(self._split_hook(bi, 1)))

    def _norms(self, grads: Sequence[torch.Tensor | None]) -> None:
        present = [(i, g) for i, g in enumerate(grads) if g is not None]
        if not present:
            return
        norms = torch._foreach_norm([g.detach() for _, g in present])
        sq = torch.stack(norms).float().cpu() ** 2
        idx = self._owner[[i for i, _ in present]]
        acc = self._sq.get(self._step)
        if acc is None:
            acc = self._sq[self._step] = torch.zeros(len(self.groups))
        acc.index_add_(0, idx, sq)

    def _split_hook(self, block: int, path: int) -> Callable[..., None]:
        def hook(_m: nn.Module, grad_input: tuple[Any, ...], _grad_output: Any) -> None:
            g = grad_input[0]
            if g is None:
                return
            acc = self._split.get(self._step)
            if acc is None:
                acc = self._split[self._step] = torch.zeros(len(self.split_blocks), 2)
            acc[block, path] = g.detach().float().norm().cpu()

        return hook

    def collect(self) -> dict[str, Any]:
        steps = sorted(self._sq)
        out: dict[str, Any] = {
            "groups": list(self.groups),
            "steps": steps,
            "grad_norm": [self._sq[s].sqrt().tolist() for s in steps],
        }
        if self.split:
            ssteps = sorted(self._split)
            out["split_blocks"] = list(self.split_blocks)
            out["split_steps"] = ssteps
            out["shortcut_grad"] = [self._split[s][:, 0].tolist() for s in ssteps]
            out["branch_grad"] = [self._split[s][:, 1].tolist() for s in ssteps]
        return out

    def detach(self) -> None:
        super().detach()


def gradient_flow_at_init(
    model: nn.Module,
    inputs: tuple[Any, ...],
    target: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    split: bool = True,
) -> dict[str, Any]:
    """One forward and backward pass with a :class:`GradientFlowProbe` attached.

    Batch-norm layers use batch statistics and no buffer is updated; the model's gradients are
    cleared afterwards.
    """
    from skiplab.diagnostics._probe import batch_statistics

    probe = GradientFlowProbe(split=split)
    with batch_statistics(model), probe.attached(model):
        model.zero_grad(set_to_none=True)
        loss_fn(model(*inputs), target).backward()
        result = probe.collect()
    model.zero_grad(set_to_none=True)
    return result


def gradient_split(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    task: Task | None = None,
) -> dict[str, Any]:
    """Shortcut/branch split of the gradient at every residual add of any model.

    One recorded forward pass with autograd keeps each add ``m = s + b``, its operands and its
    fork ``x``; the two shares of ``dL/dx`` are the vector-Jacobian products
    ``(ds/dx)^T dL/dm`` and ``(db/dx)^T dL/dm``. Batch-norm layers use batch statistics and
    nothing is updated. The adds are found on the first two examples (node indices of a
    forward pass that takes the same path on the whole batch); a tensor an in-place op later
    overwrites (``out += identity``) is kept as it was, the model going on with a copy.

    Args:
        inputs: anything :meth:`Inputs.of` takes (a tuple of positional arguments).
        target, loss_fn: ``loss_fn(primary(output), target)`` when ``loss_fn`` is given.
        task: the :class:`Task` (inferred from ``target`` when None and no ``loss_fn``).

    Returns:
        ``merges`` (node names), ``modules`` (owners), ``branch_modules`` (the module each
        branch starts in), ``names`` (:func:`merge_names`), ``blocks``, ``shortcut_grad`` and
        ``branch_grad`` (norms), ``method`` ("forward").
    """
    from skiplab.diagnostics._probe import batch_statistics, merge_block
    from skiplab.diagnostics._record import check_node, record
    from skiplab.diagnostics.skips import find_skips

    ins = Inputs.of(inputs)
    if task is None:
        with batch_statistics(model), torch.no_grad():  # its forward pass updates nothing
            task = infer_task(model, ins, target=target, loss_fn=loss_fn)
    # the adds are found on two examples: that recording keeps every value, and on the whole
    # batch it would hold all activations next to the autograd graph of the pass below
    head = ins.head(2)
    with batch_statistics(model):
        report = find_skips(model, head.args, kwargs=head.kwargs, use_fx=False)
    merges = [m for m in report.merges if m.kind == "residual" and m.nodes is not None]
    out: dict[str, Any] = {
        "merges": [],
        "modules": [],
        "branch_modules": [],
        "blocks": [],
        "shortcut_grad": [],
        "branch_grad": [],
        "method": "forward",
    }
    if not merges:
        return {**out, "names": []}
    kept: dict[int, torch.Tensor] = {}
    # a tensor a later in-place op writes to (``out += identity`` writes the sum into the
    # branch's output, ``nn.ReLU(inplace=True)`` rectifies the add's output) would no longer be
    # the node's value: the model goes on with a copy, and the node keeps its own tensor
    assert report.recording is not None  # use_fx=False: the recorded pass found the merges
    found = report.recording.nodes
    overwritten = report.recording.overwritten
    report.recording.values.clear()  # the merges are found: not held through the pass below

    lost = _summed_into(merges, found)

    def keep(node: Any, _args: Any, value: Any) -> Any:
        check_node(node, found[node.index].op, found[node.index].module)
        kept[node.index] = value
        if node.index in overwritten - lost and isinstance(value, torch.Tensor):
            return value.clone()
        return value

    wanted = {i for m in merges for i in dataclasses.astuple(m.nodes)}  # type: ignore[arg-type]
    floating = ins.floating()
    run = ins
    if floating is not None:
        run = ins.replace(floating[0], floating[1].detach().requires_grad_(True))
    with batch_statistics(model):
        rec = record(
            model,
            run.args,
            run.kwargs,
            hooks=dict.fromkeys(wanted, keep),
            grad=True,
            keep_values=False,
        )
        for i in wanted - set(kept):  # forks that are model inputs
            name = rec.nodes[i].name
            if floating is not None and name in (f"input{floating[0]}", floating[0]):
                kept[i] = run.floating()[1]  # type: ignore[index]
        loss = task.loss(rec.output, ins)
        g_merge = torch.autograd.grad(
            loss,
            [kept[m.nodes.merge] for m in merges],  # type: ignore[union-attr]
            retain_graph=True,
            allow_unused=True,
        )
        for m, g in zip(merges, g_merge):
            assert m.nodes is not None
            out["merges"].append(m.name)
            out["modules"].append(m.module)
            out["branch_modules"].append(m.branch_module)
            out["blocks"].append(merge_block(model, m))
            short, branch = _shares(m.nodes, kept, g, lost)
            out["shortcut_grad"].append(short)
            out["branch_grad"].append(branch)
    out["names"] = merge_names(out["modules"], out["branch_modules"])
    return out


def _summed_into(merges: Sequence[Any], nodes: Sequence[Any]) -> set[int]:
    """The operands an in-place add writes its sum into (``out += identity``: the branch),
    where they are nothing else (no fork, no other merge's operand): they are not copied for
    :func:`gradient_split`, whose share for them is the add's total minus the other operand's
    (on a ResNet-50 with 16 images, a copy of every block's branch output is 0.35 GB)."""
    from skiplab.diagnostics._record import _mutates

    roles: dict[int, int] = {}
    for m in merges:
        for i in set(dataclasses.astuple(m.nodes)):
            roles[i] = roles.get(i, 0) + 1
    lost = set()
    for m in merges:
        node = nodes[m.nodes.merge]
        if _mutates(node.op, {}) and node.operands and node.operands[0] is not None:
            first = node.operands[0]
            if roles.get(first) == 1 and first != m.nodes.fork:
                lost.add(first)
    return lost


def _shares(
    nodes: Any, kept: dict[int, torch.Tensor], g: torch.Tensor | None, lost: set[int]
) -> tuple[float, float]:
    """Norms of the shortcut's and the branch's share of ``dL/dx`` at one add: the
    vector-Jacobian products ``(ds/dx)^T g`` and ``(db/dx)^T g`` with ``g = dL/dm``."""
    fork = kept.get(nodes.fork)
    if g is None or fork is None or not fork.requires_grad:
        return 0.0, 0.0

    def vjp(i: int) -> torch.Tensor | None:
        (gx,) = torch.autograd.grad(
            kept[i], fork, grad_outputs=g, retain_graph=True, allow_unused=True
        )
        return gx

    shares: dict[int, torch.Tensor | None] = {}
    for i in (nodes.shortcut, nodes.branch):
        if i not in lost:
            shares[i] = vjp(i)
    for i in (nodes.shortcut, nodes.branch):
        if i in lost:  # its tensor now holds the sum: the total less the other share
            total = vjp(nodes.merge)
            other = next((v for k, v in shares.items() if k != i), None)
            shares[i] = total if other is None or total is None else total - other
    norm = {i: 0.0 if v is None else float(v.norm()) for i, v in shares.items()}
    return norm[nodes.shortcut], norm[nodes.branch]


def merge_names(modules: list[str], branches: list[str]) -> list[str]:
    """One name per merge, for tables, plots and logged tags: its owner, or the branch module it
    goes around where the owner has several merges (GPT-2's ``transformer.h.0.attn`` and
    ``transformer.h.0.mlp``), or ``<owner>[i]``."""
    owners = [m or "(root)" for m in modules]
    count = {o: owners.count(o) for o in owners}
    names = []
    for i, (owner, module, branch) in enumerate(zip(owners, modules, branches)):
        if count[owner] == 1:
            names.append(owner)
            continue
        siblings = [b for o, b in zip(owners, branches) if o == owner]
        inside = branch and (not module or branch.startswith(module + "."))
        if inside and siblings.count(branch) == 1:
            names.append(branch)
        else:
            names.append(f"{owner}[{owners[:i].count(owner)}]")
    # a branch's name can be another add's owner: those two fall back to the indexed form
    return [
        f"{o}[{owners[:i].count(o)}]" if names.count(n) > 1 else n
        for i, (n, o) in enumerate(zip(names, owners))
    ]
