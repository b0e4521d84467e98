"""C06 scale-balance: a branch gate proportional to sigma keeps skip and branch balanced.

A block ``y = x + F(x)`` whose branch ends in a normalisation layer adds a branch of size ~1 to
a skip of size ~sigma (the input's standard deviation), so its branch/skip ratio is ~1/sigma.
:class:`skiplab.nn.ScaleBalancedResidual` gates the branch by sigma itself; the claim measures
the ratio against the input scale and trains both kinds of network on inputs scaled by
1e-3..1e3.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import summarize
from skiplab.nn import Residual, ScaleBalancedResidual
from skiplab.train import TrainConfig, Trainer

BLOCKS = ("standard", "balanced")
RATIO_SCALES = tuple(float(s) for s in np.logspace(-3, 3, 13))
ACC_SPREAD = 0.02  # the balanced net's accuracy may differ by at most 2 points across scales


def normalised_branch(width: int) -> nn.Sequential:
    """The branch both blocks share: it ends in LayerNorm, so its output has unit scale."""
    return nn.Sequential(
        nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(),
        nn.Linear(width, width), nn.LayerNorm(width),
    )  # fmt: skip


def make_block(kind: str, branch: nn.Module) -> nn.Module:
    """``x + F(x)`` (standard) or ``x + sigma(x) F(x / sigma(x))`` (balanced)."""
    if kind == "standard":
        return Residual(branch)
    if kind == "balanced":
        return ScaleBalancedResidual(branch)
    raise ValueError(f"block kind must be one of {BLOCKS}, got {kind!r}")


class UnitScale(nn.Module):
    """Divide each sample by its root-mean-square: the head sees the direction only.

    Shared by both networks, so that the only scale-dependent parts are the blocks.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.pow(2).mean(dim=1, keepdim=True).sqrt()  # (B, 1)
        return x / torch.where(rms > 0, rms, torch.ones_like(rms))


class ScaleNet(nn.Module):
    """Bias-free linear stem, ``depth`` blocks of one kind, unit-scale read-out, linear head.

    Shapes:
        input ``(B, *)`` flattened to ``(B, in_features)``; returns ``(B, num_classes)``.
    """

    def __init__(self, kind: str, in_features: int, width: int, depth: int, classes: int) -> None:
        super().__init__()
        # no stem bias: a bias would make the stem itself scale-dependent for both networks
        self.stem = nn.Linear(in_features, width, bias=False)
        self.blocks = nn.Sequential(
            *(make_block(kind, normalised_branch(width)) for _ in range(depth))
        )
        self.readout = UnitScale()
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x.flatten(1)))  # (B, width)
        return self.head(self.readout(h))


def branch_to_skip_ratio(block: nn.Module, x: torch.Tensor) -> float:
    """``|y - x| / |x|``: the size of what the block adds relative to what the skip carries."""
    with torch.no_grad():
        return float((block(x) - x).norm() / x.norm())


@register_claim
class ScaleBalance(Claim):
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
        "1e-1, 1, 1e1, 1e3: test accuracy per scale over seeds."
    )
    criterion = (
        "Holds when (1) the balanced block's branch/skip ratio changes by less than 1% across "
        "1e-3..1e3 while the standard block's changes by more than 100x; (2) the balanced "
        "network's mean test accuracy varies by less than 2 points across input scales; and "
        "(3) for every seed its accuracy at the worst input scale is higher than the standard "
        "network's at that network's worst scale. Fails otherwise."
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
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        width = ctx.pick(tiny=32, quick=64, full=128)
        depth = ctx.pick(tiny=3, quick=6, full=12)
        epochs = ctx.pick(tiny=3, quick=8, full=40)
        n_train = ctx.pick(tiny=800, quick=4000, full=4000)
        train_scales = ctx.pick(
            tiny=(1e-3, 1.0, 1e3), quick=(1e-3, 1e-1, 1.0, 1e1, 1e3), full=(1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
        )  # fmt: skip
        from skiplab.data import load_mnist1d

        data = load_mnist1d()
        x_train, y_train = data.train.tensors[0][:n_train], data.train.tensors[1][:n_train]
        x_test, y_test = data.test.tensors
        ev = Evidence(seeds=ctx.seeds)
        ratios: dict[str, list[list[float]]] = {k: [] for k in BLOCKS}
        homog: dict[str, list[list[float]]] = {k: [] for k in BLOCKS}
        acc: dict[str, dict[str, list[float]]] = {k: {} for k in BLOCKS}
        curves: dict[str, dict[str, list[list[float]]]] = {k: {} for k in BLOCKS}
        for seed in ctx.seeds:
            cfg = {"width": width, "scales": list(RATIO_SCALES)}
            with ctx.run(f"C06 ratio seed {seed}", cfg, seed=seed):
                torch.manual_seed(seed)
                branch = normalised_branch(width)
                z = torch.randn(256, width)  # (B, width), unit scale
                for kind in BLOCKS:
                    block = make_block(kind, copy.deepcopy(branch)).eval()
                    ratios[kind].append([branch_to_skip_ratio(block, s * z) for s in RATIO_SCALES])
                    with torch.no_grad():
                        base = block(z)
                        homog[kind].append([
                            float((block(s * z) - s * base).norm() / (s * base).norm())
                            for s in RATIO_SCALES
                        ])  # fmt: skip
            for kind in BLOCKS:
                for scale in train_scales:
                    tcfg = TrainConfig(
                        epochs=epochs, batch_size=128, lr=3e-3, optimizer="adamw",
                        weight_decay=0.0, schedule="cosine", seed=seed,
                    )  # fmt: skip
                    cfg = {"kind": kind, "input_scale": scale, "width": width, "depth": depth,
                           "epochs": epochs, "n_train": n_train}  # fmt: skip
                    with ctx.run(f"C06 {kind} x{scale:g} seed {seed}", cfg, seed=seed) as run_id:
                        torch.manual_seed(seed)
                        net = ScaleNet(kind, x_train[0].numel(), width, depth, 10)
                        trainer = Trainer(net, tcfg, store=ctx.store, run_id=run_id, progress=False)
                        hist = trainer.fit(
                            TensorDataset(x_train * scale, y_train),
                            TensorDataset(x_test * scale, y_test),
                        )
                    acc[kind].setdefault(f"{scale:g}", []).append(hist.last["test_acc"])
                    curves[kind].setdefault(f"{scale:g}", []).append(hist.series("train_loss"))
        ev.series.update(
            ratio_scales=list(RATIO_SCALES), ratios=ratios, homogeneity=homog, acc=acc,
            curves=curves, train_scales=[f"{s:g}" for s in train_scales],
        )  # fmt: skip
        for kind in BLOCKS:
            r = np.mean(np.asarray(ratios[kind]), axis=0)
            ev.numbers[f"{kind}_ratio_at_1e-3"] = float(r[0])
            ev.numbers[f"{kind}_ratio_at_1"] = float(r[len(r) // 2])
            ev.numbers[f"{kind}_ratio_at_1e3"] = float(r[-1])
            ev.numbers[f"{kind}_ratio_change"] = float(r.max() / r.min())
            slope = np.polyfit(np.log10(RATIO_SCALES), np.log10(r), 1)[0]
            ev.numbers[f"{kind}_ratio_loglog_slope"] = float(slope)
            ev.numbers[f"{kind}_max_homogeneity_error"] = float(np.max(homog[kind]))
            for key, values in acc[kind].items():
                ev.numbers[f"{kind}_acc_x{key}"] = float(np.mean(values))
        best = {k: max(float(np.mean(v)) for v in acc[k].values()) for k in BLOCKS}
        ev.numbers.update({f"{k}_best_scale_acc": v for k, v in best.items()})
        ev.notes.append(
            f"Robustness is not accuracy: at its best input scale the standard network reaches "
            f"{best['standard']:.3f} against the balanced network's {best['balanced']:.3f}. The "
            "balanced blocks divide every sample by its own sigma, so nothing downstream can "
            "use a sample's overall amplitude; the claim is about the balance across scales, "
            "not about the best accuracy at one scale."
        )
        ev.tables.append(
            Table(
                "Branch/skip ratio |y - x| / |x| of one block at init (mean over seeds)",
                ["input scale", *BLOCKS],
                [
                    [f"{s:g}", *(float(np.mean(np.asarray(ratios[k])[:, i])) for k in BLOCKS)]
                    for i, s in enumerate(RATIO_SCALES)
                ],
                "balanced: y = x + sigma F(x / sigma); standard: y = x + F(x); same branch.",
            )
        )
        ev.tables.append(
            Table(
                f"MNIST-1D test accuracy after {epochs} epochs, inputs multiplied by the scale",
                ["input scale", *BLOCKS],
                [
                    [s, *(str(summarize(acc[k][s])) for k in BLOCKS)]
                    for s in ev.series["train_scales"]
                ],
                f"{depth} blocks of width {width}, AdamW lr 3e-3, {n_train} training examples.",
            )
        )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        n = evidence.numbers
        acc = evidence.series["acc"]
        scales = evidence.series["train_scales"]
        ratio_ok = n["balanced_ratio_change"] < 1.01 and n["standard_ratio_change"] > 100
        bal_means = [float(np.mean(acc["balanced"][s])) for s in scales]
        spread = max(bal_means) - min(bal_means)
        spread_ok = spread < ACC_SPREAD
        n_seeds = len(acc["balanced"][scales[0]])
        worst_bal = [min(acc["balanced"][s][i] for s in scales) for i in range(n_seeds)]
        worst_std = [min(acc["standard"][s][i] for s in scales) for i in range(n_seeds)]
        robust_ok = all(b > s for b, s in zip(worst_bal, worst_std))
        std_means = {s: float(np.mean(acc["standard"][s])) for s in scales}
        detail = (
            f"branch/skip ratio over 1e-3..1e3: standard {n['standard_ratio_at_1e-3']:.3g} -> "
            f"{n['standard_ratio_at_1e3']:.3g} (log-log slope {n['standard_ratio_loglog_slope']:.2f}), "
            f"balanced {n['balanced_ratio_at_1e-3']:.3g} -> {n['balanced_ratio_at_1e3']:.3g} "
            f"(max homogeneity error {n['balanced_max_homogeneity_error']:.1e}); balanced test "
            f"accuracy spread across input scales {spread * 100:.2f} points (means "
            f"{', '.join(f'{m:.3f}' for m in bal_means)}); standard accuracy by scale "
            f"{', '.join(f'x{s}: {m:.3f}' for s, m in std_means.items())}; worst-scale accuracy "
            f"per seed balanced {', '.join(f'{v:.3f}' for v in worst_bal)} vs standard "
            f"{', '.join(f'{v:.3f}' for v in worst_std)}."
        )
        return Verdict.from_checks(
            (
                ("scale-free ratio", ratio_ok),
                ("accuracy independent of input scale", spread_ok),
                ("better worst-scale accuracy", robust_ok),
            ),
            detail,
        )

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.6)
        scales = np.asarray(evidence.series["ratio_scales"])
        colors = {"standard": _plot.PLAIN, "balanced": _plot.RESIDUAL}
        labels = {"standard": "standard x + F(x)", "balanced": "balanced x + σF(x/σ)"}
        ax = axes[0][0]
        for kind in BLOCKS:
            r = np.asarray(evidence.series["ratios"][kind])
            ax.loglog(scales, r.mean(0), "o-", color=colors[kind], label=labels[kind])
        ax.loglog(scales, 1 / scales, ":", color=_plot.REFERENCE, label="1 / scale")
        ax.set(title="branch / skip at init", xlabel="input scale σ", ylabel="|y - x| / |x|")
        ax.legend()
        ax = axes[0][1]
        for kind in BLOCKS:
            h = np.maximum(np.asarray(evidence.series["homogeneity"][kind]).max(0), 1e-10)
            ax.loglog(scales, h, "o-", color=colors[kind], label=labels[kind])
        ax.set(title="homogeneity error (floor 1e-10)", xlabel="scale c",
               ylabel="|f(cx) - c f(x)| / |c f(x)|")  # fmt: skip
        ax.legend()
        ax = axes[0][2]
        train_scales = evidence.series["train_scales"]
        xs = np.asarray([float(s) for s in train_scales])
        for kind in BLOCKS:
            acc = np.asarray([evidence.series["acc"][kind][s] for s in train_scales])  # (S, seeds)
            ax.errorbar(xs, acc.mean(1), yerr=acc.std(1), fmt="o-", capsize=3,
                        color=colors[kind], label=labels[kind])  # fmt: skip
        ax.set_xscale("log")
        ax.set(title="MNIST-1D test accuracy (mean ± sd)", xlabel="input scale",
               ylabel="test accuracy")  # fmt: skip
        ax.legend()
        _plot.save(fig, outdir / "scale_balance.png")
        return [
            Figure(
                "scale_balance.png",
                "Left: what a block adds relative to its skip, against the input scale: ~1/σ "
                "for the standard block, constant for the balanced one. Middle: deviation from "
                "exact homogeneity f(cx) = c f(x) (float32 rounding for the balanced block). "
                "Right: test accuracy of networks of each block trained on MNIST-1D with the "
                "inputs multiplied by the scale.",
            )
        ]
