"""The loss landscape (Li et al. 2018) around the current weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skiplab._page import Figure
from skiplab.diagnostics.landscape import loss_line, loss_plane, plot_line, plot_plane
from skiplab.diagnostics.probes._base import Context, Probe, Section, register_probe


@register_probe
class Landscape(Probe):
    name = "landscape"
    title = "Loss landscape"
    order = 60
    needs_task = True
    trained = True
    default = False  # 31 + 225 loss evaluations: asked for by name
    about = (
        "Li et al. 2018: loss along one and two filter-normalised random directions around the "
        "current weights, on a fixed batch (biases and norm parameters not moved)."
    )

    def measure(self, ctx: Context) -> dict[str, Any]:
        assert ctx.task is not None
        ins, task = ctx.inputs, ctx.task
        line = loss_line(ctx.model, ins, task=task, alphas=np.linspace(-1, 1, 31))
        plane = loss_plane(ctx.model, ins, task=task, span=1.0, steps=15)
        return {"line": line.as_dict(), "plane": plane.as_dict(), "inputs": ins.describe()}

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        plot_line({"model": result["line"]}, figdir / "landscape_line.png",
                  "1-D loss along a filter-normalised direction")  # fmt: skip
        plot_plane({"model": result["plane"]}, figdir / "landscape_plane.png")
        sec.figures.append(
            Figure(f"{figdir.name}/landscape_line.png",
                   "Loss along one filter-normalised direction (0 = the current weights).")
        )  # fmt: skip
        sec.figures.append(
            Figure(f"{figdir.name}/landscape_plane.png",
                   "Loss on the plane of two filter-normalised directions: contours and surface "
                   "(log10 loss).")
        )  # fmt: skip
        z = np.asarray(result["plane"]["loss"])
        sec.notes.append(
            f"Centre loss {z[z.shape[0] // 2, z.shape[1] // 2]:.4g}, grid max {np.nanmax(z):.4g}, "
            f"on fixed inputs {result['inputs']}."
        )
