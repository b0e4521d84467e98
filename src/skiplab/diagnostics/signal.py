"""Signal propagation plots (Brock, De & Smith 2021, "Characterizing signal propagation to close
the performance gap in unnormalized ResNets", section 3).

For the output ``x`` of every block, over batch and positions ``n`` and channels ``c``:

    average channel squared mean  = mean_c( mean_n(x)^2 )
    average channel variance      = mean_c( var_n(x) )

and, for residual blocks, the average channel variance of the branch output before the add.
In a pre-activation ResNet the variance grows roughly linearly with depth within a stage and is
reset by each transition block; a post-activation network renormalises after every add.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, primary
from skiplab.diagnostics._probe import (
    AbstractProbe,
    batch_statistics,
    channel_stats_tensor,
    find_blocks,
    resolve_layout,
)
from skiplab.diagnostics._record import unrecorded
from skiplab.nn import Residual


class SignalPropagationProbe(AbstractProbe):
    """Brock et al.'s per-block statistics on every ``every``-th forward pass.

    Args:
        layout: ``"auto"``, ``"NCHW"``, ``"NCL"``, ``"BTC"`` (channels last) or ``"BC"``.
        every: record one forward pass in ``every`` (default 1: all).

    Returns (``collect()``):
        ``blocks`` (names) and, per recorded pass, ``sq_mean``, ``var`` and ``branch_var``
        (one value per block; NaN where a block has no residual branch).
    """

    def __init__(
        self,
        layout: str = "auto",
        every: int = 1,
        blocks: list[tuple[str, nn.Module]] | None = None,
    ) -> None:
        super().__init__()
        self._given = blocks
        resolve_layout(layout, torch.zeros(1, 1))  # validates the name
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.layout = layout
        self.every = every
        self.blocks: list[str] = []
        self._calls = -1
        self._records: list[dict[str, list[Any]]] = []
        self._current: dict[str, list[Any]] | None = None
        self._layouts: dict[int, str] = {}
        self._block_modules: list[nn.Module] = []

    def __repr__(self) -> str:
        return f"SignalPropagationProbe(layout={self.layout!r}, every={self.every})"

    def _attach(self, model: nn.Module) -> None:
        blocks = self._given if self._given is not None else find_blocks(model)
        self.blocks = [n for n, _ in blocks]
        self._block_modules = [b for _, b in blocks]
        self._keep(model.register_forward_pre_hook(self._start))
        self._keep(model.register_forward_hook(self._end))

    def _layout_of(self, t: torch.Tensor) -> str:
        # resolved once per rank: "auto" looks through the model's modules
        layout = self._layouts.get(t.dim())
        if layout is None:
            layout = self._layouts[t.dim()] = resolve_layout(self.layout, t, self.model)
        return layout

    def _start(self, _module: nn.Module, _args: Any) -> None:
        self._release_step()
        self._calls += 1
        if self._calls % self.every:
            self._current = None
            return
        n = len(self.blocks)
        nan = float("nan")
        self._current = {"sq_mean": [nan] * n, "var": [nan] * n, "branch_var": [nan] * n}
        self._records.append(self._current)
        for i, block in enumerate(self._block_modules):
            self._keep_step(block.register_forward_hook(self._out_hook(i)))
            if isinstance(block, Residual):
                # drop_path's output is the branch exactly as it enters the add
                self._keep_step(block.drop_path.register_forward_hook(self._branch_hook(i)))

    def _end(self, _module: nn.Module, _args: Any, _out: Any) -> None:
        self._release_step()

    def _out_hook(self, i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if self._current is None:
                return
            out = primary(out)  # a transformer block returns a tuple: its hidden states first
            with unrecorded():  # inside a recorded pass: statistics are no nodes of the model
                stats = channel_stats_tensor(out, self._layout_of(out))
            self._current["sq_mean"][i] = stats[0]  # tensors until collect(): no sync per hook
            self._current["var"][i] = stats[1]

        return hook

    def _branch_hook(self, i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if self._current is None:
                return
            with unrecorded():
                self._current["branch_var"][i] = channel_stats_tensor(out, self._layout_of(out))[1]

        return hook

    def collect(self) -> dict[str, Any]:
        return {
            "blocks": list(self.blocks),
            "layout": self.layout,
            "records": [
                {k: [float(v) for v in vals] for k, vals in r.items()} for r in self._records
            ],
        }


def signal_propagation(model: nn.Module, inputs: Any, layout: str = "auto") -> dict[str, Any]:
    """Brock et al.'s statistics for one forward pass at the current weights (batch statistics
    in batch-norm layers, nothing updated), on any model and its real inputs (a tensor, a tuple,
    keyword arguments or :class:`~skiplab.diagnostics.Inputs`).

    Blocks are those :func:`~skiplab.diagnostics.find_blocks` finds on the inputs; a block's
    output is its main tensor (:func:`~skiplab.diagnostics.primary`: a transformer block's
    hidden states). The branch variance of a skiplab ``Residual`` is that of its branch as it
    enters the add; of any other block, that of the branch operand of the last residual add
    inside it, from the recorded forward pass.

    Returns:
        ``blocks``, ``sq_mean``, ``var``, ``branch_var`` (lists over blocks), ``reasons`` (per
        block, "" or why a value is missing) and ``layout``.
    """
    from skiplab.diagnostics._record import record

    ins = Inputs.of(inputs)
    found = find_blocks(model)
    branches: dict[int, tuple[int, Any]] = {}  # block -> (node index, its node in discovery)
    if not any(isinstance(b, Residual) for _, b in found):
        found, branches = _branch_nodes(model, ins)
    probe = SignalPropagationProbe(layout, blocks=found)
    stats: dict[int, torch.Tensor] = {}  # node index -> channel statistics of the batch

    def hook(node: Any, _args: Any, value: Any) -> Any:
        seen = expected[node.index]
        if isinstance(value, torch.Tensor) and (node.op, node.module) == (seen.op, seen.module):
            stats[node.index] = channel_stats_tensor(value, resolve_layout(layout, value, model))
        return value

    expected = dict(branches.values())
    hooks = dict.fromkeys(expected, hook)
    with batch_statistics(model), probe.attached(model), torch.no_grad():
        if hooks:  # one pass: the block statistics and, from the recording, the branches'
            record(model, ins.args, ins.kwargs, hooks=hooks, keep_values=False)
        else:
            ins(model)
        rec = probe.collect()
    last = rec["records"][-1]
    blocks = rec["blocks"]
    reasons = [""] * len(blocks)
    for i, (idx, _) in branches.items():
        if idx in stats:
            last["branch_var"][i] = float(stats[idx][1])
    for i in range(len(found)):
        missing = [k for k in ("sq_mean", "var", "branch_var") if last[k][i] != last[k][i]]
        if "var" in missing:
            reasons[i] = "the block did not run in this forward pass"
        elif missing and i in branches:
            reasons[i] = (
                "the forward pass on the whole batch did not make the add found on its first "
                "two examples: no branch variance"
            )
        elif missing:
            reasons[i] = "no residual add in this block: no branch variance"
    return {"blocks": blocks, "layout": layout, "reasons": reasons, **last}


def _branch_nodes(
    model: nn.Module, ins: Inputs
) -> tuple[list[tuple[str, nn.Module]], dict[int, tuple[int, Any]]]:
    """The blocks owning the merges, and per block the branch operand of its last residual add
    (its node index and node), found on the first two examples: a recording that keeps every
    value of the whole batch would hold all its activations at once."""
    from skiplab.diagnostics._probe import merge_block
    from skiplab.diagnostics.skips import find_skips

    head = ins.head(2)
    report = find_skips(model, head.args, kwargs=head.kwargs, use_fx=False)
    found = find_blocks(model, merges=report.merges)
    branches: dict[int, tuple[int, Any]] = {}
    if report.recording is None:
        return found, branches
    for i, (name, _) in enumerate(found):
        inside = [
            m for m in report.merges
            if m.kind == "residual" and m.nodes is not None
            and (merge_block(model, m) == name or m.module.startswith(name + "."))
        ]  # fmt: skip
        if inside:
            idx = inside[-1].nodes.branch  # type: ignore[union-attr]
            branches[i] = (idx, report.recording.nodes[idx])
    return found, branches
