"""C06 scale-balance: a branch gate proportional to sigma keeps skip and branch balanced.

A block ``y = x + F(x)`` whose branch ends in a normalisation layer adds a branch of size ~1 to
a skip of size ~sigma (the input's standard deviation), so its branch/skip ratio is ~1/sigma.
:class:`skiplab.nn.ScaleBalancedResidual` gates the branch by sigma itself; the claim measures
the ratio against the input scale and trains both kinds of network
(:class:`skiplab.models.scale_net.ScaleNet`) on inputs scaled by 1e-3..1e3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference, fmt_values
from skiplab.data import load_mnist1d
from skiplab.models.scale_net import (
    BLOCK_KINDS,
    ScaleNet,
    branch_to_skip_ratio,
    homogeneity_error,
    make_block,
    normalised_branch,
)
from skiplab.train import Classification, TrainConfig

BLOCKS = BLOCK_KINDS  # standard x + F(x), balanced x + sigma F(x / sigma)
RATIO_SCALES = tuple(float(s) for s in np.logspace(-3, 3, 13))
ACC_SPREAD = 0.02  # the balanced net's accuracy may differ by at most 2 points across scales
CHANCE = 0.1  # ten classes
CONTROL_ACC = 0.2  # the positive control: the balanced net at scale 1 reaches twice chance

_fmt = partial(fmt_values, spec=".3f")  # this claim's precision


@dataclass(frozen=True)
class Settings:
    width: int = 64  # of every block, in the networks and in the one-block ratio study
    depth: int = 6  # blocks per network: a stack, at ~4 s per training run on one core
    epochs: int = 8  # the quick budget (balanced net at scale 1: 43% test accuracy)
    n_train: int = 4000  # the canonical MNIST-1D training split, all of it
    train_scales: tuple[float, ...] = (1e-3, 1.0, 1e3)  # six decades, as the ratio; the
    # standard net is at its worst at an end (measured at 1e-3, 1e-1, 1, 1e1, 1e3: 0.31, 0.50,
    # 0.52, 0.58, 0.27), so the ends and the middle decide the claim
    batch_size: int = 128  # a common MNIST-1D batch
    lr: float = 3e-3  # AdamW (no weight decay), cosine to 0


SCALES = {
    "tiny": Settings(width=32, depth=3, epochs=6, n_train=800, train_scales=(1e-3, 1.0, 1e3)),
    "quick": Settings(),
    "full": Settings(width=128, depth=12, epochs=40,
                     train_scales=(1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    kind: str  # standard x + F(x) or balanced x + sigma F(x / sigma)
    study: str  # ratio: one block at init over RATIO_SCALES; train: a network on MNIST-1D
    input_scale: float = 1.0  # train: the MNIST-1D inputs are multiplied by it


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """One block's ratio and homogeneity error per RATIO_SCALES (logged per scale index), or
    one network trained on scaled MNIST-1D (its final test accuracy)."""
    if c.study == "ratio":
        block = run.build(lambda: make_block(c.kind, normalised_branch(s.width))).eval()
        # drawn right after the block from the seeded generator: the same z for both kinds
        z = run.put(torch.randn(256, s.width))  # (B, width), unit scale
        ratios = [branch_to_skip_ratio(block, scale * z) for scale in RATIO_SCALES]
        homog = [homogeneity_error(block, z, scale) for scale in RATIO_SCALES]
        for i, (ratio, error) in enumerate(zip(ratios, homog)):
            run.log(i, ratio=ratio, homogeneity=error)
        return {"ratio": ratios, "homogeneity": homog}
    data = load_mnist1d()
    x_train, y_train = data.train.tensors[0][: s.n_train], data.train.tensors[1][: s.n_train]
    x_test, y_test = data.test.tensors
    net = run.build(lambda: ScaleNet(c.kind, x_train[0].numel(), s.width, s.depth, 10))
    task = Classification(
        TensorDataset(x_train * c.input_scale, y_train),
        TensorDataset(x_test * c.input_scale, y_test),
    )
    cfg = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, optimizer="adamw",
                      weight_decay=0.0, schedule="cosine")  # fmt: skip
    fit = run.fit(net, task, cfg)
    return {"test_acc": fit.last.get("test_acc", math.nan) if fit.diverged is None else math.nan}


@dataclass
class Kind:
    """One kind of block: the ratio study and the trained networks, over seeds."""

    ratios: list[list[float]]  # per seed, per RATIO_SCALES: |y - x| / |x|
    homogeneity: list[list[float]]  # per seed, per RATIO_SCALES: |f(c z) - c f(z)| / |c f(z)|
    acc: dict[float, list[float]]  # input scale -> final test accuracy per seed
    ratio_change: float  # max / min of the mean ratio over RATIO_SCALES
    ratio_slope: float  # log-log slope of the mean ratio against the scale

    @property
    def mean_ratio(self) -> np.ndarray:
        return np.mean(np.asarray(self.ratios), axis=0)

    def mean_acc(self) -> dict[float, float]:
        return {scale: float(np.mean(v)) for scale, v in self.acc.items()}

    def worst_acc(self) -> list[float]:
        """Per seed, the accuracy at its worst input scale."""
        return [min(v[i] for v in self.acc.values()) for i in range(len(self.ratios))]

    def spread(self) -> float:
        """Largest minus smallest mean accuracy over the input scales."""
        means = list(self.mean_acc().values())
        return max(means) - min(means)


@dataclass
class Result(Summary):
    settings: Settings
    seeds: list[int]
    kinds: dict[str, Kind]  # standard / balanced

    def worst_gain(self) -> Stat:
        """Balanced minus standard worst-scale accuracy, paired by seed (one seed gives both
        networks the same initial weights and batches), with its 95% t-interval."""
        bal, std = self.kinds["balanced"], self.kinds["standard"]
        return difference(bal.worst_acc(), std.worst_acc(), paired=True)


@register_claim
class ScaleBalance(Claim[Settings, Condition, Result]):
    id = "C06"
    slug = "scale-balance"
    title = "A gate proportional to sigma balances skip and branch at every input scale"
    statement = (
        "The skip carries the input's variance sigma^2 while a normalised branch carries 1; a "
        "gate proportional to sigma keeps the two balanced and makes the module "
        "scale-invariant (exactly homogeneous: block(c x) = c block(x))."
    )
    method = (
        "One block y = x + F(x) with a branch ending in LayerNorm (standard) vs the same branch "
        "in ScaleBalancedResidual, y = x + sigma(x) F(x / sigma(x)): branch/skip ratio "
        "|y - x| / |x| and homogeneity error |f(c x) - c f(x)| / |c f(x)| for inputs of scale "
        "1e-3..1e3 (13 scales). Then networks of such blocks (bias-free stem, unit-RMS read-out "
        "shared by both) trained with AdamW on MNIST-1D whose inputs are multiplied by 1e-3, "
        "1 and 1e3 (quick, 5 seeds; full adds 1e-2, 1e-1, 1e1, 1e2): test accuracy per scale "
        "over seeds."
    )
    criterion = (
        "Positive control: the balanced network trains at input scale 1 (every seed's test "
        "accuracy >= 0.2, twice chance), else inconclusive (the budget cannot decide). Holds "
        "when (1) the balanced block's branch/skip ratio changes by less than 1% across "
        "1e-3..1e3 while the standard block's changes by more than 100x; (2) the balanced "
        "network's mean test accuracy varies by less than 2 points across input scales; and "
        "(3) its accuracy at its worst input scale is higher than the standard network's at "
        "that network's worst scale: the per-seed difference (paired: a seed gives both "
        "networks the same initial weights and batches) is positive on average, else fails, "
        "and its 95% t-interval excludes 0, else inconclusive. (1) or (2) not met: fails."
    )
    math = (
        "Let sigma = std(x) per sample and F end in a normalisation, so |F(x)| ~ sqrt(d) for any "
        "input.\n"
        "Standard: y = x + F(x);  |F(x)| / |x| ~ sqrt(d) / (sqrt(d) sigma) = 1/sigma: the block "
        "is ~ the identity for sigma >> 1 (the branch is invisible) and ~ the plain layer F for "
        "sigma << 1 (the skip is invisible).\n"
        "Balanced: y = x + sigma(x) F(x / sigma(x)). Since sigma(c x) = c sigma(x) for c > 0, "
        "x / sigma(x) is unchanged by x -> c x, so\n"
        "  y(c x) = c x + c sigma(x) F(x / sigma(x)) = c y(x)   (exact positive homogeneity)\n"
        "and |y - x| / |x| = |F(x / sigma)| / |x / sigma| does not depend on the scale at all.\n"
        "A stack of balanced blocks is homogeneous (a composition of degree-1 maps); with a "
        "bias-free stem and a read-out that divides by the RMS, the network's loss is invariant "
        "to the input scale, and its gradient with respect to every weight is too (the loss is "
        "degree-0 in the stem output h, so dL/dh is degree -1, and dL/dW_stem = dL/dh x^T is "
        "degree 0): training follows the same trajectory at every input scale, up to rounding."
    )
    references = (
        "He et al. 2016, Identity Mappings in Deep Residual Networks",
        "Xiong et al. 2020, On Layer Normalization in the Transformer Architecture",
        "Liu et al. 2020, Understanding the Difficulty of Training Transformers (Admin)",
    )
    default_seeds = {"tiny": 3, "quick": 5, "full": 5}  # ~1.5 CPU-s a training run
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        ratio = [Condition(kind, "ratio") for kind in BLOCKS]
        return ratio + [Condition(k, "train", x) for k in BLOCKS for x in s.train_scales]

    def label(self, c: Condition) -> str:
        return f"{c.kind} ratio" if c.study == "ratio" else f"{c.kind} x{c.input_scale:g}"

    def cost(self, s: Settings, c: Condition) -> float:
        return 0.01 if c.study == "ratio" else s.epochs * s.n_train * s.width * s.depth / 1e6

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        def kind(k: str) -> Kind:
            ratio = runs.where(kind=k, study="ratio")
            ratios = [list(r.get("ratio")) for r in ratio]
            mean = np.mean(np.asarray(ratios), axis=0)
            return Kind(
                ratios, [list(r.get("homogeneity")) for r in ratio],
                {x: runs.values("test_acc", kind=k, study="train", input_scale=x)
                 for x in s.train_scales},
                float(mean.max() / mean.min()),
                float(np.polyfit(np.log10(RATIO_SCALES), np.log10(mean), 1)[0]),
            )  # fmt: skip

        return Result(s, runs.seeds, {k: kind(k) for k in BLOCKS})

    def checks(self, r: Result) -> list[Check]:
        std, bal = r.kinds["standard"], r.kinds["balanced"]
        at_one = bal.acc.get(1.0, [])
        gain = r.worst_gain()
        worst = f"balanced {_fmt(bal.worst_acc())} vs standard {_fmt(std.worst_acc())}"
        return [
            Check(f"the balanced network trains at input scale 1 (every seed >= {CONTROL_ACC})",
                  bool(at_one) and min(at_one) >= CONTROL_ACC,
                  f"test accuracy {_fmt(at_one)}, chance {CHANCE}", "control"),
            Check("scale-free ratio: balanced changes < 1%, standard > 100x across 1e-3..1e3",
                  bal.ratio_change < 1.01 and std.ratio_change > 100,
                  f"change balanced {bal.ratio_change:.4g}x, standard {std.ratio_change:.3g}x"),
            Check("balanced accuracy independent of input scale (spread < 2 points)",
                  bal.spread() < ACC_SPREAD, f"spread {100 * bal.spread():.2f} points"),
            Check("better worst-scale accuracy than the standard network (mean difference > 0)",
                  gain.mean > 0, f"{worst}; difference {gain}"),
            Check("the worst-scale difference's 95% interval excludes 0", gain.excludes_zero,
                  str(gain), "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        std, bal = r.kinds["standard"], r.kinds["balanced"]
        rs, rb = std.mean_ratio, bal.mean_ratio
        means = list(bal.mean_acc().values())
        return (
            f"branch/skip ratio over 1e-3..1e3: standard {rs[0]:.3g} -> {rs[-1]:.3g} (log-log "
            f"slope {std.ratio_slope:.2f}), balanced {rb[0]:.3g} -> {rb[-1]:.3g} (max "
            f"homogeneity error {np.max(bal.homogeneity):.1e}); balanced test accuracy spread "
            f"across input scales {(max(means) - min(means)) * 100:.2f} points (means "
            f"{_fmt(means)}); standard accuracy by scale "
            f"{', '.join(f'x{x:g}: {m:.3f}' for x, m in std.mean_acc().items())}; worst-scale "
            f"accuracy per seed balanced {_fmt(bal.worst_acc())} vs standard "
            f"{_fmt(std.worst_acc())} (difference {r.worst_gain().interval()})."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {}
        for name, k in r.kinds.items():
            ratio = k.mean_ratio
            out[f"{name}_ratio_at_1e-3"] = float(ratio[0])
            out[f"{name}_ratio_at_1"] = float(ratio[len(ratio) // 2])
            out[f"{name}_ratio_at_1e3"] = float(ratio[-1])
            out[f"{name}_ratio_change"] = k.ratio_change
            out[f"{name}_ratio_loglog_slope"] = k.ratio_slope
            out[f"{name}_max_homogeneity_error"] = float(np.max(k.homogeneity))
            out.update({f"{name}_acc_x{x:g}": m for x, m in k.mean_acc().items()})
        for name, k in r.kinds.items():
            out[f"{name}_best_scale_acc"] = max(k.mean_acc().values())
            out[f"{name}_worst_scale_acc"] = float(np.mean(k.worst_acc()))
        gain = r.worst_gain()
        out.update(worst_gain=gain.mean, worst_gain_lo=gain.lo, worst_gain_hi=gain.hi)
        return out

    def literature(self, r: Result) -> list[Comparison]:
        std, bal = r.kinds["standard"], r.kinds["balanced"]
        return [
            Comparison(
                "De & Smith 2020, Batch Normalization Biases Residual Blocks Towards the "
                "Identity Function in Deep Networks (abstract; NeurIPS 2020)",
                "a normalised branch is downscaled relative to the skip by a factor of the "
                "order of the skip's growth (sqrt of the depth): what a block adds shrinks "
                "as the scale of its input grows",
                f"standard block: branch/skip ~ scale^{std.ratio_slope:.2f} (1/sigma) over "
                f"1e-3..1e3, {std.mean_ratio[0]:.3g} -> {std.mean_ratio[-1]:.3g}",
                bool(abs(std.ratio_slope + 1) < 0.1),
            ),
            Comparison(
                "Brock, De & Smith 2021 (ICLR), Characterizing signal propagation to close the "
                "performance gap in unnormalized ResNets (NF-ResNet blocks)",
                "x + alpha f(x / beta) with beta the expected std of x: the branch sees a "
                "unit-scale input; its output is not rescaled by beta (alpha ~ 0.2)",
                f"balanced x + sigma F(x / sigma) with per-sample sigma: ratio "
                f"{bal.mean_ratio[0]:.3g} at every scale, homogeneity error "
                f"{np.max(bal.homogeneity):.1e}",
                None,  # another block: beta is a constant and the branch output is not gated
            ),
        ]

    def notes(self, r: Result) -> list[str]:
        best = {name: max(k.mean_acc().values()) for name, k in r.kinds.items()}
        return [
            f"Robustness is not accuracy: at its best input scale the standard network reaches "
            f"{best['standard']:.3f} against the balanced network's {best['balanced']:.3f}. The "
            "balanced blocks divide every sample by its own sigma, so nothing downstream can "
            "use a sample's overall amplitude; the claim is about the balance across scales, "
            "not about the best accuracy at one scale."
        ]

    def tables(self, r: Result) -> list[Table]:
        s = r.settings
        ratio = {name: k.mean_ratio for name, k in r.kinds.items()}
        return [
            Table(
                "Branch/skip ratio |y - x| / |x| of one block at init (mean over seeds)",
                ["input scale", *BLOCKS],
                [[f"{x:g}", *(float(ratio[k][i]) for k in BLOCKS)]
                 for i, x in enumerate(RATIO_SCALES)],
                "balanced: y = x + sigma F(x / sigma); standard: y = x + F(x); same branch.",
            ),
            Table(
                f"MNIST-1D test accuracy after {s.epochs} epochs, inputs multiplied by the scale",
                ["input scale", *BLOCKS],
                [[f"{x:g}", *(str(describe(r.kinds[k].acc[x])) for k in BLOCKS)]
                 for x in s.train_scales],
                f"{s.depth} blocks of width {s.width}, AdamW lr {s.lr:g}, {s.n_train} training "
                "examples.",
            ),
        ]  # fmt: skip

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.6)
        scales = np.asarray(RATIO_SCALES)
        for kind in BLOCKS:
            k = r.kinds[kind]
            style = {"color": COLORS[kind], "label": LABELS[kind]}
            axes[0][0].loglog(scales, k.mean_ratio, "o-", **style)
            h = np.maximum(np.asarray(k.homogeneity).max(0), 1e-10)
            axes[0][1].loglog(scales, h, "o-", **style)
            xs = list(k.acc)
            acc = np.asarray([k.acc[x] for x in xs])  # (scales, seeds)
            axes[0][2].errorbar(xs, acc.mean(1), yerr=acc.std(1), fmt="o-", capsize=3, **style)
        axes[0][0].loglog(scales, 1 / scales, ":", color=_plot.REFERENCE, label="1 / scale")
        axes[0][0].set(
            title="branch / skip at init", xlabel="input scale σ", ylabel="|y - x| / |x|"
        )
        axes[0][1].set(title="homogeneity error (floor 1e-10)", xlabel="scale c",
                       ylabel="|f(cx) - c f(x)| / |c f(x)|")  # fmt: skip
        axes[0][2].set_xscale("log")
        axes[0][2].set(title="MNIST-1D test accuracy (mean ± sd)", xlabel="input scale",
                       ylabel="test accuracy")  # fmt: skip
        for ax in axes[0]:
            ax.legend()
        _plot.save(fig, outdir / "scale_balance.png")
        caption = (
            "Left: what a block adds relative to its skip, against the input scale: ~1/σ for "
            "the standard block, constant for the balanced one. Middle: deviation from exact "
            "homogeneity f(cx) = c f(x) (float32 rounding for the balanced block). Right: test "
            "accuracy of networks of each block trained on MNIST-1D with the inputs multiplied "
            "by the scale."
        )
        return [Figure("scale_balance.png", caption)]


COLORS = {"standard": _plot.PLAIN, "balanced": _plot.RESIDUAL}
LABELS = {"standard": "standard x + F(x)", "balanced": "balanced x + σF(x/σ)"}
