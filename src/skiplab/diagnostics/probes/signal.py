"""Signal propagation plots (Brock et al. 2021): per-block output and branch statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skiplab._page import Table
from skiplab.diagnostics.probes._base import Context, Probe, Section, name_ticks, register_probe
from skiplab.diagnostics.signal import signal_propagation


@register_probe
class Signal(Probe):
    name = "signal"
    title = "Signal propagation"
    order = 20
    about = (
        "Brock et al. 2021: per block, average channel squared mean, average channel variance "
        "of the block output, and variance of the residual branch, at the current weights."
    )

    def measure(self, ctx: Context) -> dict[str, Any]:
        return signal_propagation(ctx.model, ctx.inputs.head(64))

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        from skiplab import _plot

        blocks = list(result["blocks"])
        if not blocks:
            sec.notes.append("The model has no blocks to measure, so there is no plot.")
            return
        fig, axes = _plot.subplots(1, 3, width=4.0, height=3.8)
        idx = np.arange(len(blocks))
        for ax, key, label in zip(
            axes[0], ("sq_mean", "var", "branch_var"),
            ("average channel squared mean", "average channel variance",
             "residual branch variance"),
        ):  # fmt: skip
            vals = np.asarray(result[key], dtype=float)
            ax.plot(idx, vals, "o-", color=_plot.RESIDUAL, ms=3)
            ax.set(title=label)
            name_ticks(ax, blocks, limit=16)
            finite = vals[np.isfinite(vals) & (vals > 0)]
            if finite.size and finite.max() / finite.min() > 20:
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", useOffset=False)
            if not finite.size:
                ax.text(0.5, 0.5, "no finite value:\nsee the reasons below", ha="center",
                        va="center", transform=ax.transAxes)  # fmt: skip
        sec.figure(
            figdir, fig, "signal.png",
            "Signal propagation plot (Brock et al. 2021), block outputs in forward order; branch "
            "variance is missing for blocks without a residual branch.",
        )  # fmt: skip
        reasons = result.get("reasons") or [""] * len(blocks)
        rows = zip(blocks, result["sq_mean"], result["var"], result["branch_var"], reasons)
        sec.tables.append(
            Table(
                "Per block",
                ["block", "squared mean", "variance", "branch variance", "why a value is missing"],
                [list(r) for r in rows],
            )
        )
