"""Ancestry, weight-layer counts and operand shapes over a recorded forward pass.

The queries :mod:`skiplab.diagnostics.skips` asks of a graph to decide whether a merge is a
skip (``fork``, ``layers_between``, ``keeps_rank``, ``is_gate``, ``ungated``), answered on a
:class:`~skiplab.diagnostics._record.Recording` instead of a ``torch.fx`` graph, plus two that only
the recording can answer: which sub-module holds a path's weight layers, and whether an operand is
scaled.
"""

from __future__ import annotations

from collections.abc import Iterator

from skiplab.diagnostics._record import (
    ADD_OPS,
    CAT_OPS,
    LERP_OPS,
    MUL_OPS,
    PASS_THROUGH_OPS,
    SIGMOID_OPS,
    Recording,
)


def _bits(x: int) -> Iterator[int]:
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


class FlowGraph:
    """Graph queries over a :class:`Recording`; nodes are their indices."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.nodes = rec.nodes
        self.anc = rec.ancestors
        # a fork is a floating-point tensor: operands that share only an integer index tensor
        # (token ids, ``edge_index``) share no values
        self._forkable = sum(1 << n.index for n in self.nodes if n.floating)

    def region(self, fork: int, n: int) -> list[int]:
        """Nodes on the way from ``fork`` to ``n``: descendants of the fork, ancestors of n, and n."""
        inside = [
            m for m in _bits(self.anc[n] >> (fork + 1) << (fork + 1)) if self.anc[m] >> fork & 1
        ]
        return [*inside, n]

    def layers_between(self, fork: int, n: int) -> tuple[int, int]:
        """(weight layers, weight layers and message-passing ops) from ``fork`` to ``n``.

        Unlike fx's count, a bias, a norm's affine weights or a scale alone do not make a
        branch: a GRU's first step adds its hidden bias ``b_hh`` (all that is left of
        ``W_hh h_0`` with ``h_0 = 0``) to ``W_ir x``, and that is no skip.
        """
        region = [self.nodes[m] for m in self.region(fork, n)]
        return sum(m.weight for m in region), sum(m.weight or m.gather for m in region)

    def keeps_rank(self, fork: int, n: int) -> bool:
        """No tensor between ``fork`` and ``n`` has fewer dims than the fork (see ``_Graph``)."""
        rank = self.nodes[fork].dims
        return all(self.nodes[m].dims >= rank for m in self.region(fork, n))

    def fork(self, a: int, b: int) -> int | None:
        """The latest tensor both ``a`` and ``b`` come from (one of them if it feeds the other)."""
        if self.anc[b] >> a & 1:
            return a
        if self.anc[a] >> b & 1:
            return b
        common = self.anc[a] & self.anc[b] & self._forkable
        return common.bit_length() - 1 if common else None

    def is_gate(self, n: int) -> bool:
        """A gate-weighted term: ``g * x`` with ``g`` (or ``1 - g``) from a sigmoid."""
        node = self.nodes[n]
        if node.op not in MUL_OPS or len(node.parents) != 2:
            return False
        return any(self._is_gate_factor(p) for p in node.parents)

    def ungated(self, n: int) -> int:
        """The value a gate-weighted term ``g * v`` weighs (``n`` itself if not one)."""
        if not self.is_gate(n):
            return n
        return next((p for p in self.nodes[n].parents if not self._is_gate_factor(p)), n)

    def _is_gate_factor(self, a: int) -> bool:
        # ``1 - g`` or ``g.unsqueeze(...)``: look one step back from the factor
        near = (a, *self.nodes[a].parents)
        return any(self.nodes[m].op in SIGMOID_OPS for m in near)

    def is_scaled(self, n: int, steps: int = 6) -> bool:
        """``n`` is a product with a parameter or a constant (LayerScale, ReZero, ``alpha * x``),
        possibly seen through reshapes, permutes and dropout."""
        for _ in range(steps):
            node = self.nodes[n]
            if node.factor:
                return True
            if node.op not in PASS_THROUGH_OPS or len(node.parents) != 1:
                return False
            n = node.parents[0]
        return False

    def holder(self, fork: int, n: int, owner: str) -> str:
        """The module that holds the weight layers between ``fork`` and ``n``: the deepest module
        containing all of them, or the owner's child containing them when that lies inside the
        owner ("" when the path has no weight layer, e.g. an identity shortcut)."""
        if n == fork:
            return ""
        names = [self.nodes[m].module for m in self.region(fork, n) if self.nodes[m].weight]
        if not names:
            return ""
        parts = [name.split(".") if name else [] for name in names]
        common: list[str] = []
        for atoms in zip(*parts):
            if len(set(atoms)) != 1:
                break
            common.append(atoms[0])
        own = owner.split(".") if owner else []
        if len(common) > len(own) and common[: len(own)] == own:
            common = common[: len(own) + 1]
        return ".".join(common)

    def candidate(self, n: int) -> tuple[str, list[int]] | None:
        """``(kind, operands)`` when node ``n`` merges two or more input-dependent tensors."""
        node = self.nodes[n]
        ops = [o for o in node.operands if o is not None]
        if node.op in ADD_OPS and len(ops) == 2 == len(node.operands):
            return ("gated" if any(map(self.is_gate, ops)) else "residual"), ops
        if node.op in CAT_OPS and len(ops) >= 2:
            return "concat", ops
        if node.op in LERP_OPS and len(ops) == 2:
            return "gated", ops
        return None
