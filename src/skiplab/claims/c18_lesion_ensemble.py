"""C18 lesion-ensemble: a ResNet behaves like an ensemble of shallow paths (Veit et al. 2016).

Deleting block ``i`` of ``x_{i+1} = x_i + F_i(x_i)`` leaves ``x_{i+1} = x_i``: half of the
``2^n`` paths survive and the network still works. Deleting a layer of a plain network breaks
its only path. Most of the gradient comes from paths much shorter than the network, since the
number of paths of length ``k`` is ``C(n, k)`` and a path's gradient falls with its length.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference, fmt_values
from skiplab.data import get_dataset
from skiplab.diagnostics import (
    LesionResult,
    lesion_study,
    model_block_paths,
    path_gradient_contribution,
)
from skiplab.models import create_model
from skiplab.train import Classification, TrainConfig

KINDS = ("residual", "plain")
COLORS = {"residual": _plot.RESIDUAL, "plain": _plot.PLAIN}
CHANCE = 0.1  # ten classes
RESIDUAL_KEEPS = 0.75  # residual: median single deletion keeps >= 75% of above-chance accuracy
PLAIN_LOSES = 0.5  # plain: median single deletion keeps <= 50% of it
CONTROL_ACC = 0.5  # the positive control: both intact nets beat chance by 40 points, every seed

_fmt = partial(fmt_values, spec=".3f")  # this claim's precision


def retained(acc: float, base: float) -> float:
    """Share of the intact model's above-chance accuracy that survives a lesion."""
    return (acc - CHANCE) / max(base - CHANCE, 1e-9)


@dataclass(frozen=True)
class Settings:
    depth: int = 26  # 12 blocks, 2^12 paths: one deletion removes a small part of the ensemble
    # (depth 32, 15 blocks, retains as much, 0.92 vs 0.90 over 3 seeds, at 1.3x the cost)
    epochs: int = 8  # both nets learn MNIST-1D well above chance
    n_train: int | None = None  # MNIST-1D's whole training split (4,000)
    n_test: int | None = None  # the lesions are scored on the whole test split (1,000)
    batch_size: int = 128  # He et al. 2015
    lr: float = 0.1  # He et al. 2015 (SGD, momentum 0.9, cosine schedule)
    weight_decay: float = 5e-4  # the usual value for small CIFAR nets (Zagoruyko & Komodakis)
    draws: int = 5  # random subsets per number k of deleted blocks
    path_samples: int = 5  # random block sets per path length in the gradient-by-path probe
    path_batch: int = 32  # training examples that probe sees


SCALES = {
    "tiny": Settings(depth=14, epochs=4, n_train=2000, n_test=500, path_samples=2),
    "quick": Settings(),
    "full": Settings(depth=110, epochs=60, path_samples=10),
}


@dataclass(frozen=True)
class Condition:
    kind: str  # "residual" (the ResNet) or "plain" (its twin without skips)


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Train one net, then delete its blocks; for the ResNet also the gradient by path length."""
    splits = get_dataset("mnist1d").subset(s.n_train, s.n_test)
    kw = {"depth": s.depth, "dim": 1, "in_channels": 1, "skip": c.kind == "residual"}
    model = run.build(lambda: create_model("resnet_cifar", **kw))
    cfg = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay)  # fmt: skip
    run.fit(model, Classification(splits.train, splits.test), cfg)  # a divergence marks the run
    xt, yt = run.put(*splits.test.tensors)
    n_blocks = (s.depth - 2) // 2  # (depth - 2) / 6 blocks per stage, three stages
    ks = [1, 2, 4, n_blocks // 2]
    lesions = lesion_study(model, xt, yt, ks=ks, draws=s.draws, seed=seed)
    out: dict[str, Any] = {"lesion": lesions.as_dict()}
    if c.kind == "residual":
        xb, yb = run.put(*(t[: s.path_batch] for t in splits.train.tensors))
        out["paths"] = path_gradient_contribution(
            model, (xb,), yb, F.cross_entropy, samples=s.path_samples, seed=seed
        )
        out["paths"]["counts"] = model_block_paths(model).counts
    return out


@dataclass
class PathGradient:
    """The gradient reaching the trained ResNet's first block along paths of each length."""

    n: int  # blocks
    lengths: list[int]  # 0..n
    mean_grad: list[float]  # input-gradient norm of one path of each length
    paths: list[float]  # C(n, k)
    total: list[float]  # mean_grad * paths: the gradient all paths of a length carry
    counts: list[float]  # path-length distribution of the model's block chain

    @property
    def gradient_mean_length(self) -> float:
        share = np.asarray(self.total) / np.sum(self.total)
        return float((share * np.arange(len(share))).sum())

    @property
    def mean_length(self) -> float:
        c = np.asarray(self.counts, dtype=float)
        return float((c * np.arange(len(c))).sum() / c.sum())


@dataclass
class Result(Summary):
    depth: int
    epochs: int
    seeds: list[int]
    lesions: dict[str, list[LesionResult]]  # residual / plain -> per seed
    paths: list[PathGradient]  # the ResNet's, per seed
    diverged: list[str]

    def medians(self, kind: str) -> list[float]:
        """Per seed, the median retained accuracy over single deletions."""
        return [_median_retained(les) for les in self.lesions[kind]]

    def bases(self, kind: str) -> list[float]:
        return [les.base for les in self.lesions[kind]]

    def retained(self, kind: str) -> Stat:
        """The median retained accuracy over seeds, with its 95% t-interval."""
        return describe(self.medians(kind))

    def gain(self) -> Stat:
        """ResNet minus plain median retained accuracy, paired by seed (a seed gives both nets
        the same initial weights and batches), with its 95% t-interval."""
        return difference(self.medians("residual"), self.medians("plain"), paired=True)


@register_claim
class LesionEnsemble(Claim[Settings, Condition, Result]):
    id = "C18"
    slug = "lesion-ensemble"
    title = "Residual networks behave like ensembles of shallow paths"
    statement = (
        "(Veit et al. 2016) A residual network behaves like an ensemble of relatively shallow "
        "paths: deleting one of its blocks barely hurts it, while deleting one layer of a plain "
        "network breaks it."
    )
    method = (
        "A 1-D ResNet and its plain twin (depth 26 at quick scale, 12 blocks; 110 at full) "
        "trained on MNIST-1D under the same budget. Test accuracy after deleting each block "
        "(residual: branch removed, shortcut kept; plain: the layer replaced by the identity, "
        "downsampling layers excluded since they cannot be) and after deleting k random blocks. "
        "Path-length distribution of the block chain and the gradient reaching the first block "
        "along paths of each length (Veit et al. section 4.2), on the trained ResNet."
    )
    criterion = (
        "With retained = (lesioned acc - 0.1) / (intact acc - 0.1) and, per seed, its median "
        "over single-block deletions. Positive control: both intact nets reach test accuracy "
        ">= 0.5 for every seed (else inconclusive: the budget cannot decide). Fails when the "
        "ResNet's median retained accuracy is not above the plain twin's on average (the "
        "per-seed difference, paired by seed); holds when that difference's 95% t-interval "
        "excludes 0, the ResNet's retained accuracy has a 95% interval at or above 0.75 and "
        "the plain twin's at or below 0.5; inconclusive otherwise."
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
    default_seeds = {"tiny": 5, "quick": 5, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(k) for k in KINDS]

    def cost(self, s: Settings, c: Condition) -> float:
        return s.depth * s.epochs * (s.n_train or 4000) / 1000

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        lesions = {k: [_lesions(r.get("lesion")) for r in runs.where(kind=k)] for k in KINDS}
        paths = [PathGradient(**r.get("paths")) for r in runs.where(kind="residual")]
        diverged = [f"{r.condition.kind} seed {r.seed}: {r.error}" for r in runs if r.diverged]
        return Result(s.depth, s.epochs, runs.seeds, lesions, paths, diverged)

    def checks(self, r: Result) -> list[Check]:
        if r.diverged:
            return [Check("every run trained without diverging", False, "; ".join(r.diverged), "evidence")]  # fmt: skip
        intact = r.bases("residual") + r.bases("plain")
        res, plain, gain = r.retained("residual"), r.retained("plain"), r.gain()
        medians = f"ResNet {_fmt(r.medians('residual'))}, plain {_fmt(r.medians('plain'))}"
        control = Check(
            f"both intact nets are accurate (every seed >= {CONTROL_ACC}, chance {CHANCE})",
            min(intact) >= CONTROL_ACC,
            f"intact test accuracy ResNet {_fmt(r.bases('residual'))}, plain "
            f"{_fmt(r.bases('plain'))}",
            "control",
        )
        less = Check(
            "one deletion hurts the ResNet less than the plain twin on average",
            gain.mean > 0,
            f"median retained {medians}; ResNet - plain {gain}",
        )
        where = "after one deletion (95% interval)"
        return [
            control,
            less,
            Check("the 95% interval of ResNet - plain retained excludes 0", gain.excludes_zero,
                  str(gain), "evidence"),
            Check(f"the ResNet keeps >= {RESIDUAL_KEEPS} {where}", res.lo >= RESIDUAL_KEEPS,
                  f"ResNet {res}", "evidence"),
            Check(f"the plain twin keeps <= {PLAIN_LOSES} {where}", plain.hi <= PLAIN_LOSES,
                  f"plain {plain}", "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        n = self.numbers(r)
        return (
            f"median retained accuracy after one deletion: ResNet {_fmt(r.medians('residual'))} "
            f"(intact acc {_fmt(r.bases('residual'))}), plain {_fmt(r.medians('plain'))} (intact "
            f"acc {_fmt(r.bases('plain'))}) over {len(r.seeds)} seed(s); gradient-weighted mean "
            f"path length {n['gradient_mean_path_length']:.2f} blocks vs mean path length "
            f"{n['paths_mean_length']:.2f}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, runs in r.lesions.items():
            out[f"{kind}_base_acc"] = float(np.mean(r.bases(kind)))
            out[f"{kind}_median_retained"] = float(np.mean(r.medians(kind)))
            out[f"{kind}_worst_retained"] = float(np.mean([min(_retained(les)) for les in runs]))
        out["gradient_mean_path_length"] = float(np.mean([p.gradient_mean_length for p in r.paths]))
        out["paths_mean_length"] = float(np.mean([p.mean_length for p in r.paths]))
        gain = r.gain()
        out.update(retained_gain=gain.mean, retained_gain_lo=gain.lo, retained_gain_hi=gain.hi)
        return out

    def literature(self, r: Result) -> list[Comparison]:
        res, plain, n = r.retained("residual"), r.retained("plain"), self.numbers(r)
        worst = n["residual_worst_retained"]
        many = _random_lesions(r.lesions["residual"])
        harmful = [min(les.single, key=les.single.__getitem__) for les in r.lesions["residual"]]
        # the plain twin cannot delete its downsampling blocks: their names
        down = sorted({b for les in r.lesions["plain"] for b in les.not_deletable}, key=_index)
        return [
            Comparison(
                "Veit et al. 2016, Sec. 4.1 and Fig. 3(a): ResNet-110 (54 blocks), CIFAR-10",
                'deleting one block: "removing downsampling blocks does have a modest impact '
                'on performance, but no other block removal leads to a noticeable change"',
                f"depth {r.depth} ({(r.depth - 2) // 2} blocks), MNIST-1D: median retained "
                f"accuracy {res.interval()}, worst single deletion {worst:.3f} (mean over seeds)",
                _agrees(res.lo >= RESIDUAL_KEEPS, res.hi < RESIDUAL_KEEPS),
            ),
            Comparison(
                "Veit et al. 2016, Sec. 4.1 and Fig. 3(a): which deletions hurt",
                "only removing a downsampling block has a (modest) impact",
                f"most harmful single deletion per seed: {', '.join(harmful)} (downsampling "
                f"blocks: {', '.join(down) or 'none'})",
                all(name in down for name in harmful) if down else None,
            ),
            Comparison(
                "Veit et al. 2016, Sec. 4.1 and Fig. 3(a): VGG (plain), CIFAR-10",
                "deleting any single layer of the plain network makes its performance drop sharply",
                f"plain twin: median retained accuracy {plain.interval()}",
                _agrees(plain.hi <= PLAIN_LOSES, plain.lo > PLAIN_LOSES),
            ),
            Comparison(
                "Veit et al. 2016, Sec. 4.2 and Fig. 5(a): deleting many blocks",
                "error grows smoothly with the number of deleted blocks (no sudden collapse)",
                f"ResNet test accuracy after deleting k random blocks: {many}",
                None,  # 54 blocks on CIFAR-10 there, a few here: the k are not comparable
            ),
            Comparison(
                "Veit et al. 2016, abstract (ResNet-110)",
                "most of the gradient comes from paths of 10-34 layers, far shorter than the "
                "network (the mean path is half its blocks)",
                f"gradient-weighted mean path length {n['gradient_mean_path_length']:.2f} "
                f"blocks vs mean path length {n['paths_mean_length']:.2f}",
                n["gradient_mean_path_length"] < n["paths_mean_length"],
            ),
        ]

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for i, seed in enumerate(r.seeds):
            for kind in KINDS:
                les = r.lesions[kind][i]
                accs = les.single.values()
                rows.append([
                    seed, kind, les.base, statistics.median(accs), min(accs),
                    _median_retained(les), len(les.single), len(les.not_deletable),
                ])  # fmt: skip
        return [
            Table(
                f"Single-block deletions, depth {r.depth}, {r.epochs} epochs on MNIST-1D",
                ["seed", "net", "intact acc", "median lesioned acc", "worst lesioned acc",
                 "median retained", "deletable", "not deletable"],
                rows,
                "retained = (acc - 0.1) / (intact acc - 0.1); plain downsampling layers change "
                "shape and cannot be deleted",
            )
        ]  # fmt: skip

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.5)
        ax = axes[0][0]
        for kind in KINDS:
            for i, les in enumerate(r.lesions[kind]):
                # order blocks by their index in the stage list, not as strings ("blocks.10")
                pts = sorted((_index(n), a) for n, a in les.single.items())
                ax.plot(*zip(*pts), "o-", color=COLORS[kind], ms=3, alpha=0.8,
                        label=kind if i == 0 else None)  # fmt: skip
                ax.axhline(les.base, color=COLORS[kind], ls=":", lw=1)
        ax.axhline(CHANCE, color=_plot.REFERENCE, ls="--", lw=1, label="chance")
        ax.set(title="delete one block (dotted: intact)", xlabel="deleted block",
               ylabel="test accuracy", ylim=(0, 1))  # fmt: skip
        ax.legend()
        ax = axes[0][1]
        for kind in KINDS:
            runs = r.lesions[kind]
            ks = sorted({k for les in runs for k in les.random})
            means = [np.mean([a for les in runs for a in les.random.get(k, [])]) for k in ks]
            ax.plot(
                [0, *ks], [np.mean(r.bases(kind)), *means], "o-", color=COLORS[kind], label=kind
            )
        ax.axhline(CHANCE, color=_plot.REFERENCE, ls="--", lw=1)
        ax.set(title="delete k random blocks", xlabel="k", ylabel="test accuracy", ylim=(0, 1))
        ax.legend()
        ax = axes[0][2]
        if r.paths:
            counts = np.mean([np.asarray(p.counts) / np.sum(p.counts) for p in r.paths], axis=0)
            share = np.mean([np.asarray(p.total) / np.sum(p.total) for p in r.paths], axis=0)
            lengths = r.paths[0].lengths
            ax.bar(lengths, counts, color=_plot.REFERENCE, alpha=0.5, label="share of paths")
            ax.plot(lengths, share, "o-", color=_plot.RESIDUAL, label="share of gradient")
            ax.set(title="ResNet paths by length (trained)", xlabel="path length (blocks)",
                   ylabel="fraction")  # fmt: skip
            ax.legend()
        _plot.save(fig, outdir / "lesions.png")
        return [
            Figure(
                "lesions.png",
                "Left: test accuracy after deleting each block, every seed (ResNet blue, plain "
                "orange; missing plain points are downsampling layers). Middle: deleting k random "
                "blocks (mean over seeds and draws). Right: distribution of path lengths in the "
                "ResNet and the share of the input gradient carried by paths of each length "
                "(mean over seeds).",
            )
        ]


def _lesions(stored: dict[str, Any]) -> LesionResult:
    """A stored ``LesionResult.as_dict()`` (JSON: the keys of ``random`` are strings)."""
    random = {int(k): v for k, v in stored["random"].items()}
    return LesionResult(stored["base"], stored["single"], random, stored["not_deletable"])


def _retained(les: LesionResult) -> list[float]:
    """Per single-block deletion, the share of above-chance accuracy kept."""
    return [retained(a, les.base) for a in les.single.values()]


def _median_retained(les: LesionResult) -> float:
    return statistics.median(_retained(les))


def _random_lesions(runs: list[LesionResult]) -> str:
    """Mean test accuracy (over seeds and draws) after deleting k random blocks, per k."""
    ks = sorted({k for les in runs for k in les.random})
    means = {k: np.mean([a for les in runs for a in les.random.get(k, [])]) for k in ks}
    return ", ".join(f"k={k}: {m:.3f}" for k, m in means.items()) or "none"


def _index(block: str) -> int:
    """The position of ``"blocks.10"`` in the stage list (not its place as a string)."""
    return int(block.rsplit(".", 1)[-1])


def _agrees(seen: bool, reversed_: bool) -> bool | None:
    return True if seen else False if reversed_ else None
