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
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference
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
MIN_GAP = 0.05  # boundary F1: the smallest mean gap that counts as "cannot" without long skips


@dataclass(frozen=True)
class Settings:
    levels: int = 3  # a bottleneck 2^3 = 8x coarser than the 1-pixel membranes (paper: 4)
    width: int = 8  # channels of the first level (the paper's 64 is GPU-sized); 8 -> 64 at the
    # bottleneck already segments these cells (Dice 0.92 after 100 steps, measured)
    size: int = 132  # an input side that aligns with 3 valid levels: output 44
    steps: int = 100  # Adam steps per model, the same for all three variants
    batch_size: int = 4  # the paper used batch 1 on large tiles; these tiles are small
    n_train: int = 32  # seeded synthetic training images (new ones for every seed): drawing
    # them costs as much CPU as training on them
    n_test: int = 16  # held-out images for Dice / IoU / boundary F1 (44 x 44 windows each)
    lr: float = 1e-3  # Adam's default, for all three variants


SCALES = {
    "tiny": Settings(levels=2, width=8, size=60, steps=80, n_train=16, n_test=8),
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
        "fg_fraction": float(yte[:, win, win].float().mean()),  # of the held-out masks
        "prediction": pred.tolist(),
        "image": xte[:EXAMPLES, 0, win, win].numpy().round(3).tolist(),
        "mask": yte[:EXAMPLES, win, win].tolist(),
        "out_side": out_side,
    }


@dataclass
class Result(Summary):
    scores: dict[str, dict[str, list[float]]]  # variant -> metric -> per seed
    fg_fraction: list[float]  # per seed: the held-out masks' foreground fraction
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
        "Positive control: both U-Nets (crop-and-concat and additive skips) beat the trivial "
        "constant predictors, their mean held-out Dice above the better of all-background "
        "(Dice 0) and all-foreground (Dice 2p / (1 + p), p the foreground fraction); if not, the "
        "budget cannot decide (inconclusive). Effect: the crop-and-concat U-Net's boundary F1 "
        "minus the plain twin's, paired by seed (same images, same seed). Holds when every "
        "crop-and-concat check passes, the difference is positive, its 95% t-interval excludes "
        f"0 and its mean is at least {MIN_GAP:g}. Fails when a check fails or the difference is "
        "not positive; inconclusive otherwise (positive but its interval includes 0, or smaller "
        f"than {MIN_GAP:g})."
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
    default_seeds = {"tiny": 3, "quick": 3, "full": 5}
    version = 2  # measure returns the held-out foreground fraction (the control's baseline)
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
            fg_fraction=runs.values("fg_fraction", variant="concat"),
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
        checks = [Check("every crop-and-concat check passes", not failed, passed), _control(r)]
        gap = boundary_gap(r)
        if gap is None:
            return [*checks, Check("every run trained without diverging", False, kind="evidence")]
        text = f"U-Net - plain twin boundary F1 {gap.interval()}"
        return [
            *checks,
            Check("U-Net boundary F1 above the plain twin's", gap.mean > 0, text),
            Check("the difference's 95% interval excludes 0", gap.excludes_zero, str(gap),
                  kind="evidence"),
            Check(f"the difference is at least {MIN_GAP:g} on average", gap.mean >= MIN_GAP, text,
                  kind="evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        sc = r.scores
        u, p = sc["concat"]["boundary_f1"], sc["plain"]["boundary_f1"]
        failed = [k for k, ok in r.crop_checks.items() if not ok]
        return (
            f"boundary F1 U-Net {np.mean(u):.3f} vs plain twin {np.mean(p):.3f} (paired gap "
            f"{_text(boundary_gap(r))}, additive {np.mean(sc['add']['boundary_f1']):.3f}); "
            f"Dice {np.mean(sc['concat']['dice']):.3f} vs {np.mean(sc['plain']['dice']):.3f} "
            f"(all-foreground {trivial_dice(r):.3f}); over {len(u)} seed(s); crop checks "
            f"{'all pass' if not failed else 'failed: ' + ', '.join(failed)}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {f"{v}_{m}": describe(r.scores[v][m]).mean for v in VARIANTS for m in METRICS}
        out["trivial_dice"] = trivial_dice(r)
        gap = boundary_gap(r)
        if gap is not None:
            out.update(bf1_gap=gap.mean, bf1_gap_lo=gap.lo, bf1_gap_hi=gap.hi)
        return out

    def literature(self, r: Result) -> list[Comparison]:
        gap, iou = boundary_gap(r), describe(r.scores["concat"]["iou"])
        holds = gap is not None and gap.excludes_zero and gap.mean >= MIN_GAP
        return [
            Comparison(
                "Ronneberger, Fischer & Brox 2015, sec. 1",
                "'In order to localize, high resolution features from the contracting path are "
                "combined with the upsampled output' (the long skips carry the 'where'); the "
                "paper reports no network without them",
                f"boundary F1 with long skips minus without, paired over seeds: {_text(gap)}",
                holds,
            ),
            Comparison(
                "Ronneberger, Fischer & Brox 2015, Table 2 (ISBI cell tracking 2015, IOU)",
                "U-Net IOU 0.9203 on PhC-U373 (second best 0.83) and 0.7756 on DIC-HeLa (second "
                "best 0.46)",
                f"IoU {iou.interval()} on synthetic cells (a {r.levels}-level valid U-Net, no "
                "elastic augmentation or boundary weights, a few hundred Adam steps): another "
                "dataset and budget",
                None,
            ),
        ]

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
        notes.append(
            f"Trivial predictors on the held-out masks (foreground fraction "
            f"{np.mean(r.fg_fraction):.3f}): all-background Dice 0, all-foreground Dice "
            f"{trivial_dice(r):.3f}."
        )
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


def boundary_gap(r: Result) -> Stat | None:
    """Crop-and-concat U-Net minus plain twin boundary F1, paired by seed (None when a run
    diverged)."""
    u, p = r.scores["concat"]["boundary_f1"], r.scores["plain"]["boundary_f1"]
    if not u or not all(math.isfinite(v) for v in u + p):
        return None
    return difference(u, p, paired=True)


def trivial_dice(r: Result) -> float:
    """Dice of the better constant predictor: all-foreground 2p / (1 + p) (all-background
    scores 0), at the mean foreground fraction p of the held-out masks."""
    p = float(np.mean(r.fg_fraction))
    return 2 * p / (1 + p)


def _control(r: Result) -> Check:
    dice = {v: float(np.mean(r.scores[v]["dice"])) for v in ("concat", "add")}
    base = trivial_dice(r)
    return Check(
        "positive control: both U-Nets beat the trivial predictors (Dice above all-foreground's)",
        all(d > base for d in dice.values()),
        ", ".join(f"{LABELS[v]} {d:.3f}" for v, d in dice.items()) + f" vs {base:.3f}",
        kind="control",
    )


def _text(gap: Stat | None) -> str:
    return gap.interval() if gap else "n/a (a run diverged)"


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
