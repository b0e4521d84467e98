"""C09 degradation: deeper plain networks train worse; residual networks of the same depth do not.

He et al. 2015, "Deep Residual Learning for Image Recognition", Fig. 1 and 4: on CIFAR-10 the
56-layer plain network has *higher training error* than the 20-layer one (so the problem is
optimisation, not overfitting), while ResNet-56 trains at least as well as ResNet-20. Here the
same four networks (1-D on MNIST-1D, 2-D on MNIST) are trained under one optimiser and budget
and the depth gap of the plain pair is compared with the depth gap of the residual pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference, fmt_values
from skiplab.data import Splits, load_mnist, load_mnist1d
from skiplab.models import create_model
from skiplab.train import Classification, TrainConfig

MODELS = ("plain20", "plain56", "resnet20", "resnet56")
PAIRS = {"plain": ("plain20", "plain56"), "residual": ("resnet20", "resnet56")}
DATASETS = ("mnist1d", "mnist")
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over ten classes
# The positive control: both 20-layer networks end below half the chance loss, every seed.
CONTROL_LOSS = 0.5 * CHANCE_LOSS
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc")
# "No comparable degradation": the residual depth gap is at most this fraction of the plain
# one, on the log-loss scale (how many times worse) and on the loss scale (how much worse).
LOG_FRACTION = 0.5
LINEAR_FRACTION = 0.1
DEPTH_COLORS = {"20": "#2ca02c", "56": "#d62728"}


@dataclass(frozen=True)
class Settings:
    datasets: tuple[str, ...] = ("mnist1d",)  # quick: the 1-D nets (2-D MNIST costs 4x more)
    mnist1d_train: int | None = None  # the canonical MNIST-1D (4,000 / 1,000): all of it
    mnist1d_epochs: int = 8  # ResNet-56 has caught up with ResNet-20 after 8 epochs, plain-56 not
    mnist_size: int | None = 14  # average-pooled to 14x14: a 2-D net a CPU trains in minutes
    mnist_train: int | None = 4000  # of the 8,000 training images
    mnist_test: int | None = 1000  # of the 2,000 test images
    mnist_epochs: int = 4  # 2-D nets see 4x more pixels per example
    widths: tuple[int, int, int] = (8, 16, 32)  # half He et al.'s (16, 32, 64): half the cost
    batch_size: int = 128  # He et al. 2015
    lr: float = 0.1  # He et al. 2015 (SGD, momentum 0.9, weight decay 1e-4), one-cycle peak


SCALES = {
    "tiny": Settings(
        datasets=DATASETS, mnist1d_train=1000, mnist1d_epochs=6, mnist_size=7, mnist_train=500,
        mnist_test=500, mnist_epochs=2,
    ),
    "quick": Settings(),
    "full": Settings(datasets=DATASETS, mnist1d_epochs=60, mnist_size=None, mnist_train=None,
                     mnist_test=None, mnist_epochs=30, widths=(16, 32, 64)),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    dataset: str  # mnist1d (1-D nets) or mnist (2-D nets)
    model: str  # a registered model: plain20, plain56, resnet20, resnet56


def _data(s: Settings, dataset: str) -> tuple[Splits, int]:
    """The splits of ``dataset`` and the model dimension (1 or 2)."""
    if dataset == "mnist1d":
        return load_mnist1d().subset(s.mnist1d_train, None), 1
    return load_mnist(size=s.mnist_size).subset(s.mnist_train, s.mnist_test), 2


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Train one network from its seeded init; its final-epoch numbers."""
    splits, dim = _data(s, c.dataset)
    kw = {"dim": dim, "in_channels": splits.in_channels, "widths": s.widths}
    model = run.build(lambda: create_model(c.model, **kw))
    # One optimiser for all four networks; one-cycle so a short budget ends at a small lr.
    epochs = s.mnist1d_epochs if c.dataset == "mnist1d" else s.mnist_epochs
    cfg = TrainConfig(epochs=epochs, batch_size=s.batch_size, lr=s.lr, schedule="onecycle")
    fit = run.fit(model, Classification(splits.train, splits.test), cfg)
    last = fit.last if fit.diverged is None else {}
    return {
        "train_loss": last.get("train_loss", math.nan),
        "train_err": 1 - last.get("train_acc", math.nan),
        "test_acc": last.get("test_acc", math.nan),
        "data": repr(splits),
        "epochs": epochs,
    }


@dataclass
class DatasetResult:
    """One dataset's runs: per model, one value per seed."""

    train_loss: dict[str, list[float]]
    train_err: dict[str, list[float]]
    test_acc: dict[str, list[float]]
    wall_s: dict[str, list[float]]
    curves: dict[str, list[dict[str, list[float]]]]  # model -> per seed -> metric -> epochs
    setup: str

    @property
    def gaps(self) -> dict[str, list[float]]:
        """Per seed, ``log10(L_deep / L_shallow)`` of the plain and of the residual pair."""
        loss = self.train_loss
        return {kind: _log_gaps(loss[a], loss[b]) for kind, (a, b) in PAIRS.items()}

    def effects(self) -> dict[str, Stat]:
        """The plain gap, the residual gap and their paired difference (one seed's four nets
        share its data order), each with a 95% t-interval over seeds."""
        g = self.gaps
        return {
            "plain": describe(g["plain"]),
            "residual": describe(g["residual"]),
            "difference": difference(g["plain"], g["residual"], paired=True),
        }


@dataclass
class Result(Summary):
    datasets: dict[str, DatasetResult]
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)


@register_claim
class Degradation(Claim[Settings, Condition, Result]):
    id = "C09"
    slug = "degradation"
    title = "Degradation: plain-56 trains worse than plain-20, ResNet-56 does not"
    statement = (
        "Deeper plain networks train worse (higher training loss and error, not just test "
        "error); residual networks of the same depth do not show this degradation."
    )
    method = (
        "Plain-20, plain-56, ResNet-20 and ResNet-56 (He et al. 2015 CIFAR design, option-A "
        "shortcuts, BatchNorm; half its widths, 8/16/32 channels, below full scale) as 1-D nets "
        "on MNIST-1D and 2-D nets on MNIST (in_channels 1), "
        "each trained from its own seeded init with the same optimiser and budget (SGD momentum "
        "0.9, weight decay 1e-4, one-cycle learning rate peaking at 0.1, batch 128). Quick: "
        "MNIST-1D 4,000/1,000 examples for 8 epochs, 5 seeds (the 2-D nets cost four times "
        "as much and run at full scale only). Full: MNIST-1D 4,000/1,000 for 60 epochs and "
        "MNIST 28x28 8,000/2,000 for 30 epochs, widths 16/32/64; 5 seeds. The final-epoch "
        "training loss (mean over the epoch's batches) is compared; test accuracy is reported "
        "beside it."
    )
    criterion = (
        "Per dataset, with L_m the final training loss of model m and per-seed gaps g_plain = "
        "log10(L_plain56 / L_plain20), g_res = log10(L_resnet56 / L_resnet20), each with a 95% "
        "t-interval over seeds (the difference g_plain - g_res paired by seed). Positive "
        "control: every seed's plain-20 and ResNet-20 end below half the chance loss ln 10 "
        "(else inconclusive: the budget cannot decide). (a) Plain degradation: mean g_plain > 0 "
        "(else fails) with an interval that excludes 0 (else inconclusive). (b) No comparable "
        "residual degradation: mean (g_plain - g_res) > 0, mean g_res <= 0.5 * mean g_plain "
        "(at most half as many decades worse) and mean (L_resnet56 - L_resnet20) <= 0.1 * mean "
        "(L_plain56 - L_plain20) (at most a tenth as much worse), else fails; the interval of "
        "g_plain - g_res must exclude 0, else inconclusive. A small positive residual gap is "
        "allowed: at a short budget the deeper ResNet can still lag. Holds when (a) and (b) "
        "hold on every dataset run; fails if any dataset fails; else inconclusive."
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
    version = 2  # v2: quick trains half-width nets on MNIST-1D only; control and intervals
    default_seeds = {"tiny": 1, "quick": 5, "full": 5}  # 3 seeds left the t-interval wide
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(d, m) for d in s.datasets for m in MODELS]

    def cost(self, s: Settings, c: Condition) -> float:
        depth = int(c.model[-2:])
        if c.dataset == "mnist1d":
            return depth * s.mnist1d_epochs * (s.mnist1d_train or 4000) / 1000
        pixels = (s.mnist_size or 28) ** 2 / 196
        return 4 * depth * s.mnist_epochs * pixels * (s.mnist_train or 8000) / 1000

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        datasets = {}
        diverged = []
        for dataset in s.datasets:
            by = runs.where(dataset=dataset)
            for r in by:
                if r.diverged:
                    diverged.append(f"{r.condition.model} on {dataset}, seed {r.seed}: {r.error}")
            loss = {m: by.values("train_loss", model=m) for m in MODELS}
            first = by.records[0]
            datasets[dataset] = DatasetResult(
                train_loss=loss,
                train_err={m: by.values("train_err", model=m) for m in MODELS},
                test_acc={m: by.values("test_acc", model=m) for m in MODELS},
                wall_s={m: [r.wall_s for r in by.where(model=m)] for m in MODELS},
                curves={
                    m: [{k: r.curve(k) for k in CURVES} for r in by.where(model=m)] for m in MODELS
                },
                setup=f"{first.get('data')}, {first.get('epochs')} epochs, batch {s.batch_size}",
            )
        return Result(datasets, runs.seeds, diverged)

    def checks(self, r: Result) -> list[Check]:
        return [c for dataset, d in r.datasets.items() for c in _dataset_checks(dataset, d)]

    def detail(self, r: Result) -> str:
        parts = []
        for name, d in r.datasets.items():
            e, loss = d.effects(), d.train_loss
            means = ", ".join(f"{m} {_mean(loss[m]):.3g}" for m in MODELS)
            parts.append(
                f"{name}: final training loss {means}; log10 gap plain {e['plain'].interval()}, "
                f"residual {e['residual'].interval()}, difference {e['difference'].interval()} "
                f"(95% intervals over {e['plain'].n} seeds)"
            )
        return "; ".join(parts) + "."

    def numbers(self, r: Result) -> dict[str, float]:
        out = {}
        for dataset, d in r.datasets.items():
            for model in MODELS:
                out[f"{dataset}_{model}_train_loss"] = _mean(d.train_loss[model])
                out[f"{dataset}_{model}_test_acc"] = _mean(d.test_acc[model])
            for kind, stat in d.effects().items():
                name = "gap_difference" if kind == "difference" else f"{kind}_log_gap"
                out.update({f"{dataset}_{name}": stat.mean, f"{dataset}_{name}_lo": stat.lo,
                            f"{dataset}_{name}_hi": stat.hi})  # fmt: skip
        return out

    def notes(self, r: Result) -> list[str]:
        notes = [f"{d}: {r.datasets[d].setup}." for d in r.datasets]
        if "mnist" not in r.datasets:
            notes.append(
                "Quick scale trains the 1-D nets on MNIST-1D only; the 2-D nets on MNIST (four "
                "times the compute per run) are part of the full scale."
            )
        return notes + [f"diverged: {msg}" for msg in r.diverged]

    def literature(self, r: Result) -> list[Comparison]:
        name, d = next(iter(r.datasets.items()))
        e, loss, acc = d.effects(), d.train_loss, d.test_acc
        setup = f"{name}, {d.setup}"
        return [
            Comparison(
                "He et al. 2015, Fig. 1 and Fig. 6 (left), CIFAR-10",
                'plain-56 has higher training error than plain-20 ("the deep plain nets suffer '
                'from increased depth, and exhibit higher training error when going deeper")',
                f"plain-56 final training loss {_mean(loss['plain56']):.3g} vs plain-20 "
                f"{_mean(loss['plain20']):.3g}: log10 gap {e['plain'].interval()} ({setup})",
                _agrees(e["plain"]),
            ),
            Comparison(
                "He et al. 2015, Fig. 6 (middle), CIFAR-10",
                'ResNets "overcome the optimization difficulty": ResNet-56 trains at least as '
                "well as ResNet-20",
                f"ResNet log10 gap {e['residual'].interval()} vs plain {e['plain'].interval()}; "
                f"plain minus residual {e['difference'].interval()}",
                _agrees(e["difference"]),
            ),
            Comparison(
                "He et al. 2015, Table 6, CIFAR-10 test error",
                "ResNet-20 8.75%, ResNet-56 6.97% (64k iterations, augmentation)",
                f"ResNet-20 {100 * (1 - _mean(acc['resnet20'])):.2f}%, ResNet-56 "
                f"{100 * (1 - _mean(acc['resnet56'])):.2f}% test error",
                None,  # another dataset and a budget of a few hundred steps: not comparable
            ),
        ]

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for dataset, d in r.datasets.items():
            for model in MODELS:
                for i, seed in enumerate(r.seeds):
                    rows.append([
                        dataset, model, seed, f"{d.train_loss[model][i]:.4g}",
                        f"{100 * d.train_err[model][i]:.2f}", f"{100 * d.test_acc[model][i]:.2f}",
                        f"{d.wall_s[model][i]:.1f}",
                    ])  # fmt: skip
        per_run = Table(
            "Final epoch per run (same optimiser and budget for all four networks)",
            ["dataset", "model", "seed", "train loss", "train error %", "test acc %", "wall s"],
            rows,
            "train loss: mean over the last epoch's batches (train-mode BN); test accuracy "
            "of the final weights.",
        )
        gaps = Table(
            "Depth gaps in decades of training loss (mean [95% t-interval] over seeds)",
            ["dataset", "g_plain = log10(L56 / L20)", "g_res", "g_plain - g_res (paired)"],
            [[name, *(d.effects()[k].interval() for k in ("plain", "residual", "difference"))]
             for name, d in r.datasets.items()],
            "the claim: g_plain > 0 and g_plain - g_res > 0, each interval excluding 0.",
        )  # fmt: skip
        return [per_run, _summary_table(r.datasets), gaps]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        out: list[Figure] = []
        for metric, fname, ylabel, log in (
            ("error", "error_curves.png", "error (%)", False),
            ("loss", "loss_curves.png", "cross-entropy loss", True),
        ):
            fig, axes = _plot.subplots(len(r.datasets), 2, width=4.6, height=3.4, sharey="row")
            for row, dataset in enumerate(r.datasets):
                curves = r.datasets[dataset].curves
                for col, (kind, pair) in enumerate(PAIRS.items()):
                    _curve_panel(axes[row][col], curves, kind, pair, metric, log)
                    if log:
                        # eval-mode BN makes the first epochs' test loss of deep nets huge
                        # (1e4); keep the axis on the training losses the claim is about
                        axes[row][col].set_ylim(*_train_loss_range(curves))
                    axes[row][col].set(
                        title=f"{dataset}: {kind}", xlabel="epoch",
                        ylabel=ylabel if col == 0 else None,
                    )  # fmt: skip
            _plot.save(fig, outdir / fname)
            cut = (
                " Test losses above ten times the largest training loss are cut off." if log else ""
            )
            out.append(
                Figure(
                    fname,
                    f"Training (thin, band: min-max over seeds) and test (bold) {metric} against "
                    "epoch, in the style of He et al. 2015 Fig. 4: plain networks left, residual "
                    f"right; green depth 20, red depth 56; {'geometric ' if log else ''}mean over "
                    f"seeds.{cut}",
                )
            )
        return out


def _curve_panel(
    ax: Any,
    curves: dict[str, list[dict[str, list[float]]]],
    kind: str,
    pair: tuple[str, str],
    metric: str,
    log: bool,
) -> None:
    for model in pair:
        color = DEPTH_COLORS[model[-2:]]
        label = f"{'ResNet' if kind == 'residual' else 'plain'}-{model[-2:]}"
        for split, lw in (("train", 1.0), ("test", 2.4)):
            key = f"{split}_loss" if metric == "loss" else f"{split}_acc"
            stacked = _stack([run[key] for run in curves[model]])
            if stacked.size == 0:
                continue
            ys = stacked if metric == "loss" else 100 * (1 - stacked)
            epochs = np.arange(1, ys.shape[1] + 1)
            mean = np.exp(np.log(ys).mean(0)) if log else ys.mean(0)
            ax.plot(epochs, mean, color=color, lw=lw, label=f"{label} {split}")
            if split == "train" and ys.shape[0] > 1:
                ax.fill_between(epochs, ys.min(0), ys.max(0), color=color, alpha=0.15)
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if np.isfinite(values).all() else math.nan


def _log_gaps(shallow: list[float], deep: list[float]) -> list[float]:
    """Per-seed ``log10(deep / shallow)`` (NaN where a run diverged)."""
    return [
        math.log10(d / s) if s > 0 and d > 0 and math.isfinite(s * d) else math.nan
        for s, d in zip(shallow, deep)
    ]


def _dataset_checks(dataset: str, d: DatasetResult) -> list[Check]:
    """The criterion on one dataset's final losses (see ``Degradation.criterion``)."""
    loss, acc = d.train_loss, d.test_acc
    if not all(math.isfinite(v) for vals in loss.values() for v in vals):
        return [Check(f"{dataset}: every run trained without diverging", False, kind="evidence")]
    shallow = f"plain-20 {fmt_values(loss['plain20'])}, ResNet-20 {fmt_values(loss['resnet20'])}"
    control = Check(
        f"{dataset}: the 20-layer networks train (every seed below {CONTROL_LOSS:.3g}, half the "
        "chance loss ln 10)",
        max(loss["plain20"] + loss["resnet20"]) < CONTROL_LOSS,
        f"final training loss {shallow}",
        "control",
    )
    e = d.effects()
    g_plain, g_res = e["plain"].mean, e["residual"].mean
    d_plain = float(np.mean(loss["plain56"])) - float(np.mean(loss["plain20"]))
    d_res = float(np.mean(loss["resnet56"])) - float(np.mean(loss["resnet20"]))
    text = (
        "train loss "
        + ", ".join(f"{m} {describe(loss[m]).mean:.3g}±{describe(loss[m]).std:.1g}" for m in MODELS)
        + f"; log10 gap plain {e['plain'].interval()} vs residual {e['residual'].interval()}; "
        f"loss gap plain {d_plain:.3g} vs residual {d_res:.3g}; test acc "
        + ", ".join(f"{m} {100 * np.mean(acc[m]):.1f}%" for m in MODELS)
    )
    interval = f"{dataset}: the 95% interval of"
    checks = [
        control,
        Check(f"{dataset}: plain-56 trains worse than plain-20 (mean log10 gap > 0)", g_plain > 0,
              text),
        Check(f"{interval} the plain gap excludes 0", e["plain"].excludes_zero,
              f"g_plain {e['plain']}", "evidence"),
    ]  # fmt: skip
    if g_plain <= 0:
        return checks
    far_less = e["difference"].mean > 0 and g_res <= LOG_FRACTION * g_plain
    far_less = far_less and d_res <= LINEAR_FRACTION * d_plain
    return [
        *checks,
        Check(f"{dataset}: ResNet-56 degrades far less than plain-56", far_less, text),
        Check(f"{interval} g_plain - g_res excludes 0", e["difference"].excludes_zero,
              f"g_plain - g_res {e['difference']}", "evidence"),
    ]  # fmt: skip


def _agrees(effect: Stat) -> bool | None:
    """The published direction (a positive effect) seen (True), reversed (False), or neither
    beyond the seed spread (None)."""
    if not math.isfinite(effect.mean) or not effect.excludes_zero:
        return None
    return effect.mean > 0


def _summary_table(datasets: dict[str, DatasetResult]) -> Table:
    rows: list[list[Any]] = []
    for dataset, d in datasets.items():
        for model in MODELS:
            loss, acc = d.train_loss[model], d.test_acc[model]
            finite = bool(np.isfinite(loss).all())
            test = describe([100 * a for a in acc]) if finite else None
            rows.append([
                dataset, model, str(describe(loss)) if finite else "diverged",
                f"{100 * np.mean(d.train_err[model]):.2f}",
                f"{test.mean:.2f} ± {test.std:.2f}" if test else "diverged",
                f"{np.mean(d.wall_s[model]):.1f}",
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
