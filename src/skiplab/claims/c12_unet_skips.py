"""C12 unet-skips: long encoder-decoder skips give the decoder the "where".

A decoder that sees only the bottleneck has to re-create fine positions from a map ``2^levels``
times coarser; the U-Net's long skips hand it the encoder's full-resolution maps. With valid
convolutions those maps are larger than the decoder's and must be centre-cropped by an even
margin (crop-and-concat), which only some input sizes allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import summarize
from skiplab.data.segmentation import load_cells
from skiplab.diagnostics.segmentation import segmentation_scores
from skiplab.models.unet import UNet, UNetConfig, nearest_valid_size, output_size
from skiplab.nn import SkipShapeError
from skiplab.nn.concat import CropConcat

VARIANTS = {
    "concat": {"merge": "concat", "skip": True},
    "add": {"merge": "add", "skip": True},
    "plain": {"merge": "concat", "skip": False},
}
LABELS = {
    "concat": "U-Net (crop-and-concat)",
    "add": "U-Net (additive skips)",
    "plain": "plain twin (no long skips)",
}
COLORS = {"concat": _plot.RESIDUAL, "add": "#2ca02c", "plain": _plot.PLAIN}
METRICS = ("dice", "iou", "boundary_f1")


def crop_checks() -> dict[str, Any]:
    """Crop-and-concat correctness: sizes, alignment and the error for sizes that do not align."""
    checks: dict[str, Any] = {}
    checks["paper_572_to_388"] = output_size(572, 4, "valid") == 388
    # A coordinate map cropped from 16 to 8 must start at coordinate 4 on both axes.
    coords = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    merged = CropConcat()(coords, torch.zeros(1, 1, 8, 8))  # (1, 2, 8, 8)
    checks["centre_aligned"] = bool(merged[0, 0, 0, 0] == 4 and merged[0, 0, 0, -1] == 11)
    try:
        CropConcat()(torch.zeros(1, 1, 15, 15), torch.zeros(1, 1, 8, 8))
        checks["odd_margin_raises"] = False
    except SkipShapeError:
        checks["odd_margin_raises"] = True
    try:
        output_size(100, 4, "valid")
        checks["bad_size_raises"] = False
    except ValueError as err:
        checks["bad_size_raises"] = "188" in str(err)
    checks["nearest_valid_100"] = nearest_valid_size(100, 4, "valid")
    net = UNet(UNetConfig(levels=4, width=2))
    with torch.no_grad():
        out = net(torch.randn(1, 1, 188, 188))
    checks["forward_188_shape_ok"] = tuple(out.shape[2:]) == (4, 4)
    return checks


@register_claim
class UNetSkips(Claim):
    id = "C12"
    slug = "unet-skips"
    title = "U-Net long skips give the decoder the 'where'"
    statement = (
        "Long encoder-decoder skips give the decoder the 'where': with them a U-Net segments "
        "boundaries accurately, without them it cannot; valid convolutions need crop-and-concat "
        "alignment."
    )
    method = (
        "Seeded microscopy-like images (touching cells separated by 1-pixel membranes, blur, "
        "noise; target = cell interiors). A valid-convolution U-Net with crop-and-concat long "
        "skips (Ronneberger et al. 2015), the same with additive long skips, and the plain twin "
        "without long skips, trained identically (Adam 1e-3, cross-entropy on the centre-cropped "
        "mask); Dice, IoU and boundary F1 (1-pixel tolerance) on held-out images, over seeds. "
        "Crop-and-concat correctness: 572 -> 388 sizes, centre alignment, errors for sizes that "
        "do not align."
    )
    criterion = (
        "Holds when every crop-and-concat check passes and the crop-and-concat U-Net's boundary "
        "F1 exceeds the plain twin's on every seed (no overlap) by at least 0.05 on average. "
        "Fails when a check fails or the plain twin's boundary F1 is not lower on average; "
        "inconclusive otherwise (better but overlapping or by less than 0.05)."
    )
    math = (
        "Valid 3x3 conv: side s -> s - 2; a level (two convs, pool): s -> (s - 4) / 2, which "
        "needs s - 4 even.\n"
        "Decoder level: s -> 2 s - 4. Paper: 572 -> 388 with 4 levels; the encoder map of level "
        "l exceeds the decoder's by an even margin m_l, cropped m_l / 2 per side.\n"
        "Without long skips, the decoder's input at level l is a function of the bottleneck "
        "alone, whose resolution is 2^levels coarser: features finer than that (1-2 pixel "
        "membranes) must be hallucinated."
    )
    references = (
        "Ronneberger, Fischer & Brox 2015, U-Net: Convolutional Networks for Biomedical Image "
        "Segmentation",
        "Csurka, Larlus & Perronnin 2013, What is a good evaluation measure for semantic "
        "segmentation? (boundary F1)",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        levels = ctx.pick(tiny=2, quick=3, full=4)
        width = ctx.pick(tiny=8, quick=16, full=32)
        size = ctx.pick(tiny=60, quick=132, full=284)
        steps = ctx.pick(tiny=30, quick=150, full=3000)
        batch = ctx.pick(tiny=4, quick=4, full=8)
        n_train, n_test = ctx.pick(tiny=(16, 8), quick=(64, 24), full=(512, 128))
        out_side = output_size(size, levels, "valid")
        margin = (size - out_side) // 2
        ev = Evidence(seeds=ctx.seeds)
        ev.series["checks"] = crop_checks()
        scores: dict[str, dict[str, list[float]]] = {v: {m: [] for m in METRICS} for v in VARIANTS}
        curves: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
        for seed in ctx.seeds:
            data = load_cells(n_train, n_test, size, seed=seed, boundary_width=1.0, noise=0.15)
            xtr, ytr = data.train.tensors
            xte, yte = data.test.tensors
            crop = (slice(None), slice(margin, margin + out_side), slice(margin, margin + out_side))
            ytr, yte = ytr[crop], yte[crop]  # (N, out, out): the valid U-Net's output window
            for name, kw in VARIANTS.items():
                cfg = {"variant": name, "levels": levels, "width": width, "size": size,
                       "steps": steps, "batch": batch}  # fmt: skip
                with ctx.run(f"C12 {name} seed {seed}", cfg, seed=seed) as run_id:
                    ctx.seed_everything(seed)
                    model = UNet(UNetConfig(levels=levels, width=width, **kw))  # type: ignore[arg-type]
                    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                    gen = torch.Generator().manual_seed(seed)
                    losses = []
                    for _ in range(steps):
                        idx = torch.randint(0, n_train, (batch,), generator=gen)
                        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        losses.append(loss.item())
                    model.eval()
                    with torch.no_grad():
                        pred = torch.cat(
                            [model(xte[i : i + 8]).argmax(1) for i in range(0, n_test, 8)]
                        )
                    res = segmentation_scores(pred, yte, tolerance=1.0)
                    ctx.store.finish_run(run_id, "completed", results=res)
                for m in METRICS:
                    scores[name][m].append(res[m])
                curves[name].append(losses[:: max(1, steps // 100)])
                if seed == ctx.seeds[0]:
                    ev.series.setdefault("examples", {})[name] = pred[:3].tolist()
            if seed == ctx.seeds[0]:
                ev.series["example_images"] = xte[:3, 0, crop[1], crop[2]].tolist()
                ev.series["example_masks"] = yte[:3].tolist()
        ev.series.update(scores=scores, curves=curves)
        rows = []
        for name in VARIANTS:
            row: list[Any] = [LABELS[name]]
            for m in METRICS:
                s = summarize(scores[name][m])
                ev.numbers[f"{name}_{m}"] = s.mean
                row.append(f"{s.mean:.3f} ± {s.std:.3f}")
            rows.append(row)
        ev.tables.append(
            Table(
                "Held-out segmentation scores (mean ± std over seeds)",
                ["model", "Dice", "IoU", "boundary F1 (1 px)"],
                rows,
                f"valid U-Net, {levels} levels, width {width}, input {size} -> output "
                f"{out_side}, {steps} Adam steps of batch {batch}, {n_train} training images.",
            )
        )
        ev.tables.append(
            Table(
                "Crop-and-concat checks",
                ["check", "result"],
                [[k, v] for k, v in ev.series["checks"].items()],
            )
        )
        if ctx.scale != "full":
            ev.notes.append(
                f"{ctx.scale} scale: a {levels}-level U-Net of width {width} trained "
                f"{steps} steps on {n_train} synthetic images; the paper's 4-level network is "
                "only checked for its sizes."
            )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        checks = evidence.series["checks"]
        failed = [k for k, v in checks.items() if v is False]
        sc = evidence.series["scores"]
        u, p = sc["concat"]["boundary_f1"], sc["plain"]["boundary_f1"]
        gap = float(np.mean(u) - np.mean(p))
        detail = (
            f"boundary F1 U-Net {np.mean(u):.3f} vs plain twin {np.mean(p):.3f} (gap {gap:+.3f}, "
            f"additive {np.mean(sc['add']['boundary_f1']):.3f}); Dice {np.mean(sc['concat']['dice']):.3f} "
            f"vs {np.mean(sc['plain']['dice']):.3f}; over {len(u)} seed(s); crop checks "
            f"{'all pass' if not failed else 'failed: ' + ', '.join(failed)}."
        )
        if failed or gap <= 0:
            return Verdict("fails", detail)
        if min(u) > max(p) and gap >= 0.05:
            return Verdict("holds", detail)
        return Verdict("inconclusive", f"improvement not clear. {detail}")

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        sc = evidence.series["scores"]
        fig, axes = _plot.subplots(1, 2, width=4.8, height=3.8)
        ax = axes[0][0]
        xs = np.arange(len(METRICS))
        for i, name in enumerate(VARIANTS):
            means = [np.mean(sc[name][m]) for m in METRICS]
            sds = [np.std(sc[name][m]) for m in METRICS]
            ax.bar(xs + (i - 1) * 0.27, means, 0.27, yerr=sds, capsize=3, color=COLORS[name],
                   label=LABELS[name])  # fmt: skip
        ax.set_xticks(xs, ["Dice", "IoU", "boundary F1"])
        ax.set(title="held-out scores (mean ± std over seeds)", ylim=(0, 1.3), ylabel="score")
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.legend(fontsize=7, loc="upper center", ncol=2)
        ax = axes[0][1]
        for name in VARIANTS:
            for j, c in enumerate(evidence.series["curves"][name]):
                ax.semilogy(
                    c, color=COLORS[name], alpha=0.8, label=LABELS[name] if j == 0 else None
                )
        ax.set(title="training loss", xlabel="step (subsampled)", ylabel="cross-entropy")
        ax.legend(fontsize=8)
        _plot.save(fig, outdir / "unet_scores.png")

        ex = evidence.series["examples"]
        imgs, masks = evidence.series["example_images"], evidence.series["example_masks"]
        cols = ["image", "true mask", *VARIANTS]
        fig, axes = _plot.subplots(len(imgs), len(cols), width=2.3, height=2.3)
        for r in range(len(imgs)):
            panels = [imgs[r], masks[r], *(ex[name][r] for name in VARIANTS)]
            for c, (panel, title) in enumerate(zip(panels, cols)):
                a = axes[r][c]
                a.imshow(np.asarray(panel), cmap="gray")
                a.set_xticks([])
                a.set_yticks([])
                a.grid(False)
                if r == 0:
                    a.set_title(LABELS.get(title, title), fontsize=8)
        _plot.save(fig, outdir / "unet_examples.png")
        return [
            Figure(
                "unet_scores.png",
                "Left: Dice, IoU and boundary F1 (1-pixel tolerance) on held-out synthetic cell "
                "images for the U-Net with crop-and-concat skips, with additive skips, and the "
                "plain twin without long skips. Right: training loss.",
            ),
            Figure(
                "unet_examples.png",
                "Held-out examples (first seed): input (output window), true cell interiors, "
                "and each model's prediction. Without long skips, membranes between touching "
                "cells blur away.",
            ),
        ]
