"""Lesion study (Veit et al. 2016): the score after deleting one block or residual branch, and
k random ones at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skiplab._page import Table
from skiplab.diagnostics.lesion import LesionResult, lesion_study
from skiplab.diagnostics.probes._base import Context, Probe, Section, name_ticks, register_probe


@register_probe
class Lesion(Probe):
    name = "lesion"
    title = "Lesion study"
    order = 70
    needs_task = True
    trained = True
    about = (
        "Veit et al. 2016: the task's score after deleting each block or residual branch (a "
        "residual add keeps its shortcut; a plain block becomes the identity) and k random ones "
        "at once."
    )

    def measure(self, ctx: Context) -> LesionResult:
        n = max(len(ctx.blocks), len(ctx.report.merges))
        ks = sorted({k for k in (1, 2, n // 4, n // 2) if k >= 1})
        return lesion_study(ctx.model, ctx.eval_inputs, task=ctx.eval_task, ks=ks, draws=4)

    def page(self, sec: Section, result: LesionResult, figdir: Path) -> None:
        from skiplab import _plot

        metric = getattr(result, "metric", "accuracy")
        names = list(result.single)
        if result.not_deletable:
            sec.notes.append(
                "Not deletable (output shape differs from input, no shortcut): "
                f"{', '.join(result.not_deletable)}."
            )
        if not names:
            sec.notes.append("Nothing could be deleted, so there is no lesion plot.")
            return
        ylim = {"ylim": (0, 1)} if metric.endswith("accuracy") else {}
        fig, axes = _plot.subplots(1, 2, width=5.0, height=3.8)
        ax = axes[0][0]
        ax.plot(range(len(names)), [result.single[n] for n in names], "o-", color=_plot.RESIDUAL,
                ms=3)  # fmt: skip
        ax.axhline(result.base, color=_plot.REFERENCE, ls="--", label=f"intact {result.base:.3f}")
        ax.set(title="delete one", ylabel=metric, **ylim)
        name_ticks(ax, names, limit=20)
        ax.legend()
        ax = axes[0][1]
        if result.random:
            kk = sorted(result.random)
            ax.errorbar(kk, [np.mean(result.random[k]) for k in kk],
                        yerr=[np.std(result.random[k]) for k in kk], fmt="o-",
                        color=_plot.RESIDUAL, capsize=3)  # fmt: skip
            ax.set_xticks(kk)  # k counts units: whole numbers only
        else:
            ax.text(0.5, 0.5, "fewer than two deletable units:\nno random subsets", ha="center",
                    va="center", transform=ax.transAxes)  # fmt: skip
        ax.set(title="delete k at random", xlabel="k (units deleted together)", ylabel=metric,
               **ylim)  # fmt: skip
        sec.figure(
            figdir, fig, "lesion.png",
            f"{metric.capitalize()} after deleting one block or residual branch (left) and k "
            "random ones at once (right, mean and spread over draws).",
        )  # fmt: skip
        sec.tables.append(
            Table(
                "Delete one",
                ["deleted", metric, "change"],
                [[n, a, a - result.base] for n, a in result.single.items()],
            )
        )
