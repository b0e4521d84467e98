"""Gradient flow: each block's parameter-gradient norm, and how every residual merge splits the
gradient reaching its input between the shortcut and the branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skiplab._page import Table
from skiplab.diagnostics._probe import AbstractProbe, batch_statistics
from skiplab.diagnostics.gradflow import GradientFlowProbe, gradient_split
from skiplab.diagnostics.probes._base import Context, Probe, Section, name_ticks, register_probe

#: Examples the split and the norms are measured on (the first of the batch): the split keeps
#: the autograd graph of every merge's two shares, about 1.6 forward+backward passes of memory.
EXAMPLES = 8


@register_probe
class GradFlow(Probe):
    name = "gradflow"
    title = "Gradient flow"
    order = 30
    needs_task = True
    about = (
        "Gradient norm of each block's parameters (and, with training, over the training "
        "steps), and the split of the gradient reaching each residual merge's fork between its "
        "shortcut and its branch, at the current weights (batch statistics)."
    )

    def measure(self, ctx: Context) -> dict[str, Any]:
        ins, task = ctx.head(EXAMPLES)
        result = gradient_split(ctx.model, ins, task=task)
        probe = GradientFlowProbe(split=False, blocks=ctx.blocks)
        with batch_statistics(ctx.model), probe.attached(ctx.model):
            ctx.model.zero_grad(set_to_none=True)
            task.loss(ins(ctx.model), ins).backward()
            norms = probe.collect()
        ctx.model.zero_grad(set_to_none=True)
        result["groups"] = norms["groups"]
        result["grad_norm"] = norms["grad_norm"][0] if norms["grad_norm"] else []
        return result

    def watch(self, ctx: Context) -> AbstractProbe:
        return GradientFlowProbe(split=False, blocks=ctx.blocks)

    def add_training(self, result: Any, record: dict[str, Any]) -> Any:
        return {**result, "training": record}

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        from skiplab import _plot

        groups = list(result.get("groups", []))
        merges = list(result.get("merges", []))
        labels = result.get("names") or [m or "(root)" for m in result.get("modules", merges)]
        steps = (result.get("training") or {}).get("grad_norm", [])
        fig, axes = _plot.subplots(1, 2, width=5.0, height=3.8)
        ax = axes[0][0]
        if groups and result.get("grad_norm"):
            norms = np.asarray(result["grad_norm"], dtype=float)
            zero = [g for g, v in zip(groups, norms) if not v > 0]
            if zero:  # a log axis has no place for them: said instead
                sec.notes.append(
                    f"No parameter gradient (no parameters, or none reached): {', '.join(zero)}."
                )
            ax.semilogy(np.where(norms > 0, norms, np.nan), "o-", color=_plot.RESIDUAL, ms=3,
                        label="init" if steps else "current weights")  # fmt: skip
            if steps:
                end = np.mean(steps[-5:], axis=0)
                ax.semilogy(np.where(end > 0, end, np.nan), "s-", color=_plot.PLAIN, ms=3,
                            label="end of training (last 5 steps)")  # fmt: skip
            ax.set(title="parameter-gradient norm per block", ylabel="||dL/dW||")
            name_ticks(ax, groups, limit=20)
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no parameter gradient:\nthe model has no parameters",
                    ha="center", va="center", transform=ax.transAxes)  # fmt: skip
            ax.set_axis_off()
        ax = axes[0][1]
        if merges:
            ax.semilogy(result["shortcut_grad"], "o-", color=_plot.RESIDUAL, label="via shortcut",
                        ms=3)  # fmt: skip
            ax.semilogy(result["branch_grad"], "s-", color=_plot.PLAIN, label="via branch", ms=3)
            ax.set(title="gradient reaching each merge's fork", ylabel="norm")
            name_ticks(ax, labels, limit=20)
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no residual merge:\nno shortcut/branch split", ha="center",
                    va="center", transform=ax.transAxes)  # fmt: skip
            ax.set_axis_off()
            sec.notes.append("No residual merge was found, so there is no gradient split to plot.")
        sec.figure(
            figdir, fig, "gradflow.png",
            "Left: gradient norm of each block's parameters ((before) and (after): the layers "
            "outside every block)" + (", at init and at the end of training" if steps else "")
            + ". Right: norm of the part of dL/dx that arrives through the shortcut and through "
            "the branch of each residual merge, labelled by the module that owns it (by its "
            "branch's module where one module owns several).",
        )  # fmt: skip
        if steps:
            sec.notes.append(f"Recorded {len(steps)} training step(s) with the probe attached.")
        if merges:
            rows = zip(labels, result["shortcut_grad"], result["branch_grad"])
            sec.tables.append(
                Table("Per merge", ["merge", "via shortcut", "via branch"], [list(r) for r in rows])
            )
