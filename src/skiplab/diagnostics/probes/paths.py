"""Paths (Veit et al. 2016): how many input-output paths there are, how long, and how much
gradient the paths of each length carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skiplab.diagnostics.paths import graph_paths, model_block_paths, path_gradient_contribution
from skiplab.diagnostics.probes._base import Context, Probe, Section, register_probe
from skiplab.nn import Residual

#: Examples the gradient contribution is measured on: it takes 3 backward passes per path
#: length, each through a recorded forward pass.
EXAMPLES = 4


@register_probe
class Paths(Probe):
    name = "paths"
    title = "Paths"
    order = 50
    about = (
        "Veit et al. 2016: number and length distribution of input-output paths in the model's "
        "computation graph (in weight layers) and in its chain of residual blocks, and how much "
        "gradient paths of each length carry."
    )

    def measure(self, ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {"notes": []}
        try:
            out["graph"] = graph_paths(ctx.report).as_dict()
        except ValueError as err:
            out["notes"].append(f"No computation-graph paths: {str(err).rstrip('.')}.")
        if any(isinstance(b, Residual) for _, b in ctx.blocks):
            out["blocks"] = model_block_paths(ctx.model).as_dict()
        if not any(m.kind == "residual" for m in ctx.report.merges):
            out["notes"].append("No residual merge, so no gradient contribution by path length.")
        elif ctx.task is None:
            out["notes"].append("No loss to differentiate, so no gradient contribution by length.")
        else:
            ins, task = ctx.head(EXAMPLES)
            try:
                out["gradient"] = path_gradient_contribution(ctx.model, ins, task=task, samples=3)
            except ValueError as err:  # merges that do not form a chain (GCNII's x0 residual)
                why = str(err).rstrip(".")
                out["notes"].append(f"No gradient contribution by path length: {why}.")
        return out

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        from skiplab import _plot

        sec.notes.extend(result.get("notes", []))
        panels = [(t, result[k]) for k, t in (("graph", "computation graph"),
                                               ("blocks", "block chain")) if k in result]  # fmt: skip
        for title, d in panels:
            counts = np.asarray(d["counts"], dtype=float)
            lengths = np.flatnonzero(counts)
            mean = float((np.arange(len(counts)) * counts).sum() / counts.sum())
            sec.notes.append(
                f"{title.capitalize()}: {counts.sum():.6g} input-output paths, length "
                f"({d['unit']}) {lengths.min()}..{lengths.max()}, mean {mean:.2f}."
            )
        contrib = result.get("gradient")
        if not panels and not contrib:
            sec.notes.append("No path statistics could be computed, so there is no plot.")
            return
        fig, axes = _plot.subplots(1, len(panels) + bool(contrib), width=4.3, height=3.4)
        for ax, (title, d) in zip(axes[0], panels):
            counts = np.asarray(d["counts"], dtype=float)
            ax.bar(np.arange(len(counts)), counts / counts.sum(), color=_plot.RESIDUAL)
            ax.set(title=f"{title}: {d['total']:.3g} paths", xlabel=f"path length ({d['unit']})",
                   ylabel="fraction of paths")  # fmt: skip
        if contrib:
            ax = axes[0][-1]
            tot = np.asarray(contrib["total"])
            ax.bar(contrib["lengths"], tot / tot.sum(), color=_plot.RESIDUAL)
            ax.set(title="gradient contribution by path length", xlabel="path length (merges)",
                   ylabel="share of total gradient")  # fmt: skip
        sec.figure(
            figdir, fig, "paths.png",
            "Path-length distributions and, for residual blocks, the share of the input gradient "
            "carried by paths of each length (Veit et al. 2016, Fig. 6).",
        )  # fmt: skip
