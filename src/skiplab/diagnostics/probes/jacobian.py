"""Spectral norm of each block's input-output Jacobian, and of the whole network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skiplab._page import Table
from skiplab.diagnostics.jacobian import block_spectral_norms
from skiplab.diagnostics.probes._base import Context, Probe, Section, name_ticks, register_probe


@register_probe
class Jacobian(Probe):
    name = "jacobian"
    title = "Jacobian spectral norms"
    order = 40
    about = (
        "Spectral norm of each block's input-output Jacobian (Lanczos bidiagonalisation with "
        "torch.func jvp/vjp, one example, batch statistics, attention on the math SDPA kernel; "
        "'converged' means the estimate settled and passed a singular-vector residual check); 1 "
        "means the block neither amplifies nor damps any input direction."
    )

    def measure(self, ctx: Context) -> dict[str, Any]:
        return block_spectral_norms(ctx.model, ctx.inputs)

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        from skiplab import _plot

        blocks = list(result["blocks"])
        if blocks:
            fig, axes = _plot.subplots(1, 1, width=max(6.0, 0.3 * len(blocks) + 2), height=3.8)
            ax = axes[0][0]
            ax.plot(range(len(blocks)), result["sigma"], "o-", color=_plot.RESIDUAL, ms=3)
            ax.axhline(1.0, color=_plot.REFERENCE, ls="--", lw=1, label="1 (norm-preserving)")
            ax.set(ylabel="sigma_max(dy/dx)", title="block Jacobian spectral norms", yscale="log")
            name_ticks(ax, blocks)
            ax.legend()
            sec.figure(
                figdir, fig, "jacobian.png",
                "Largest singular value of each block's input-output Jacobian, by block.",
            )  # fmt: skip
        else:
            sec.notes.append("The model has no blocks to measure, so there is no plot.")
        if "network" in result:
            sec.notes.append(
                f"Whole network (input to output): spectral norm {result['network']:.4g} after "
                f"{result['network_iterations']} Lanczos iterations"
                + ("." if result.get("network_converged") else " (not converged: a lower bound).")
            )
        if result.get("network_note"):
            sec.notes.append(str(result["network_note"]))
        errors = result.get("errors") or [""] * len(blocks)
        rows = zip(blocks, result["sigma"], result["iterations"], result["converged"], errors)
        sec.tables.append(
            Table(
                "Per block",
                ["block", "sigma_max", "iterations", "converged", "error"],
                [list(r) for r in rows],
            )
        )
