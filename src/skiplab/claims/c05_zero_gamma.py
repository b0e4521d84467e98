"""C05 zero-gamma: the last normalisation scale of each branch at 0 makes every block an identity.

Goyal et al. 2017 ("Accurate, Large Minibatch SGD", section 5.1) set the scale ``gamma`` of the
last BatchNorm of each residual branch to 0, so that every block starts as the identity (up to
its shortcut and post-activation) and the network starts as a shallow one whose depth the
training fades in. The claim checks the identity exactly on a 110-layer ResNet and a 100-layer
residual MLP, then trains both with and without zero-gamma across learning rates and seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, RunRecord, Runs
from skiplab.claims._stats import describe
from skiplab.data import load_mnist1d
from skiplab.diagnostics.identity import identity_blocks
from skiplab.models import create_model
from skiplab.nn import ZeroGamma
from skiplab.train import Classification, TrainConfig

INITS = ("standard", "zero-gamma")
COLORS = {"standard": _plot.PLAIN, "zero-gamma": _plot.RESIDUAL}
MLP = "resmlp100"  # 50 blocks: with the standard init its residual stream grows with depth
FAMILIES = {"resmlp": "ResMLP", "resnet": "ResNet"}
SMOOTH = 10  # training losses are averaged over this many steps before each budget
CURVE_POINTS = 150  # points per training curve kept for the figure


def _label(model: str) -> str:
    """``resmlp100`` -> ``ResMLP-100``, ``resnet20`` -> ``ResNet-20``."""
    family = model.rstrip("0123456789")
    return f"{FAMILIES[family]}-{model[len(family) :]}"


@dataclass(frozen=True)
class Net:
    """One network of the sweep and its budget."""

    model: str  # a registered model
    lrs: tuple[float, ...]
    n_train: int  # the first n_train MNIST-1D training examples
    epochs: int
    batch_size: int

    @property
    def depth(self) -> int:
        return int(self.model[len(self.model.rstrip("0123456789")) :])

    @property
    def label(self) -> str:
        return _label(self.model)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"in_features": 40} if self.model == MLP else {"dim": 1, "in_channels": 1}

    @property
    def budgets(self) -> list[int]:
        """A quarter, half and all of the run's optimiser steps."""
        total = math.ceil(self.n_train / self.batch_size) * self.epochs
        return sorted({max(1, total // 4), max(1, total // 2), total})


@dataclass(frozen=True)
class Settings:
    mlp_lrs: tuple[float, ...] = (0.05, 0.2, 0.8, 3.2)  # x4 apart, up to where SGD breaks
    mlp_train: int = 4000  # MNIST-1D's whole training split
    mlp_epochs: int = 3  # 96 steps: early training, where zero-gamma is meant to act
    resnet: str = "resnet110"  # He et al. 2015's deepest CIFAR ResNet, as a 1-D net
    resnet_lrs: tuple[float, ...] = (0.1, 1.6)  # He et al.'s lr and 16 times it
    resnet_train: int = 2560  # 20 steps an epoch: a ResNet-110 step costs many MLP steps
    resnet_epochs: int = 3  # 60 steps
    batch_size: int = 128  # He et al. 2015 (SGD, momentum 0.9, weight decay 1e-4, cosine)
    probe_size: int = 64  # training examples the exact-identity check runs on

    def nets(self) -> list[Net]:
        return [
            Net(MLP, self.mlp_lrs, self.mlp_train, self.mlp_epochs, self.batch_size),
            Net(self.resnet, self.resnet_lrs, self.resnet_train, self.resnet_epochs, self.batch_size),
        ]  # fmt: skip

    def net(self, model: str) -> Net:
        return next(n for n in self.nets() if n.model == model)


SCALES = {  # tiny keeps the depth of the MLP, not of the ResNet
    "tiny": Settings(mlp_lrs=(0.1, 1.0), mlp_train=512, mlp_epochs=4, resnet="resnet20",
                     resnet_lrs=(0.1, 1.0), resnet_train=512, resnet_epochs=2),
    "quick": Settings(),
    "full": Settings(mlp_lrs=(0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2), mlp_epochs=60,
                     resnet_lrs=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6), resnet_train=4000,
                     resnet_epochs=60),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    net: str  # the registered model: resmlp100, resnet110 (resnet20 at tiny scale)
    lr: float  # SGD peak learning rate
    init: str  # "standard" or "zero-gamma"


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Check the seeded init for exact identity blocks, then train it, logging every step."""
    net = s.net(c.net)
    data = load_mnist1d()
    x, y = data.train.tensors
    init = ZeroGamma() if c.init == "zero-gamma" else None
    model = run.build(lambda: create_model(c.net, branch_init=init, **net.kwargs))
    exact, blocks = identity_blocks(model, run.put(x[: s.probe_size]))
    run.log(0, identity_exact=exact, identity_blocks=blocks)
    train = TensorDataset(x[: net.n_train], y[: net.n_train])
    cfg = TrainConfig(epochs=net.epochs, batch_size=s.batch_size, lr=c.lr, log_every=1)
    fit = run.fit(model, Classification(train, data.test), cfg)  # a divergence is an outcome
    acc = math.nan if fit.diverged else fit.last["test_acc"]
    return {"identity_exact": exact, "identity_blocks": blocks, "test_acc": acc, "steps": fit.steps}


def budget_losses(losses: list[float], budgets: list[int]) -> list[float]:
    """Mean training loss over the ``SMOOTH`` steps before each budget (inf if not reached)."""
    out = []
    for b in budgets:
        window = losses[max(0, b - SMOOTH) : b]
        out.append(float(np.mean(window)) if len(losses) >= b and window else math.inf)
    return out


@dataclass
class RunResult:
    lr: float
    init: str
    seed: int
    diverged_at: int | None  # the step whose loss or gradient became non-finite
    test_acc: float
    budget_loss: list[float]  # see budget_losses
    curve: list[float]  # every stride-th step's training loss
    stride: int


@dataclass
class NetResult:
    label: str
    lrs: list[float]
    budgets: list[int]
    epochs: int
    n_train: int
    identity: tuple[int, int]  # zero-gamma: fewest exact identity blocks over its runs, blocks
    standard_exact: int  # the most exact identity blocks any standard-init run had
    runs: list[RunResult]

    def select(self, lr: float, init: str | None = None) -> list[RunResult]:
        return [r for r in self.runs if r.lr == lr and init in (None, r.init)]

    def ok(self, lr: float, init: str) -> list[RunResult]:
        return [r for r in self.select(lr, init) if r.diverged_at is None]


@dataclass
class Result(Summary):
    nets: list[NetResult]
    seeds: list[int]
    short: bool  # fewer epochs than the full scale: early training only

    def diverged(self, init: str) -> int:
        return sum(r.diverged_at is not None for n in self.nets for r in n.runs if r.init == init)


def _run_result(r: RunRecord[Condition], budgets: list[int]) -> RunResult:
    losses = r.curve("step_loss")  # every step until the run ended or diverged
    stride = max(1, len(losses) // CURVE_POINTS)
    return RunResult(
        r.condition.lr, r.condition.init, r.seed, r.get("steps") if r.diverged else None,
        r.get("test_acc"), budget_losses(losses, budgets), losses[::stride], stride,
    )  # fmt: skip


def _net_result(net: Net, runs: Runs[Condition]) -> NetResult:
    by = runs.where(net=net.model)
    zg, std = by.where(init="zero-gamma"), by.where(init="standard")
    exact = min(int(r.get("identity_exact")) for r in zg)
    blocks = max(int(r.get("identity_blocks")) for r in zg)
    standard = max(int(r.get("identity_exact")) for r in std)
    records = [_run_result(r, net.budgets) for r in by]
    return NetResult(
        net.label, list(net.lrs), net.budgets, net.epochs, net.n_train, (exact, blocks),
        standard, records,
    )  # fmt: skip


def _final_losses(r: Result) -> dict[tuple[str, float], dict[str, float]]:
    """Mean final training loss per init, for each (network, lr) where no run diverged."""
    out = {}
    for net in r.nets:
        for lr in net.lrs:
            if all(x.diverged_at is None for x in net.select(lr)):
                out[net.label, lr] = {
                    i: float(np.mean([x.budget_loss[-1] for x in net.select(lr, i)])) for i in INITS
                }
    return out


@register_claim
class ZeroGammaClaim(Claim[Settings, Condition, Result]):
    id = "C05"
    slug = "zero-gamma"
    title = "Zero-gamma: every block an exact identity at init, depth faded in by training"
    statement = (
        "Initialising the last normalisation scale of each residual branch to 0 makes each "
        "block, and the whole stack, an exact identity at init, and lets the network fade "
        "complexity in."
    )
    method = (
        "Exact check (torch.equal) that every block of ResNet-110 (1-D, MNIST-1D) and of a "
        "100-layer residual MLP built with branch_init=ZeroGamma() returns post(shortcut(x)) in "
        "eval mode. Then SGD (momentum 0.9, weight decay 1e-4, cosine schedule, no warm-up, "
        "batch 128) on MNIST-1D from the standard init and from zero-gamma, over a learning-rate "
        "sweep and seeds: training loss at fixed step budgets, test accuracy at the end, and "
        "the runs that diverge (the Trainer stops on a non-finite loss or gradient)."
    )
    criterion = (
        "Fails unless every block of both networks is an exact identity at init with zero-gamma "
        "and zero-gamma diverges in no more runs than the standard init. Given that, holds "
        "when zero-gamma either diverges in fewer runs (without a higher final loss in most "
        "settings where both train) or reaches a lower mean final training loss in more than "
        "half of the (network, learning rate) settings where no run of either init diverged; "
        "inconclusive otherwise (the two are indistinguishable at this budget)."
    )
    math = (
        "Block: y = post(shortcut(x) + F(x)), F ending in a normalisation N(z) = gamma * "
        "(z - mu) / sigma + beta.\n"
        "Zero-gamma: gamma = 0 (beta = 0 at init), so N(z) = 0 for every z and F(x) = 0 exactly "
        "(a layer after it with no bias, e.g. the pre-activation conv, maps 0 to 0).\n"
        "Then y = post(shortcut(x)): x itself for an identity shortcut and post = identity; "
        "relu(x) = x for a post-activation block whose input is already >= 0 (it comes from a "
        "ReLU); the subsampled, zero-padded x for an option-A downsampling block.\n"
        "The stack: y_L = post_L(s_L(... post_1(s_1(x)))): with identity shortcuts the network is "
        "its stem and head, a shallow model; all 2L layers are present but contribute nothing.\n"
        "Gradient at init: dL/dgamma_l = sum (dL/dy_l) * z_hat_l != 0 while every other branch "
        "weight gets dL/dW = 0 (it is multiplied by gamma = 0). The first step therefore moves "
        "only the gammas (and biases), each block's branch grows from 0 in proportion to how "
        "much the loss wants it: depth is faded in, and the forward signal variance starts at "
        "Var(x) instead of growing like Var(x) + sum_l Var(F_l) ~ L with standard init.\n"
        "Budgets: loss_b = mean of the training losses over the 10 steps before step b."
    )
    references = (
        "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        "He et al. 2019, Bag of Tricks for Image Classification (zero-gamma)",
        "Zhang, Dauphin & Ma 2019, Fixup Initialization",
        "Greydanus & Kobak 2024, Scaling down deep learning with MNIST-1D",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(n.model, lr, i) for n in s.nets() for lr in n.lrs for i in INITS]

    def label(self, c: Condition) -> str:
        return f"{_label(c.net)} {c.init} lr={c.lr:g}"

    def cost(self, s: Settings, c: Condition) -> float:
        # steps x layers; a 1-D conv layer costs about 4 MLP layers (tiny scale: a ResNet-20
        # step 75 ms, a ResMLP-100 step 100 ms)
        net = s.net(c.net)
        return net.budgets[-1] * net.depth * (1 if c.net == MLP else 4) / 100

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        short = any(n.epochs < f.epochs for n, f in zip(s.nets(), SCALES["full"].nets()))
        return Result([_net_result(n, runs) for n in s.nets()], runs.seeds, short)

    def checks(self, r: Result) -> list[Check]:
        exact = all(n.identity[0] == n.identity[1] > 0 for n in r.nets)
        zg, std = r.diverged("zero-gamma"), r.diverged("standard")
        final = _final_losses(r)
        better = sum(m["zero-gamma"] < m["standard"] for m in final.values())
        worse = sum(m["zero-gamma"] > m["standard"] for m in final.values())
        fewer_div = zg < std and worse <= len(final) / 2
        lower_loss = len(final) > 0 and better > len(final) / 2
        identity = ", ".join(f"{n.label} {n.identity[0]}/{n.identity[1]}" for n in r.nets)
        runs = f"diverged runs: standard {std}, zero-gamma {zg}"
        losses = (
            f"{runs}; zero-gamma lower in {better} and higher in {worse} of the {len(final)} "
            "settings where neither diverged"
        )
        return [
            Check("every zero-gamma block is an exact identity at init", exact, identity),
            Check("zero-gamma diverges in no more runs than the standard init", zg <= std, runs),
            Check(
                "zero-gamma diverges less (without a higher loss in most settings) or reaches a "
                "lower final training loss in most settings",
                fewer_div or lower_loss,
                losses,
                "evidence",
            ),
        ]

    def detail(self, r: Result) -> str:
        final = _final_losses(r)
        better = sum(m["zero-gamma"] < m["standard"] for m in final.values())
        lines = [
            f"{net} lr {lr:g}: {m['standard']:.3f} -> {m['zero-gamma']:.3f}"
            for (net, lr), m in final.items()
        ]
        identity = ", ".join(f"{n.label} {n.identity[0]}/{n.identity[1]} blocks" for n in r.nets)
        n_runs = sum(len(n.runs) for n in r.nets) // 2
        return (
            f"identity at init: {identity}; diverged runs: standard {r.diverged('standard')}/"
            f"{n_runs}, zero-gamma {r.diverged('zero-gamma')}/{n_runs}; final training loss "
            f"standard -> zero-gamma where neither diverged ({better} of {len(final)} lower): "
            f"{'; '.join(lines) or 'none'}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out: dict[str, float] = {}
        for net in r.nets:
            out[f"{net.label}_identity_blocks"], out[f"{net.label}_blocks"] = net.identity
            for lr in net.lrs:
                for init in INITS:
                    key, ok = f"{net.label}_{init}_lr{lr:g}", net.ok(lr, init)
                    out[f"{key}_diverged"] = len(net.select(lr, init)) - len(ok)
                    if ok:
                        out[f"{key}_final_loss"] = float(np.mean([x.budget_loss[-1] for x in ok]))
                        out[f"{key}_test_acc"] = float(np.mean([x.test_acc for x in ok]))
        for init in INITS:
            out[f"{init}_diverged_total"] = r.diverged(init)
        return out

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for net in r.nets:
            for lr in net.lrs:
                for init in INITS:
                    rs, ok = net.select(lr, init), net.ok(lr, init)
                    by_budget = [[x.budget_loss[i] for x in ok] for i in range(len(net.budgets))]
                    losses = [str(describe(v)) if ok else "diverged" for v in by_budget]
                    acc = str(describe([x.test_acc for x in ok])) if ok else "-"
                    diverged = f"{len(rs) - len(ok)}/{len(rs)}"
                    rows.append([net.label, lr, init, diverged, *losses, acc])
        budgets = "; ".join(
            f"{n.label}: {n.budgets[-1]} steps ({n.epochs} epochs of {n.n_train})" for n in r.nets
        )
        return [
            Table(
                "Training loss at step budgets (mean over the 10 steps before each; columns: 1/4, "
                "1/2 and all of the budget), over seeds",
                ["network", "lr", "init", "diverged", "loss @1/4", "loss @1/2", "loss @end", "test acc"],
                rows, budgets,
            ),
            Table(
                "Exact identity at init with ZeroGamma()",
                ["network", "blocks giving exactly post(shortcut(x))", "blocks", "exact with the standard init (control)"],
                [[n.label, *n.identity, n.standard_exact] for n in r.nets],
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        if not r.short:
            return []
        steps = ", ".join(f"{n.label} {n.budgets[-1]}" for n in r.nets)
        return [
            f"This scale trains for a few dozen to a hundred steps ({steps}): it shows "
            "early-training stability and speed, where zero-gamma is meant to act, not final "
            "accuracy after a full schedule."
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, len(r.nets) + 2, width=4.4, height=3.8)
        for ax, net in zip(axes[0], r.nets):
            _curves(ax, net)
        _final_panel(axes[0][len(r.nets)], r.nets)
        _divergence_panel(axes[0][-1], r.nets)
        _plot.save(fig, outdir / "zero_gamma.png")
        return [
            Figure(
                "zero_gamma.png",
                "Training loss per step (every run; line style: learning rate; x: the run "
                "diverged there) for the 100-layer residual MLP and ResNet-110 with the "
                "standard init and with zero-gamma; the training loss at the end of the budget "
                "against the learning rate (mean over the runs that did not diverge); and the "
                "fraction of runs that diverged per learning rate.",
            )
        ]


def _curves(ax: Any, net: NetResult) -> None:
    styles = dict(zip(net.lrs, ["-", "--", "-.", ":"] * 3))
    for lr in net.lrs:
        for init in INITS:
            for k, run in enumerate(net.select(lr, init)):
                c = np.asarray(run.curve, dtype=float)
                steps = np.arange(len(c)) * run.stride + 1
                label = f"{init}, lr {lr:g}" if k == 0 else None
                ax.plot(steps, c, styles[lr], color=COLORS[init], alpha=0.75, lw=1.2, label=label)
                if run.diverged_at is not None and len(c):
                    top = min(float(np.nan_to_num(c[-1], nan=1e4)), 1e4)
                    ax.plot(steps[-1], top, "x", color=COLORS[init], ms=9, mew=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=f"{net.label} on MNIST-1D (x: diverged)", xlabel="step",
           ylabel="training loss (clipped at 1e4)", ylim=(None, 1e4))  # fmt: skip
    # below the axes: inside, the legend hid the early spikes it is meant to explain
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))


def _final_panel(ax: Any, nets: list[NetResult]) -> None:
    for net, marker in zip(nets, ("o", "s")):
        for init in INITS:
            finals = {lr: [x.budget_loss[-1] for x in net.ok(lr, init)] for lr in net.lrs}
            xs = [lr for lr, v in finals.items() if v]
            ys = [float(np.mean(v)) for v in finals.values() if v]
            ax.plot(xs, ys, marker + "-", color=COLORS[init], label=f"{net.label}, {init}",
                    mfc="none" if marker == "s" else COLORS[init])  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title="loss at the end of the budget", xlabel="learning rate",
           ylabel="mean training loss (runs that did not diverge)")  # fmt: skip
    ax.legend(fontsize=7)


def _divergence_panel(ax: Any, nets: list[NetResult]) -> None:
    width = 0.38
    labels = []
    for k, (net, lr) in enumerate([(n, lr) for n in nets for lr in n.lrs]):
        labels.append(f"{net.label.split('-')[0]}\nlr {lr:g}")
        for i, init in enumerate(INITS):
            rs = net.select(lr, init)
            frac = np.mean([x.diverged_at is not None for x in rs]) if rs else 0.0
            ax.bar(k + (i - 0.5) * width, frac, width, color=COLORS[init],
                   label=init if k == 0 else None)  # fmt: skip
    if not any(r.diverged_at is not None for n in nets for r in n.runs):
        ax.text(0.5, 0.5, "no run diverged", transform=ax.transAxes, ha="center")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set(title="fraction of runs that diverged", ylabel="diverged / runs", ylim=(0, 1.05))
    ax.legend()
