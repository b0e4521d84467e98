"""The merges found: residual adds, concatenations and gated mixes, by owning module."""

from __future__ import annotations

from pathlib import Path

from skiplab._page import Table
from skiplab.diagnostics.probes._base import Context, Probe, Section, name_ticks, register_probe
from skiplab.diagnostics.skips import SkipReport

_METHODS = {"fx": "torch.fx tracing", "forward": "the recorded forward pass"}
_COLORS = {"concat": "#2ca02c", "gated": "#9467bd"}


@register_probe
class Skips(Probe):
    name = "skips"
    title = "Skips"
    order = 10
    about = (
        "Every merge found in the model's forward pass: residual adds, concatenations and gated "
        "mixes, with the per-example L2 norm of the branch and shortcut operands (mean over the "
        "first two examples, at the current weights, batch statistics)."
    )

    def measure(self, ctx: Context) -> SkipReport:
        return ctx.report

    def page(self, sec: Section, result: SkipReport, figdir: Path) -> None:
        from skiplab import _plot

        merges = result.merges
        counts = result.as_dict()["counts"]
        methods = " and ".join(_METHODS[k] for k in sorted({m.method for m in merges}))
        sec.notes.append(
            f"Found by {methods or 'neither method'}: {counts['residual']} residual add(s), "
            f"{counts['concat']} concatenation(s), {counts['gated']} gated mix(es)."
            + (f" {result.note}." if result.note else "")
        )
        rows = [
            [m.kind, m.module or "(root)", m.branch_module or "-", m.scale or "-", m.method,
             m.shortcut_layers, m.branch_layers, m.shortcut_norm, m.branch_norm, m.ratio]
            for m in merges
        ]  # fmt: skip
        sec.tables.append(
            Table(
                "Merges",
                ["kind", "module", "branch module", "scaled", "found by", "layers (s)",
                 "layers (b)", "|shortcut|", "|branch|", "|branch| / |shortcut|"],
                rows,
                "module: the module whose forward performs the merge; layers: weight layers "
                "between the fork and the operand; norms are mean per-example L2",
            )
        )  # fmt: skip
        if not merges:
            sec.notes.append(
                "No merge was found, so there is no ratio plot: the model has no skips."
            )
            return
        fig, axes = _plot.subplots(1, 1, width=max(5.0, 0.3 * len(merges) + 2), height=3.8)
        ax = axes[0][0]
        colors = [_COLORS.get(m.kind, _plot.RESIDUAL) for m in merges]
        ax.bar(range(len(merges)), [m.ratio for m in merges], color=colors)
        ax.axhline(1.0, color=_plot.REFERENCE, ls="--", lw=1)
        name_ticks(ax, [m.module or "(root)" for m in merges])
        ax.set(ylabel="|branch| / |shortcut|", title="branch-to-shortcut ratio per merge")
        ax.set_yscale("log")
        sec.figure(
            figdir, fig, "skips.png",
            "Branch-to-shortcut norm ratio of every merge, labelled by its module (log scale; "
            "blue residual, green concatenation, purple gated).",
        )  # fmt: skip
