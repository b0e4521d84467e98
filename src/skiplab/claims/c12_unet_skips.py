"""C12 unet-skips: long encoder-decoder skips give the decoder the "where".

A decoder that sees only the bottleneck has to re-create fine positions from a map ``2^levels``
times coarser; the U-Net's long skips hand it the encoder's full-resolution maps. With valid
convolutions those maps are larger than the decoder's and must be centre-cropped by an even
margin (crop-and-concat), which only some input sizes allow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import describe
from skiplab.data.segmentation import load_cells
from skiplab.diagnostics import eval_mode
from skiplab.models.unet import UNet, UNetConfig, nearest_valid_size, output_size
from skiplab.nn import SkipShapeError
from skiplab.nn.concat import CropConcat
from skiplab.train import Segmentation, TrainConfig

VARIANTS: dict[str, dict[str, Any]] = {
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
ALIGNMENT = "alignment"  # the condition that checks crop-and-concat sizes; nothing is trained
EXAMPLES = 3  # held-out images shown per model


@dataclass(frozen=True)
class Settings:
    levels: int = 3  # a bottleneck 2^3 = 8x coarser than the 1-pixel membranes (paper: 4)
    width: int = 16  # channels of the first level (the paper's 64 is GPU-sized)
    size: int = 132  # an input side that aligns with 3 valid levels: output 44
    steps: int = 150  # Adam steps per model, the same for all three variants
    batch_size: int = 4  # the paper used batch 1 on large tiles; these tiles are small
    n_train: int = 64  # seeded synthetic training images (new ones for every seed)
    n_test: int = 24  # held-out images for Dice / IoU / boundary F1
    lr: float = 1e-3  # Adam's default, for all three variants


SCALES = {
    "tiny": Settings(levels=2, width=8, size=60, steps=30, n_train=16, n_test=8),
    "quick": Settings(),
    "full": Settings(levels=4, width=32, size=284, steps=3000, batch_size=8, n_train=512,
                     n_test=128),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    variant: str  # concat, add or plain (trained); "alignment": the crop-and-concat checks


def crop_checks() -> dict[str, bool]:
    """Crop-and-concat correctness: sizes, alignment and the error for sizes that do not align."""
    checks: dict[str, bool] = {}
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
    net = UNet(UNetConfig(levels=4, width=2))
    with torch.no_grad():
        out = net(torch.randn(1, 1, 188, 188))
    checks["forward_188_shape_ok"] = tuple(out.shape[2:]) == (4, 4)
    return checks


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Train one variant on the seed's images and score it, or run the crop-and-concat checks."""
    if c.variant == ALIGNMENT:
        checks = crop_checks()
        for i, ok in enumerate(checks.values()):
            run.log(i, passed=float(ok))
        return {"checks": checks, "nearest_valid_100": nearest_valid_size(100, 4, "valid")}
    out_side = output_size(s.size, s.levels, "valid")
    margin = (s.size - out_side) // 2
    win = slice(margin, margin + out_side)  # the valid U-Net's output window
    data = load_cells(s.n_train, s.n_test, s.size, seed=seed, boundary_width=1.0, noise=0.15)
    (xtr, ytr), (xte, yte) = data.train.tensors, data.test.tensors
    task = Segmentation(
        TensorDataset(xtr, ytr[:, win, win]), TensorDataset(xte, yte[:, win, win]), tolerance=1.0
    )
    model = run.build(
        lambda: UNet(UNetConfig(levels=s.levels, width=s.width, **VARIANTS[c.variant]))
    )
    cfg = TrainConfig(
        epochs=1, max_steps=s.steps, batch_size=s.batch_size, lr=s.lr, optimizer="adam",
        weight_decay=0.0, schedule="constant", log_every=max(1, s.steps // 100),
        eval_every=s.steps,  # score once, after the last step
    )  # fmt: skip
    fit = run.fit(model, task, cfg)
    with torch.no_grad(), eval_mode(model):
        pred = task.predict(model, xte[:EXAMPLES], run.device)  # (3, out, out)
    last = fit.last if fit.diverged is None else {}
    return {
        **{m: last.get(f"test_{m}", math.nan) for m in METRICS},
        "prediction": pred.tolist(),
        "image": xte[:EXAMPLES, 0, win, win].numpy().round(3).tolist(),
        "mask": yte[:EXAMPLES, win, win].tolist(),
        "out_side": out_side,
    }


@dataclass
class Result(Summary):
    scores: dict[str, dict[str, list[float]]]  # variant -> metric -> per seed
    curves: dict[str, list[list[float]]]  # variant -> per seed -> step_loss
    curve_steps: list[int]  # the steps at which step_loss was logged
    crop_checks: dict[str, bool]
    nearest_valid_100: int
    example_images: list[list[list[float]]]  # first seed: (3, out, out) inputs in the window
    example_masks: list[list[list[int]]]
    examples: dict[str, list[list[list[int]]]]  # variant -> first seed's predictions
    setup: str
    levels: int
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)


@register_claim
class UNetSkips(Claim[Settings, Condition, Result]):
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
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(v) for v in (*VARIANTS, ALIGNMENT)]

    def plan(self, s: Settings, seeds: Sequence[int]) -> list[tuple[Condition, int]]:
        # the crop-and-concat checks are deterministic: one run, not one per seed
        return [(Condition(v), seed) for v in VARIANTS for seed in seeds] + [
            (Condition(ALIGNMENT), seeds[0])
        ]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.variant == ALIGNMENT:
            return 0.01
        return s.steps * s.batch_size * (s.size / 100) ** 2 * (s.width / 8) ** 2

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        trained = [r for r in runs if r.condition.variant != ALIGNMENT]
        first = {v: runs.where(variant=v).records[0] for v in VARIANTS}
        align = runs.one(variant=ALIGNMENT)
        return Result(
            scores={v: {m: runs.values(m, variant=v) for m in METRICS} for v in VARIANTS},
            curves={v: [r.curve("step_loss") for r in runs.where(variant=v)] for v in VARIANTS},
            curve_steps=trained[0].steps("step_loss"),
            crop_checks={k: bool(ok) for k, ok in align.get("checks").items()},
            nearest_valid_100=int(align.get("nearest_valid_100")),
            example_images=first["concat"].get("image"),
            example_masks=first["concat"].get("mask"),
            examples={v: first[v].get("prediction") for v in VARIANTS},
            setup=(
                f"valid U-Net, {s.levels} levels, width {s.width}, input {s.size} -> output "
                f"{first['concat'].get('out_side')}, {s.steps} Adam steps of batch "
                f"{s.batch_size}, {s.n_train} training images."
            ),
            levels=s.levels,
            seeds=runs.where(variant="concat").seeds,
            diverged=[
                f"{r.condition.variant} seed {r.seed}: {r.error}" for r in trained if r.diverged
            ],
        )

    def checks(self, r: Result) -> list[Check]:
        failed = [k for k, ok in r.crop_checks.items() if not ok]
        passed = "all pass" if not failed else "failed: " + ", ".join(failed)
        checks = [Check("every crop-and-concat check passes", not failed, passed)]
        u, p = r.scores["concat"]["boundary_f1"], r.scores["plain"]["boundary_f1"]
        if not all(math.isfinite(v) for v in u + p):
            return [*checks, Check("every run trained without diverging", False, kind="evidence")]
        gap = float(np.mean(u) - np.mean(p))
        text = f"U-Net {np.mean(u):.3f} vs plain twin {np.mean(p):.3f}, gap {gap:+.3f}"
        checks.append(Check("U-Net boundary F1 above the plain twin's on average", gap > 0, text))
        if gap > 0:
            spread = "U-Net boundary F1 above the plain twin's on every seed (no overlap)"
            size = "U-Net boundary F1 at least 0.05 above the plain twin's on average"
            checks.append(Check(spread, min(u) > max(p), text, kind="evidence"))
            checks.append(Check(size, gap >= 0.05, text, kind="evidence"))
        return checks

    def detail(self, r: Result) -> str:
        sc = r.scores
        u, p = sc["concat"]["boundary_f1"], sc["plain"]["boundary_f1"]
        failed = [k for k, ok in r.crop_checks.items() if not ok]
        return (
            f"boundary F1 U-Net {np.mean(u):.3f} vs plain twin {np.mean(p):.3f} (gap "
            f"{np.mean(u) - np.mean(p):+.3f}, additive {np.mean(sc['add']['boundary_f1']):.3f}); "
            f"Dice {np.mean(sc['concat']['dice']):.3f} vs {np.mean(sc['plain']['dice']):.3f}; "
            f"over {len(u)} seed(s); crop checks "
            f"{'all pass' if not failed else 'failed: ' + ', '.join(failed)}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        return {f"{v}_{m}": describe(r.scores[v][m]).mean for v in VARIANTS for m in METRICS}

    def tables(self, r: Result) -> list[Table]:
        rows = [
            [LABELS[v]] + [f"{describe(r.scores[v][m]).mean:.3f} ± {describe(r.scores[v][m]).std:.3f}" for m in METRICS]
            for v in VARIANTS
        ]  # fmt: skip
        checks: list[list[Any]] = [[k, ok] for k, ok in r.crop_checks.items()]
        return [
            Table(
                "Held-out segmentation scores (mean ± std over seeds)",
                ["model", "Dice", "IoU", "boundary F1 (1 px)"],
                rows,
                r.setup,
            ),
            Table(
                "Crop-and-concat checks",
                ["check", "result"],
                [*checks, ["nearest_valid_100", r.nearest_valid_100]],
            ),
        ]

    def notes(self, r: Result) -> list[str]:
        notes = [f"diverged: {msg}" for msg in r.diverged]
        if r.levels < 4:
            notes.append(
                f"The paper's 4-level network is only checked for its sizes; trained: {r.setup}"
            )
        return notes

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        _scores_figure(r, outdir / "unet_scores.png")
        _examples_figure(r, outdir / "unet_examples.png")
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


def _scores_figure(r: Result, path: Path) -> None:
    fig, axes = _plot.subplots(1, 2, width=4.8, height=3.8)
    ax = axes[0][0]
    xs = np.arange(len(METRICS))
    for i, name in enumerate(VARIANTS):
        means = [np.mean(r.scores[name][m]) for m in METRICS]
        sds = [np.std(r.scores[name][m]) for m in METRICS]
        ax.bar(xs + (i - 1) * 0.27, means, 0.27, yerr=sds, capsize=3, color=COLORS[name],
               label=LABELS[name])  # fmt: skip
    ax.set_xticks(xs, ["Dice", "IoU", "boundary F1"])
    ax.set(title="held-out scores (mean ± std over seeds)", ylim=(0, 1.3), ylabel="score")
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    ax = axes[0][1]
    for name in VARIANTS:
        for j, curve in enumerate(r.curves[name]):
            steps = r.curve_steps[: len(curve)]
            label = LABELS[name] if j == 0 else None
            ax.semilogy(steps, curve, color=COLORS[name], alpha=0.8, label=label)
    ax.set(title="training loss", xlabel="step", ylabel="cross-entropy")
    ax.legend(fontsize=8)
    _plot.save(fig, path)


def _examples_figure(r: Result, path: Path) -> None:
    imgs, masks = r.example_images, r.example_masks
    cols = ["image", "true mask", *VARIANTS]
    fig, axes = _plot.subplots(len(imgs), len(cols), width=2.3, height=2.3)
    for row in range(len(imgs)):
        panels = [imgs[row], masks[row], *(r.examples[name][row] for name in VARIANTS)]
        for col, (panel, title) in enumerate(zip(panels, cols)):
            a = axes[row][col]
            a.imshow(np.asarray(panel), cmap="gray")
            a.set_xticks([])
            a.set_yticks([])
            a.grid(False)
            if row == 0:
                a.set_title(LABELS.get(title, title), fontsize=8)
    _plot.save(fig, path)
