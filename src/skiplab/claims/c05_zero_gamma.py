"""C05 zero-gamma: the last normalisation scale of each branch at 0 makes every block an identity.

Goyal et al. 2017 ("Accurate, Large Minibatch SGD") set the scale ``gamma`` of the last
BatchNorm of each residual branch to 0, so that every block starts as the identity (up to its
shortcut and post-activation) and the network starts as a shallow one whose depth the training
fades in (He et al. 2019, "Bag of Tricks", section 3.1). The claim checks the identity exactly
on a 110-layer ResNet and a 100-layer residual MLP, then trains the MLP from both inits over a
learning-rate sweep and seeds: a paired design (one seed: the same weights but the gammas, the
same batches), decided on 95% intervals of the rate of runs that fail to train and of the
training loss where both train.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator
from torch import nn
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, RunRecord, Runs
from skiplab.claims._stats import Stat, describe, difference, proportion_difference
from skiplab.data import load_mnist1d
from skiplab.diagnostics.identity import identity_blocks
from skiplab.models import create_model
from skiplab.nn import ZeroGamma
from skiplab.train import Classification, TrainConfig

INITS = ("standard", "zero-gamma")
COLORS = {"standard": _plot.PLAIN, "zero-gamma": _plot.RESIDUAL}
FAMILIES = {"resmlp": "ResMLP", "resnet": "ResNet"}
NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
CHANCE = math.log(10)  # cross-entropy of the uniform prediction over MNIST-1D's 10 classes
SMOOTH = 10  # training losses are averaged over this many steps before each budget
CURVE_POINTS = 150  # points per training curve kept for the figure


def _label(model: str) -> str:
    """``resmlp100`` -> ``ResMLP-100``, ``resnet20`` -> ``ResNet-20``."""
    family = model.rstrip("0123456789")
    return f"{FAMILIES[family]}-{model[len(family) :]}"


@dataclass(frozen=True)
class Net:
    """One network of the sweep and its budget (no learning rates: the identity check only)."""

    model: str  # resmlp<depth> (built with width and norm) or a registered resnet
    lrs: tuple[float, ...]
    n_train: int  # the first n_train MNIST-1D training examples
    epochs: int
    batch_size: int
    width: int = 64
    norm: str = "batch"

    @property
    def depth(self) -> int:
        return int(self.model[len(self.model.rstrip("0123456789")) :])

    @property
    def label(self) -> str:
        return _label(self.model)

    @property
    def mlp(self) -> bool:
        return self.model.startswith("resmlp")

    def build(self, init: ZeroGamma | None) -> nn.Module:
        if self.mlp:
            return create_model("resmlp", depth=self.depth, width=self.width, in_features=40,
                                norm_layer=NORMS[self.norm], branch_init=init)  # fmt: skip
        return create_model(self.model, dim=1, in_channels=1, branch_init=init)

    @property
    def budgets(self) -> list[int]:
        """A quarter, half and all of the run's optimiser steps."""
        total = math.ceil(self.n_train / self.batch_size) * self.epochs
        return sorted({max(1, total // 4), max(1, total // 2), total})


@dataclass(frozen=True)
class Settings:
    mlp_depth: int = 100  # 50 blocks: with the standard init the residual stream grows with depth
    mlp_width: int = 64  # narrow for cost: a step is a fixed cost per layer at width <= 128
    mlp_norm: str = "batch"  # the BatchNorm gamma Goyal et al. zero ("layer": LayerNorm)
    mlp_lrs: tuple[float, ...] = (0.025, 0.1, 0.4, 1.6)  # x4 apart, up to where SGD breaks
    mlp_train: int = 4000  # MNIST-1D's whole training split
    mlp_epochs: int = 2  # 64 steps: early training, where zero-gamma is meant to act
    control_depth: int = 4  # the shallow net (2 blocks) of the positive control
    resnet: str = "resnet110"  # He et al. 2015's deepest CIFAR ResNet, as a 1-D net
    resnet_lrs: tuple[float, ...] = ()  # () checks its identity only (a 60-step run: 12 CPU-s)
    resnet_train: int = 2560  # 20 steps an epoch: a ResNet-110 step costs many MLP steps
    resnet_epochs: int = 3  # 60 steps
    batch_size: int = 128  # He et al. 2015 (SGD, momentum 0.9, weight decay 1e-4, cosine)
    probe_size: int = 64  # training examples the exact-identity check runs on

    def nets(self) -> list[Net]:
        """The deep MLP and the ResNet (identity only when it has no learning rates)."""
        mlp = f"resmlp{self.mlp_depth}"
        return [
            Net(mlp, self.mlp_lrs, self.mlp_train, self.mlp_epochs, self.batch_size,
                self.mlp_width, self.mlp_norm),
            Net(self.resnet, self.resnet_lrs, self.resnet_train, self.resnet_epochs,
                self.batch_size),
        ]  # fmt: skip

    def control(self) -> Net:
        """The shallow MLP, standard init, at the sweep's smallest learning rate."""
        lr = (min(self.mlp_lrs),)
        return Net(f"resmlp{self.control_depth}", lr, self.mlp_train, self.mlp_epochs,
                   self.batch_size, self.mlp_width, self.mlp_norm)  # fmt: skip

    def net(self, model: str) -> Net:
        return next(n for n in [*self.nets(), self.control()] if n.model == model)


SCALES = {  # tiny keeps the depth of the MLP, not of the ResNet
    "tiny": Settings(mlp_width=32, mlp_lrs=(0.1, 1.6), mlp_train=512, mlp_epochs=4,
                     resnet="resnet20"),
    "quick": Settings(),
    "full": Settings(mlp_width=128, mlp_lrs=(0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
                     mlp_epochs=60, resnet_lrs=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
                     resnet_train=4000, resnet_epochs=60),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    net: str  # resmlp100, resmlp4 (the control), resnet110 (resnet20 at tiny scale)
    lr: float  # SGD peak learning rate (0: the identity check only)
    init: str  # "standard" or "zero-gamma"


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Check the seeded init for exact identity blocks, then train it, logging every step."""
    net = s.net(c.net)
    data = load_mnist1d()
    x, y = data.train.tensors
    model = run.build(lambda: net.build(ZeroGamma() if c.init == "zero-gamma" else None))
    exact, blocks = identity_blocks(model, run.put(x[: s.probe_size]))
    run.log(0, identity_exact=exact, identity_blocks=blocks)
    if c.lr == 0:
        return {"identity_exact": exact, "identity_blocks": blocks}
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

    @property
    def final(self) -> float:
        return self.budget_loss[-1]

    @property
    def failed(self) -> bool:
        """It did not train: it diverged, or it ended no better than chance (ln 10)."""
        return self.diverged_at is not None or not self.final < CHANCE


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
    nets: list[NetResult]  # the ResNet has no runs in it when only its identity is checked
    control: NetResult  # the shallow standard-init MLP at the smallest learning rate
    seeds: list[int]
    short: bool  # fewer epochs than the full scale: early training only

    @property
    def trained(self) -> list[NetResult]:
        return [n for n in self.nets if n.lrs]

    def runs(self, init: str) -> list[RunResult]:
        return [r for n in self.trained for r in n.runs if r.init == init]

    def failures(self, blew_up: bool = False) -> Stat:
        """Rate of failed runs (``blew_up``: only those that diverged or ended above
        10 ln 10), standard minus zero-gamma, with Newcombe's 95% interval."""
        std, zg = self.runs("standard"), self.runs("zero-gamma")
        hits = [sum(_blew_up(r) if blew_up else r.failed for r in rs) for rs in (std, zg)]
        return proportion_difference(hits[0], max(len(std), 1), hits[1], max(len(zg), 1))

    def pairs(self) -> tuple[list[float], list[float]]:
        """Final training losses (standard, zero-gamma) at each trained network's smallest
        learning rate, paired by seed, where neither run of the pair diverged."""
        std: list[float] = []
        zg: list[float] = []
        for net in self.trained:
            lr = min(net.lrs)
            by_seed = {r.seed: r for r in net.ok(lr, "zero-gamma")}
            for r in net.ok(lr, "standard"):
                if r.seed in by_seed:
                    std.append(r.final)
                    zg.append(by_seed[r.seed].final)
        return std, zg

    def speedup(self) -> Stat:
        """Final training loss, standard minus zero-gamma, paired over seeds (t-interval)."""
        std, zg = self.pairs()
        return difference(std, zg, paired=True) if std else Stat(math.nan, 0, math.nan, math.nan, 0)

    def diverged(self, init: str) -> int:
        return sum(r.diverged_at is not None for r in self.runs(init))


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
    exact = min((int(r.get("identity_exact")) for r in zg), default=0)
    blocks = max((int(r.get("identity_blocks")) for r in zg), default=0)
    standard = max(int(r.get("identity_exact")) for r in std)
    records = [_run_result(r, net.budgets) for r in by if r.condition.lr > 0]
    return NetResult(
        net.label, list(net.lrs), net.budgets, net.epochs, net.n_train, (exact, blocks),
        standard, records,
    )  # fmt: skip


def _rate(runs: list[RunResult], blew_up: bool = False) -> str:
    return f"{sum(_blew_up(r) if blew_up else r.failed for r in runs)}/{len(runs)}"


def _blew_up(r: RunResult) -> bool:
    """It diverged, or its loss ended an order of magnitude above chance."""
    return r.diverged_at is not None or not r.final <= 10 * CHANCE


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
        "100-layer residual MLP (BatchNorm in the branches) built with branch_init=ZeroGamma() "
        "returns post(shortcut(x)) in eval mode. Then SGD (momentum 0.9, weight decay 1e-4, "
        "cosine schedule, no warm-up, batch 128) on MNIST-1D from the standard init and from "
        "zero-gamma over a learning-rate sweep and seeds; one seed gives both inits the same "
        "weights (but the gammas) and the same batches. A run fails when it diverges (the "
        "Trainer stops on a non-finite loss or gradient) or ends no better than chance "
        "(training loss >= ln 10). Positive control: a 4-layer residual MLP with the standard "
        "init trains at the smallest learning rate within the same budget."
    )
    criterion = (
        "Inconclusive when the control fails (the shallow net does not get below ln 10 on "
        "every seed: the budget cannot train anything). Fails when a zero-gamma block is not "
        "an exact identity, or when zero-gamma is worse with a 95% interval that excludes 0: "
        "more failed runs (Newcombe interval of the rate difference) or a higher final "
        "training loss at the smallest learning rate (paired t-interval over seeds). Holds "
        "when both intervals lie above 0 (standard minus zero-gamma: fewer failed runs and a "
        "lower loss with zero-gamma); inconclusive otherwise."
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
        "Budgets: loss_b = mean of the training losses over the 10 steps before step b.\n"
        "Failure-rate difference: p_std - p_zg with Newcombe's hybrid Wilson interval; loss "
        "difference: mean_i (loss_std,i - loss_zg,i) over seeds i with a paired t-interval."
    )
    references = (
        "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        "He et al. 2019, Bag of Tricks for Image Classification (zero-gamma)",
        "Zhang, Dauphin & Ma 2019, Fixup Initialization",
        "Greydanus & Kobak 2024, Scaling down deep learning with MNIST-1D",
    )
    version = 2  # BatchNorm MLP of width 64, 64 steps, control net, ResNet identity only
    default_seeds = {"tiny": 2, "quick": 7, "full": 7}  # quick: a run is ~2 CPU-s
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        out = [Condition(n.model, lr, i) for n in s.nets() for lr in n.lrs or (0.0,) for i in INITS]
        return [*out, Condition(s.control().model, s.control().lrs[0], "standard")]

    def label(self, c: Condition) -> str:
        return f"{_label(c.net)} {c.init} " + (f"lr={c.lr:g}" if c.lr else "identity")

    def cost(self, s: Settings, c: Condition) -> float:
        # steps x layers; a 1-D conv layer costs about 4 MLP layers
        net = s.net(c.net)
        steps = net.budgets[-1] if c.lr else 1
        return steps * net.depth * (1 if net.mlp else 4) / 100

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        short = s.mlp_epochs < SCALES["full"].mlp_epochs
        nets = [_net_result(n, runs) for n in s.nets()]
        return Result(nets, _net_result(s.control(), runs), runs.seeds, short)

    def checks(self, r: Result) -> list[Check]:
        exact = all(n.identity[0] == n.identity[1] > 0 for n in r.nets)
        identity = ", ".join(f"{n.label} {n.identity[0]}/{n.identity[1]}" for n in r.nets)
        ctl = r.control
        finals = [x.final for x in ctl.runs]
        trains = bool(ctl.runs) and all(not x.failed for x in ctl.runs)
        fail, speed = r.failures(), r.speedup()
        rates = (
            f"failed runs: standard {_rate(r.runs('standard'))}, zero-gamma "
            f"{_rate(r.runs('zero-gamma'))}; difference {fail.interval()}"
        )
        losses = f"standard - zero-gamma {speed.interval()} over {speed.n} seed pairs"
        return [
            Check("every zero-gamma block is an exact identity at init", exact, identity),
            Check(f"the shallow {ctl.label} (standard init) trains at lr {ctl.lrs[0]:g}: final "
                  "training loss below ln 10 on every seed", trains,
                  f"max {max(finals, default=math.nan):.3f} vs {CHANCE:.3f}", "control"),
            Check("zero-gamma fails in no more runs (the rate difference's interval is not "
                  "below 0)", not fail.hi < 0, rates),
            Check("zero-gamma fails in fewer runs: the 95% interval lies above 0",
                  fail.lo > 0, rates, "evidence"),
            Check("zero-gamma trains no slower at the smallest learning rate (the paired "
                  "interval is not below 0)", not speed.hi < 0, losses),
            Check("zero-gamma reaches a lower training loss at the smallest learning rate: the "
                  "95% interval lies above 0", speed.lo > 0, losses, "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        identity = ", ".join(f"{n.label} {n.identity[0]}/{n.identity[1]} blocks" for n in r.nets)
        std, zg = r.pairs()
        at = ", ".join(f"{n.label} lr {min(n.lrs):g}" for n in r.trained)
        return (
            f"identity at init: {identity}; failed runs (diverged or >= ln 10 at the end): "
            f"standard {_rate(r.runs('standard'))}, zero-gamma {_rate(r.runs('zero-gamma'))}, "
            f"rate difference {r.failures().interval()}; diverged (non-finite): standard "
            f"{r.diverged('standard')}, zero-gamma {r.diverged('zero-gamma')}; final training "
            f"loss at {at}: standard {describe(std or [math.nan]).mean:.3f}, zero-gamma "
            f"{describe(zg or [math.nan]).mean:.3f}, paired difference "
            f"{r.speedup().interval()}; control {r.control.label}: max final loss "
            f"{max((x.final for x in r.control.runs), default=math.nan):.3f}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out: dict[str, float] = {}
        for net in r.nets:
            out[f"{net.label}_identity_blocks"], out[f"{net.label}_blocks"] = net.identity
            for lr in net.lrs:
                for init in INITS:
                    key, ok = f"{net.label}_{init}_lr{lr:g}", net.ok(lr, init)
                    out[f"{key}_failed"] = sum(x.failed for x in net.select(lr, init))
                    out[f"{key}_diverged"] = len(net.select(lr, init)) - len(ok)
                    if ok:
                        out[f"{key}_final_loss"] = float(np.mean([x.final for x in ok]))
                        out[f"{key}_test_acc"] = float(np.mean([x.test_acc for x in ok]))
        for init in INITS:
            out[f"{init}_failed_total"] = sum(x.failed for x in r.runs(init))
            out[f"{init}_diverged_total"] = r.diverged(init)
        stats = {"failed_rate_diff": r.failures(), "blown_up_rate_diff": r.failures(blew_up=True),
                 "final_loss_diff": r.speedup()}  # fmt: skip
        for name, stat in stats.items():
            out[name], out[f"{name}_lo"], out[f"{name}_hi"] = stat.mean, stat.lo, stat.hi
        out["control_final_loss_max"] = max((x.final for x in r.control.runs), default=math.nan)
        return out

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for net, inits in [*((n, INITS) for n in r.trained), (r.control, ("standard",))]:
            for lr in net.lrs:
                for init in inits:
                    rs, ok = net.select(lr, init), net.ok(lr, init)
                    by_budget = [[x.budget_loss[i] for x in ok] for i in range(len(net.budgets))]
                    losses = [str(describe(v)) if ok else "diverged" for v in by_budget]
                    acc = str(describe([x.test_acc for x in ok])) if ok else "-"
                    rows.append([net.label, lr, init, _rate(rs), f"{len(rs) - len(ok)}/{len(rs)}",
                                 *losses, acc])  # fmt: skip
        budgets = "; ".join(
            f"{n.label}: {n.budgets[-1]} steps ({n.epochs} epochs of {n.n_train})"
            for n in [*r.trained, r.control]
        )
        fail, speed = r.failures(), r.speedup()
        return [
            Table(
                "Effect sizes (standard minus zero-gamma, 95% intervals)",
                ["measure", "standard", "zero-gamma", "difference [95% CI]", "interval"],
                [["failed runs (diverged or >= ln 10 at the end), all learning rates",
                  _rate(r.runs("standard")), _rate(r.runs("zero-gamma")), fail.interval(),
                  "Newcombe"],
                 ["of them blown up (diverged or > 10 ln 10 at the end; not decided on)",
                  _rate(r.runs("standard"), True), _rate(r.runs("zero-gamma"), True),
                  r.failures(blew_up=True).interval(), "Newcombe"],
                 ["final training loss at the smallest learning rate",
                  *(f"{describe(v or [math.nan]).mean:.3f}" for v in r.pairs()),
                  speed.interval(), f"paired t, {speed.n} seeds"]],
            ),
            Table(
                "Training loss at step budgets (mean over the 10 steps before each; columns: 1/4, "
                "1/2 and all of the budget), over seeds",
                ["network", "lr", "init", "failed", "diverged", "loss @1/4", "loss @1/2", "loss @end", "test acc"],
                rows, f"{budgets}. The last row is the positive control. Failed: diverged, or a "
                f"final training loss >= ln 10 = {CHANCE:.3f} (no better than chance).",
            ),
            Table(
                "Exact identity at init with ZeroGamma()",
                ["network", "blocks giving exactly post(shortcut(x))", "blocks", "exact with the standard init (control)"],
                [[n.label, *n.identity, n.standard_exact] for n in r.nets],
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        out = []
        if r.short:
            steps = ", ".join(f"{n.label} {n.budgets[-1]}" for n in r.trained)
            out.append(
                f"This scale trains for a few dozen steps ({steps}): it shows early-training "
                "stability and speed, where zero-gamma is meant to act, not final accuracy "
                "after a full schedule."
            )
        untrained = [n.label for n in r.nets if not n.lrs]
        if untrained:
            out.append(f"{', '.join(untrained)}: the exact-identity check only at this scale "
                       "(it is trained at full scale).")  # fmt: skip
        std, zg = (sum(x.failed and not _blew_up(x) for x in r.runs(i)) for i in INITS)
        out.append(
            f"Failed runs stuck near chance (final loss ln 10 to 10 ln 10): standard {std}, "
            f"zero-gamma {zg}; blown up (diverged or > 10 ln 10): standard "
            f"{_rate(r.runs('standard'), True)}, zero-gamma {_rate(r.runs('zero-gamma'), True)}, "
            f"difference {r.failures(blew_up=True).interval()}; non-finite: standard "
            f"{r.diverged('standard')}, zero-gamma {r.diverged('zero-gamma')}. Zero-gamma's "
            "fewer failures are runs that train instead of sitting near chance; whether it "
            "also blows up less is what the second interval says."
        )
        return out

    def literature(self, r: Result) -> list[Comparison]:
        speed, std_first, zg_first = r.speedup(), *_first_losses(r)
        exact = all(n.identity[0] == n.identity[1] > 0 for n in r.nets)
        acc = {i: [x.test_acc for n in r.trained for x in n.ok(min(n.lrs), i)] for i in INITS}
        return [
            Comparison(
                "He et al. 2019, Bag of Tricks, section 3.1 (zero gamma)",
                "with gamma = 0 in the BN at the end of each residual block every block returns "
                "its input: the network mimics one with fewer layers, easier to train at the "
                "initial stage (its Table 4 adds it on top of linear scaling and warm-up in "
                "large-batch ImageNet training: a cumulative row, not quoted here)",
                f"exact identity: {'every block' if exact else 'NOT every block'}; first-step "
                f"loss standard {std_first:.2f} vs zero-gamma {zg_first:.2f}; final loss at "
                f"the smallest lr, standard - zero-gamma {speed.interval()}",
                exact and speed.lo > 0,
            ),
            Comparison(
                "Goyal et al. 2017, as cited by torchvision's resnet.py (zero_init_residual)",
                "zero-initialising the last BN of each residual branch improves ImageNet "
                "accuracy by 0.2-0.3%",
                "test accuracy at the smallest lr after a few dozen MNIST-1D steps: standard "
                f"{_mean(acc['standard']):.3f}, zero-gamma {_mean(acc['zero-gamma']):.3f}",
                None,  # another dataset and a budget of steps, not a full schedule
            ),
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, len(r.trained) + 2, width=4.4, height=3.8)
        for ax, net in zip(axes[0], r.trained):
            _curves(ax, net)
        _final_panel(axes[0][len(r.trained)], r)
        _failure_panel(axes[0][-1], r.trained)
        _plot.save(fig, outdir / "zero_gamma.png")
        names = " and ".join(n.label for n in r.trained)
        return [
            Figure(
                "zero_gamma.png",
                f"Training loss per step (every run; line style: learning rate; x: the run "
                f"diverged there) for {names} with the standard init and with zero-gamma; the "
                "training loss at the end of the budget against the learning rate (mean over "
                "the runs that did not diverge; grey: chance, ln 10; star: the shallow "
                "positive control); and the fraction of runs that failed (diverged or ended "
                ">= ln 10) per learning rate.",
            )
        ]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _first_losses(r: Result) -> tuple[float, float]:
    """Mean first-step training loss of the trained runs, standard and zero-gamma."""
    std, zg = ([x.curve[0] for x in r.runs(i) if x.curve] for i in INITS)
    return _mean(std), _mean(zg)


def _curves(ax: Any, net: NetResult) -> None:
    styles = dict(zip(net.lrs, ["-", "--", "-.", ":"] * 3))
    for lr in net.lrs:
        for init in INITS:
            for k, run in enumerate(net.select(lr, init)):
                c = np.asarray(run.curve, dtype=float)
                steps = np.arange(len(c)) * run.stride + 1
                label = f"{init}, lr {lr:g}" if k == 0 else None
                ax.plot(steps, c, styles[lr], color=COLORS[init], alpha=0.6, lw=1.0, label=label)
                if run.diverged_at is not None and len(c):
                    top = min(float(np.nan_to_num(c[-1], nan=1e4)), 1e4)
                    ax.plot(steps[-1], top, "x", color=COLORS[init], ms=9, mew=2)
    ax.axhline(CHANCE, color=_plot.REFERENCE, lw=0.8)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=f"{net.label} on MNIST-1D (x: diverged)", xlabel="step",
           ylabel="training loss (clipped at 1e4)", ylim=(None, 1e4))  # fmt: skip
    # below the axes: inside, the legend hid the early spikes it is meant to explain
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))


def _final_panel(ax: Any, r: Result) -> None:
    for net, marker in zip(r.trained, ("o", "s")):
        for init in INITS:
            finals = {lr: [x.final for x in net.ok(lr, init)] for lr in net.lrs}
            xs = [lr for lr, v in finals.items() if v]
            ys = [float(np.mean(v)) for v in finals.values() if v]
            ax.plot(xs, ys, marker + "-", color=COLORS[init], label=f"{net.label}, {init}",
                    mfc="none" if marker == "s" else COLORS[init])  # fmt: skip
    ctl = r.control
    ax.plot(ctl.lrs, [_mean([x.final for x in ctl.runs])], "*", ms=12, color="black",
            label=f"{ctl.label}, standard (control)")  # fmt: skip
    ax.axhline(CHANCE, color=_plot.REFERENCE, lw=0.8, ls="--", label="chance (ln 10)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title="loss at the end of the budget", xlabel="learning rate",
           ylabel="mean training loss (runs that did not diverge)")  # fmt: skip
    ax.legend(fontsize=7)


def _failure_panel(ax: Any, nets: list[NetResult]) -> None:
    width = 0.38
    labels = []
    for k, (net, lr) in enumerate([(n, lr) for n in nets for lr in n.lrs]):
        labels.append(f"{net.label.split('-')[0]}\nlr {lr:g}")
        for i, init in enumerate(INITS):
            rs = net.select(lr, init)
            failed = sum(x.failed for x in rs)
            frac = failed / len(rs) if rs else 0.0
            x = k + (i - 0.5) * width
            ax.bar(x, frac, width, color=COLORS[init], label=init if k == 0 else None)
            # the count on every bar, so a rate of 0 reads as measured, not as missing
            ax.text(x, frac + 0.01, f"{failed}/{len(rs)}", ha="center", va="bottom", fontsize=6)
    if not any(r.failed for n in nets for r in n.runs):
        ax.text(0.5, 0.5, "no run failed", transform=ax.transAxes, ha="center")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set(title="runs that failed (diverged or >= ln 10)", ylabel="failed / runs",
           ylim=(0, 1.12))  # fmt: skip
    ax.legend()
