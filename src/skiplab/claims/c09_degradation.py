"""C09 degradation: deeper plain networks train worse; residual networks of the same depth do not.

He et al. 2015, "Deep Residual Learning for Image Recognition", Fig. 1 and 4: on CIFAR-10 the
56-layer plain network has *higher training error* than the 20-layer one (so the problem is
optimisation, not overfitting), while ResNet-56 trains at least as well as ResNet-20. Here the
same four networks (1-D on MNIST-1D, 2-D on MNIST) are trained under one optimiser and budget
and the depth gap of the plain pair is compared with the depth gap of the residual pair.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import clearly_greater, summarize
from skiplab.claims._training import train_classifier
from skiplab.data import Splits, load_mnist, load_mnist1d
from skiplab.train import TrainConfig

MODELS = ("plain20", "plain56", "resnet20", "resnet56")
PAIRS = {"plain": ("plain20", "plain56"), "residual": ("resnet20", "resnet56")}
DATASETS = ("mnist1d", "mnist")
# "No comparable degradation": the residual depth gap is at most this fraction of the plain
# one, on the log-loss scale (how many times worse) and on the loss scale (how much worse).
LOG_FRACTION = 0.5
LINEAR_FRACTION = 0.1
DEPTH_COLORS = {"20": "#2ca02c", "56": "#d62728"}


def _data(ctx: Context, dataset: str) -> tuple[Splits, int]:
    """The splits of ``dataset`` at the context's scale and the model dimension (1 or 2)."""
    if dataset == "mnist1d":
        # the canonical MNIST-1D (4,000 / 1,000); quick and full use all of it
        return load_mnist1d().subset(ctx.pick(tiny=2000, quick=None, full=None), None), 1
    size = ctx.pick(tiny=7, quick=14, full=None)
    mnist = load_mnist(size=size)
    n_train = ctx.pick(tiny=1000, quick=4000, full=None)
    n_test = ctx.pick(tiny=500, quick=1000, full=None)
    return mnist.subset(n_train, n_test), 2


def _train_config(ctx: Context, dataset: str) -> TrainConfig:
    # One optimiser for all four networks (He et al. 2015: SGD, momentum 0.9, wd 1e-4, lr 0.1);
    # one-cycle so that a short budget still ends at a small learning rate.
    epochs = {
        "mnist1d": ctx.pick(tiny=6, quick=10, full=60),
        "mnist": ctx.pick(tiny=3, quick=4, full=30),
    }[dataset]
    return TrainConfig(epochs=epochs, batch_size=128, lr=0.1, schedule="onecycle")


@register_claim
class Degradation(Claim):
    id = "C09"
    slug = "degradation"
    title = "Degradation: plain-56 trains worse than plain-20, ResNet-56 does not"
    statement = (
        "Deeper plain networks train worse (higher training loss and error, not just test "
        "error); residual networks of the same depth do not show this degradation."
    )
    method = (
        "Plain-20, plain-56, ResNet-20 and ResNet-56 (He et al. 2015 CIFAR design, option-A "
        "shortcuts, BatchNorm) as 1-D nets on MNIST-1D and 2-D nets on MNIST (in_channels 1), "
        "each trained from its own seeded init with the same optimiser and budget (SGD momentum "
        "0.9, weight decay 1e-4, one-cycle learning rate peaking at 0.1, batch 128). Quick: "
        "MNIST-1D 4,000/1,000 examples for 10 epochs; MNIST average-pooled to 14x14, "
        "4,000/1,000 examples for 4 epochs; 3 seeds. Full: MNIST-1D 4,000/1,000 for 60 "
        "epochs; MNIST 28x28 8,000/2,000 for 30 epochs; 5 seeds. The final-epoch training loss "
        "(mean over the epoch's batches) is compared; test accuracy is reported beside it."
    )
    criterion = (
        "Per dataset, with L_m the final training loss of model m per seed: (a) plain "
        "degradation beyond the seed spread: every seed's plain-56 loss exceeds every seed's "
        "plain-20 loss; (b) no comparable residual degradation: with per-seed gaps "
        "g_plain = log10(L_plain56 / L_plain20) and g_res = log10(L_resnet56 / L_resnet20), "
        "every g_res is below every g_plain, mean g_res <= 0.5 * mean g_plain (at most half as "
        "many times worse), and mean (L_resnet56 - L_resnet20) <= 0.1 * mean (L_plain56 - "
        "L_plain20) (at most a tenth as much worse). A small positive residual gap is allowed: "
        "at a short budget the deeper ResNet can still lag. Holds when (a) and (b) hold on both "
        "datasets. Fails on a dataset when plain-56's mean loss is not above plain-20's, or (a) "
        "holds but (b) does not; inconclusive when plain-56 is worse on average but within the "
        "seed spread. Overall: fails if any dataset fails, holds if all hold, else inconclusive."
    )
    math = (
        "He et al. 2015's argument: a deeper plain net contains the shallower one plus extra "
        "layers, so a solution at least as good exists (extra layers = identity); higher "
        "training loss means the optimiser does not find it. A residual block x + F(x) "
        "represents the identity with F = 0, so the deeper residual net starts near, and can "
        "stay near, the shallow solution.\n"
        "Gaps: g = log10(L_deep / L_shallow) counts decades of training loss lost to depth; "
        "g = 1 means ten times higher loss. Reference at a short budget (1-D nets on MNIST-1D, "
        "SGD one-cycle lr 0.1, 15 epochs, 2 seeds, measured by a colleague): plain 0.080 -> "
        "1.21 (g = 1.18), residual 0.0057 -> 0.0127 (g = 0.35): both gaps positive, the plain "
        "one over three times larger in decades and 160 times larger in loss."
    )
    references = (
        "He et al. 2015, Deep Residual Learning for Image Recognition (Fig. 1, 4, Table 6)",
        "Greydanus & Kobak 2024, Scaling down deep learning with MNIST-1D",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        ev = Evidence(seeds=ctx.seeds)
        histories: dict[str, dict[str, list[dict[str, list[float]]]]] = {}
        final: dict[str, dict[str, dict[str, list[float]]]] = {}
        rows: list[list[Any]] = []
        for dataset in DATASETS:
            splits, dim = _data(ctx, dataset)
            train_cfg = _train_config(ctx, dataset)
            histories[dataset] = {m: [] for m in MODELS}
            final[dataset] = {m: {} for m in MODELS}
            ev.series[f"{dataset}_setup"] = {
                "data": repr(splits), "epochs": train_cfg.epochs, "batch": train_cfg.batch_size,
            }  # fmt: skip
            for seed in ctx.seeds:
                for model in MODELS:
                    res = train_classifier(
                        ctx, f"C09 {model} {dataset} seed {seed}", model, splits, train_cfg,
                        seed, dim=dim, in_channels=splits.in_channels,
                    )  # fmt: skip
                    h = res.history
                    histories[dataset][model].append(
                        {
                            k: h.series(k)
                            for k in ("train_loss", "train_acc", "test_loss", "test_acc")
                        }
                    )
                    last = h.last if res.diverged is None else {}
                    values = {
                        "train_loss": last.get("train_loss", math.nan),
                        "train_err": 1 - last.get("train_acc", math.nan),
                        "test_acc": last.get("test_acc", math.nan),
                        "wall_s": res.wall_s,
                    }
                    for key, value in values.items():
                        final[dataset][model].setdefault(key, []).append(float(value))
                    if res.diverged is not None:
                        ev.notes.append(
                            f"{model} on {dataset}, seed {seed} diverged: {res.diverged}"
                        )
                    rows.append([
                        dataset, model, seed, f"{values['train_loss']:.4g}",
                        f"{100 * values['train_err']:.2f}", f"{100 * values['test_acc']:.2f}",
                        f"{res.wall_s:.1f}",
                    ])  # fmt: skip
            for model in MODELS:
                for key in ("train_loss", "test_acc"):
                    vals = final[dataset][model][key]
                    ev.numbers[f"{dataset}_{model}_{key}"] = (
                        float(np.mean(vals)) if np.isfinite(vals).all() else math.nan
                    )
            for kind, (shallow, deep) in PAIRS.items():
                gaps = _log_gaps(
                    final[dataset][shallow]["train_loss"], final[dataset][deep]["train_loss"]
                )
                ev.numbers[f"{dataset}_{kind}_log_gap"] = float(np.mean(gaps))
        ev.series["histories"] = histories
        ev.series["final"] = final
        ev.tables.append(
            Table(
                "Final epoch per run (same optimiser and budget for all four networks)",
                ["dataset", "model", "seed", "train loss", "train error %", "test acc %", "wall s"],
                rows,
                "train loss: mean over the last epoch's batches (train-mode BN); test accuracy "
                "of the final weights.",
            )
        )
        ev.tables.append(_summary_table(final))
        for dataset in DATASETS:
            setup = ev.series[f"{dataset}_setup"]
            ev.notes.append(
                f"{dataset}: {setup['data']}, {setup['epochs']} epochs, batch {setup['batch']}."
            )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        final = evidence.series["final"]
        statuses: list[str] = []
        parts: list[str] = []
        for dataset in DATASETS:
            status, text = _decide_dataset(final[dataset])
            statuses.append(status)
            parts.append(f"{dataset}: {status}: {text}")
        overall = (
            "fails" if "fails" in statuses
            else "holds" if all(s == "holds" for s in statuses)
            else "inconclusive"
        )  # fmt: skip
        return Verdict(overall, " | ".join(parts))

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        histories = evidence.series["histories"]
        out: list[Figure] = []
        for metric, fname, ylabel, log in (
            ("error", "error_curves.png", "error (%)", False),
            ("loss", "loss_curves.png", "cross-entropy loss", True),
        ):
            fig, axes = _plot.subplots(len(DATASETS), 2, width=4.6, height=3.4, sharey="row")
            for row, dataset in enumerate(DATASETS):
                for col, (kind, pair) in enumerate(PAIRS.items()):
                    ax = axes[row][col]
                    for model in pair:
                        runs = histories[dataset][model]
                        color = DEPTH_COLORS[model[-2:]]
                        label = f"{'ResNet' if kind == 'residual' else 'plain'}-{model[-2:]}"
                        for split, lw in (("train", 1.0), ("test", 2.4)):
                            key = f"{split}_loss" if metric == "loss" else f"{split}_acc"
                            curves = _stack([r[key] for r in runs])
                            if curves.size == 0:
                                continue
                            ys = curves if metric == "loss" else 100 * (1 - curves)
                            epochs = np.arange(1, ys.shape[1] + 1)
                            mean = np.exp(np.log(ys).mean(0)) if log else ys.mean(0)
                            ax.plot(epochs, mean, color=color, lw=lw,
                                    label=f"{label} {split}")  # fmt: skip
                            if split == "train" and ys.shape[0] > 1:
                                ax.fill_between(
                                    epochs, ys.min(0), ys.max(0), color=color, alpha=0.15
                                )
                    if log:
                        ax.set_yscale("log")
                        # eval-mode BN makes the first epochs' test loss of deep nets huge
                        # (1e4); keep the axis on the training losses the claim is about
                        ax.set_ylim(*_train_loss_range(histories[dataset]))
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                    ax.set(
                        title=f"{dataset}: {kind}",
                        xlabel="epoch",
                        ylabel=ylabel if col == 0 else None,
                    )
                    ax.legend(fontsize=8)
            _plot.save(fig, outdir / fname)
            out.append(
                Figure(
                    fname,
                    f"Training (thin, band: min-max over seeds) and test (bold) {metric} against "
                    "epoch, in the style of He et al. 2015 Fig. 4: plain networks left, residual "
                    f"right; green depth 20, red depth 56; {'geometric ' if log else ''}mean over "
                    f"seeds.{' Test losses above ten times the largest training loss are cut off.' if log else ''}",
                )
            )
        return out


def _log_gaps(shallow: list[float], deep: list[float]) -> list[float]:
    """Per-seed ``log10(deep / shallow)`` (NaN where a run diverged)."""
    return [
        math.log10(d / s) if s > 0 and d > 0 and math.isfinite(s * d) else math.nan
        for s, d in zip(shallow, deep)
    ]


def _decide_dataset(final: dict[str, dict[str, list[float]]]) -> tuple[str, str]:
    """Apply the criterion to one dataset's final losses; returns (status, explanation)."""
    loss = {m: final[m]["train_loss"] for m in MODELS}
    acc = {m: final[m]["test_acc"] for m in MODELS}
    if not all(math.isfinite(v) for vals in loss.values() for v in vals):
        return "inconclusive", "a run diverged (see notes); no gap can be measured"
    g_plain = _log_gaps(loss["plain20"], loss["plain56"])
    g_res = _log_gaps(loss["resnet20"], loss["resnet56"])
    d_plain = float(np.mean(loss["plain56"])) - float(np.mean(loss["plain20"]))
    d_res = float(np.mean(loss["resnet56"])) - float(np.mean(loss["resnet20"]))
    text = (
        "train loss "
        + ", ".join(
            f"{m} {summarize(loss[m]).mean:.3g}±{summarize(loss[m]).std:.1g}" for m in MODELS
        )
        + f"; log10 gap plain {np.mean(g_plain):.2f} vs residual {np.mean(g_res):.2f}; "
        f"loss gap plain {d_plain:.3g} vs residual {d_res:.3g}; test acc "
        + ", ".join(f"{m} {100 * np.mean(acc[m]):.1f}%" for m in MODELS)
    )
    plain_clear = clearly_greater(loss["plain56"], loss["plain20"])
    residual_small = (
        clearly_greater(g_plain, g_res)
        and float(np.mean(g_res)) <= LOG_FRACTION * float(np.mean(g_plain))
        and d_res <= LINEAR_FRACTION * d_plain
    )
    if plain_clear and residual_small:
        return "holds", text
    if d_plain <= 0:
        return "fails", "plain-56 did not train worse than plain-20; " + text
    if plain_clear:
        return "fails", "ResNet-56 degraded comparably to plain-56; " + text
    return "inconclusive", "plain-56 worse on average but within the seed spread; " + text


def _summary_table(final: dict[str, dict[str, dict[str, list[float]]]]) -> Table:
    rows: list[list[Any]] = []
    for dataset, by_model in final.items():
        for model in MODELS:
            loss, acc = by_model[model]["train_loss"], by_model[model]["test_acc"]
            finite = bool(np.isfinite(loss).all())
            test = summarize([100 * a for a in acc]) if finite else None
            rows.append([
                dataset, model, str(summarize(loss)) if finite else "diverged",
                f"{100 * np.mean(by_model[model]['train_err']):.2f}",
                f"{test.mean:.2f} ± {test.std:.2f}" if test else "diverged",
                f"{np.mean(by_model[model]['wall_s']):.1f}",
            ])  # fmt: skip
    return Table(
        "Mean over seeds: final training loss (95% t-interval), training error, test accuracy",
        ["dataset", "model", "train loss", "train error %", "test acc % (± sd)", "wall s / run"],
        rows,
    )


def _train_loss_range(by_model: dict[str, list[dict[str, list[float]]]]) -> tuple[float, float]:
    """Log-axis limits spanning every training loss of a dataset: half the least, ten times the
    largest (the panels of one row share them)."""
    values = [v for runs in by_model.values() for r in runs for v in r["train_loss"]]
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return (0.5 * min(finite), 10 * max(finite)) if finite else (1e-3, 10.0)


def _stack(curves: list[list[float]]) -> np.ndarray:
    """Seeds x epochs, truncated to the shortest run (a diverged run stops early)."""
    n = min((len(c) for c in curves), default=0)
    return np.asarray([c[:n] for c in curves], dtype=float) if n else np.zeros((0, 0))
