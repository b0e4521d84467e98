"""C18 lesion-ensemble: a ResNet behaves like an ensemble of shallow paths (Veit et al. 2016).

Deleting block ``i`` of ``x_{i+1} = x_i + F_i(x_i)`` leaves ``x_{i+1} = x_i``: half of the
``2^n`` paths survive and the network still works. Deleting a layer of a plain network breaks
its only path. Most of the gradient comes from paths much shorter than the network, since the
number of paths of length ``k`` is ``C(n, k)`` and a path's gradient falls with its length.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.data import get_dataset
from skiplab.diagnostics import lesion_study, model_block_paths, path_gradient_contribution
from skiplab.models import create_model
from skiplab.train import TrainConfig, Trainer

CHANCE = 0.1  # ten classes
RESIDUAL_KEEPS = 0.75  # residual: median single deletion keeps >= 75% of above-chance accuracy
PLAIN_LOSES = 0.5  # plain: median single deletion keeps <= 50% of it


def retained(acc: float, base: float) -> float:
    """Share of the intact model's above-chance accuracy that survives a lesion."""
    return (acc - CHANCE) / max(base - CHANCE, 1e-9)


@register_claim
class LesionEnsemble(Claim):
    id = "C18"
    slug = "lesion-ensemble"
    title = "Residual networks behave like ensembles of shallow paths"
    statement = (
        "(Veit et al. 2016) A residual network behaves like an ensemble of relatively shallow "
        "paths: deleting one of its blocks barely hurts it, while deleting one layer of a plain "
        "network breaks it."
    )
    method = (
        "A 1-D ResNet and its plain twin (depth 32 at quick scale, 15 blocks; 110 at full) "
        "trained on MNIST-1D under the same budget. Test accuracy after deleting each block "
        "(residual: branch removed, shortcut kept; plain: the layer replaced by the identity, "
        "downsampling layers excluded since they cannot be) and after deleting k random blocks. "
        "Path-length distribution of the block chain and the gradient reaching the first block "
        "along paths of each length (Veit et al. section 4.2), on the trained ResNet."
    )
    criterion = (
        "With retained = (lesioned acc - 0.1) / (intact acc - 0.1): holds when, for every seed, "
        "the median retained accuracy over single-block deletions is >= 0.75 for the ResNet and "
        "<= 0.5 for the plain twin; fails when the ResNet's median retained accuracy is not above "
        "the plain twin's on average; inconclusive otherwise."
    )
    math = (
        "n blocks -> 2^n paths, C(n, k) of length k; deleting block i removes the 2^(n-1) paths "
        "through its branch and keeps the 2^(n-1) through its shortcut.\n"
        "Plain network: one path; deleting any layer removes it."
    )
    references = (
        "Veit, Wilber & Belongie 2016, Residual Networks Behave Like Ensembles of Relatively "
        "Shallow Networks",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        depth = ctx.pick(tiny=14, quick=32, full=110)
        epochs = ctx.pick(tiny=4, quick=8, full=60)
        splits = get_dataset("mnist1d").subset(
            ctx.pick(tiny=2000, quick=None, full=None), ctx.pick(tiny=500, quick=None, full=None)
        )
        xt, yt = splits.test.tensors
        ev = Evidence(seeds=ctx.seeds)
        rows: list[list[Any]] = []
        per_seed: dict[str, list[float]] = {}
        lesions: dict[str, list[dict[str, Any]]] = {"residual": [], "plain": []}
        contrib: dict[str, Any] = {}
        for seed in ctx.seeds:
            for kind in ("residual", "plain"):
                cfg = TrainConfig(
                    epochs=epochs, batch_size=128, lr=0.1, weight_decay=5e-4, seed=seed
                )
                config = {"depth": depth, "skip": kind == "residual", **cfg.__dict__}
                with ctx.run(f"C18 {kind}{depth} seed {seed}", config, seed=seed) as run_id:
                    ctx.seed_everything(seed)
                    model = create_model(
                        "resnet_cifar", depth=depth, dim=1, in_channels=1, skip=kind == "residual"
                    )
                    Trainer(model, cfg, store=ctx.store, run_id=run_id, progress=ctx.progress).fit(
                        splits.train
                    )
                    n_blocks = (depth - 2) // 2  # (depth - 2) / 6 blocks per stage, three stages
                    res = lesion_study(
                        model, xt, yt, ks=[1, 2, 4, n_blocks // 2], draws=5, seed=seed
                    )
                    if kind == "residual" and seed == ctx.seeds[0]:
                        xb, yb = splits.train.tensors[0][:32], splits.train.tensors[1][:32]
                        contrib = path_gradient_contribution(
                            model,
                            (xb,),
                            yb,
                            F.cross_entropy,
                            samples=ctx.pick(tiny=2, quick=5, full=10),
                            seed=seed,
                        )
                        contrib["paths_dist"] = model_block_paths(model).as_dict()
                    ctx.store.finish_run(run_id, "completed", results={"lesion": res.as_dict()})
                kept = [retained(a, res.base) for a in res.single.values()]
                med = statistics.median(kept)
                per_seed.setdefault(f"{kind}_base_acc", []).append(res.base)
                per_seed.setdefault(f"{kind}_median_retained", []).append(med)
                per_seed.setdefault(f"{kind}_worst_retained", []).append(min(kept))
                lesions[kind].append(res.as_dict())
                rows.append(
                    [
                        seed,
                        kind,
                        res.base,
                        statistics.median(res.single.values()),
                        min(res.single.values()),
                        med,
                        len(res.single),
                        len(res.not_deletable),
                    ]
                )
        for key, values in per_seed.items():
            ev.numbers[key] = float(np.mean(values))
        if contrib:
            tot = np.asarray(contrib["total"])
            share = tot / tot.sum()
            ev.numbers["gradient_mean_path_length"] = float((share * np.arange(len(share))).sum())
            ev.numbers["paths_mean_length"] = float(contrib["paths_dist"]["mean"])
        ev.series.update(per_seed=per_seed, lesions=lesions, contrib=contrib, depth=depth)
        ev.tables.append(
            Table(
                f"Single-block deletions, depth {depth}, {epochs} epochs on MNIST-1D",
                ["seed", "net", "intact acc", "median lesioned acc", "worst lesioned acc",
                 "median retained", "deletable", "not deletable"],
                rows,
                "retained = (acc - 0.1) / (intact acc - 0.1); plain downsampling layers change "
                "shape and cannot be deleted",
            )
        )  # fmt: skip
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        s = evidence.series["per_seed"]
        res, plain = s["residual_median_retained"], s["plain_median_retained"]
        n = evidence.numbers
        detail = (
            f"median retained accuracy after one deletion: ResNet {_fmt(res)} (intact acc "
            f"{_fmt(s['residual_base_acc'])}), plain {_fmt(plain)} (intact acc "
            f"{_fmt(s['plain_base_acc'])}) over {len(res)} seed(s)"
        )
        if "gradient_mean_path_length" in n:
            detail += (
                f"; gradient-weighted mean path length {n['gradient_mean_path_length']:.2f} blocks "
                f"vs mean path length {n['paths_mean_length']:.2f}"
            )
        if min(res) >= RESIDUAL_KEEPS and max(plain) <= PLAIN_LOSES:
            return Verdict("holds", detail + ".")
        if np.mean(res) <= np.mean(plain):
            return Verdict("fails", detail + ".")
        return Verdict(
            "inconclusive", detail + f"; thresholds {RESIDUAL_KEEPS} / {PLAIN_LOSES} not both met."
        )

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        lesions = evidence.series["lesions"]
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.5)
        ax = axes[0][0]
        for kind, color in (("residual", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
            for i, les in enumerate(lesions[kind]):
                # stored JSON sorts keys as strings ("blocks.10" < "blocks.2"): order by index
                pts = sorted((int(n.rsplit(".", 1)[-1]), a) for n, a in les["single"].items())
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    "o-",
                    color=color,
                    ms=3,
                    alpha=0.8,
                    label=kind if i == 0 else None,
                )
                ax.axhline(les["base"], color=color, ls=":", lw=1)
        ax.axhline(CHANCE, color=_plot.REFERENCE, ls="--", lw=1, label="chance")
        ax.set(
            title="delete one block (dotted: intact)",
            xlabel="deleted block",
            ylabel="test accuracy",
            ylim=(0, 1),
        )
        ax.legend()
        ax = axes[0][1]
        for kind, color in (("residual", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
            ks = sorted({int(k) for les in lesions[kind] for k in les["random"]})
            means = [
                np.mean([a for les in lesions[kind] for a in les["random"].get(str(k), [])])
                for k in ks
            ]
            ax.plot(
                [0, *ks],
                [np.mean([les["base"] for les in lesions[kind]]), *means],
                "o-",
                color=color,
                label=kind,
            )
        ax.axhline(CHANCE, color=_plot.REFERENCE, ls="--", lw=1)
        ax.set(title="delete k random blocks", xlabel="k", ylabel="test accuracy", ylim=(0, 1))
        ax.legend()
        ax = axes[0][2]
        contrib = evidence.series["contrib"]
        if contrib:
            paths = np.asarray(contrib["paths_dist"]["counts"], dtype=float)
            tot = np.asarray(contrib["total"])
            ax.bar(
                contrib["lengths"],
                paths / paths.sum(),
                color=_plot.REFERENCE,
                alpha=0.5,
                label="share of paths",
            )
            ax.plot(
                contrib["lengths"],
                tot / tot.sum(),
                "o-",
                color=_plot.RESIDUAL,
                label="share of gradient",
            )
            ax.set(
                title="ResNet paths by length (trained)",
                xlabel="path length (blocks)",
                ylabel="fraction",
            )
            ax.legend()
        _plot.save(fig, outdir / "lesions.png")
        return [
            Figure(
                "lesions.png",
                "Left: test accuracy after deleting each block, every seed (ResNet blue, plain "
                "orange; missing plain points are downsampling layers). Middle: deleting k random "
                "blocks (mean over seeds and draws). Right: distribution of path lengths in the "
                "ResNet and the share of the input gradient carried by paths of each length.",
            )
        ]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)
