"""C11 preactivation: a clean identity path trains better than post-activation.

He et al. 2016 ("Identity Mappings in Deep Residual Networks"): with pre-activation blocks
``x_{l+1} = x_l + F(x_l)`` (BN and ReLU inside ``F``), ``x_L = x_l + sum_i F(x_i)`` and
``dL/dx_l = dL/dx_L (1 + d/dx_l sum_i F(x_i))``: the signal and the gradient reach every block
directly. Post-activation blocks ``x_{l+1} = ReLU(x_l + F(x_l))`` put a nonlinearity on the
identity path after every add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import clearly_greater, describe
from skiplab.data import get_dataset
from skiplab.diagnostics import gradient_flow_at_init, signal_propagation
from skiplab.models import create_model
from skiplab.train import Classification, TrainConfig, evaluate

ARCHS = ("post", "pre")
STYLES = {"post": (_plot.PLAIN, "s-", -0.06), "pre": (_plot.RESIDUAL, "o-", 0.06)}


@dataclass(frozen=True)
class Settings:
    depths: tuple[int, ...] = (20, 56)  # He et al. 2015's CIFAR depths a CPU trains in minutes
    epochs: int = 6  # one budget for both block types; the gap, if any, shows early
    n_train: int | None = None  # MNIST-1D's whole training split (4,000)
    n_test: int | None = None  # and its whole test split (1,000)
    batch_size: int = 128  # He et al. 2015
    lr: float = 0.1  # He et al. 2015 (SGD, momentum 0.9, cosine schedule)
    weight_decay: float = 1e-4  # He et al. 2015
    probe_size: int = 128  # training examples the signal and gradient probes see at init


SCALES = {
    "tiny": Settings(depths=(8, 32), epochs=2, n_train=1024, n_test=256),
    "quick": Settings(),
    "full": Settings(depths=(20, 56, 110, 164), epochs=40),
}


@dataclass(frozen=True)
class Condition:
    depth: int  # of the 1-D CIFAR-style ResNet
    arch: str  # "post" (He et al. 2015 block) or "pre" (He et al. 2016 block)


@dataclass
class InitStats:
    """Signal propagation (per block) and parameter-gradient norms at a seeded init."""

    var: list[float]
    sq_mean: list[float]
    branch_var: list[float]
    grad: list[float]


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Probe the seeded init, train it, and evaluate the whole training split in eval mode."""
    splits = get_dataset("mnist1d").subset(s.n_train, s.n_test)
    kw = {"depth": c.depth, "dim": 1, "in_channels": 1, "preact": c.arch == "pre"}
    model = run.build(lambda: create_model("resnet_cifar", **kw))
    x, y = run.put(*(t[: s.probe_size] for t in splits.train.tensors))
    sp = signal_propagation(model, (x,))
    gf = gradient_flow_at_init(model, (x,), y, F.cross_entropy, split=False)
    # per-block gradient norms: without the stem and the head
    init = InitStats(sp["var"], sp["sq_mean"], sp["branch_var"], gf["grad_norm"][0][1:-1])
    cfg = TrainConfig(
        epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay
    )
    run.fit(model, Classification(splits.train, splits.test), cfg)  # a divergence marks the run
    final = evaluate(model, splits.train, device=run.device)
    test = evaluate(model, splits.test, device=run.device)
    return {
        "train_loss": final["loss"], "train_acc": final["acc"], "test_acc": test["acc"],
        "init": asdict(init),
    }  # fmt: skip


@dataclass
class ArchResult:
    """One block type at one depth: per seed, then the first seed's init."""

    train_loss: list[float]
    train_acc: list[float]
    test_acc: list[float]
    init: InitStats

    @property
    def grad_first_over_last(self) -> float:
        return float(self.init.grad[0] / self.init.grad[-1])


@dataclass
class Result(Summary):
    depths: list[int]
    epochs: int
    seeds: list[int]
    nets: dict[int, dict[str, ArchResult]]  # depth -> arch -> runs
    diverged: list[str]  # the runs whose training loss became non-finite


@register_claim
class Preactivation(Claim[Settings, Condition, Result]):
    id = "C11"
    slug = "preactivation"
    title = "Pre-activation keeps the identity path clean and trains better"
    statement = (
        "Putting the nonlinearity inside the branch (pre-activation) keeps the identity path "
        "clean and trains better than post-activation."
    )
    method = (
        "Pre- and post-activation 1-D ResNets (He et al. 2016 vs 2015 blocks, option-A "
        "shortcuts) of growing depth on MNIST-1D (20 and 56 at quick scale; 20, 56, 110, 164 "
        "at full): signal propagation (Brock et al. 2021) and per-block gradient norms at init, "
        "then SGD training under one budget and the final training loss (whole training split, "
        "eval mode) over seeds."
    )
    criterion = (
        "Holds when, at the deepest depth, every seed's final training loss of the "
        "pre-activation network is below every seed's loss of the post-activation network; "
        "fails when the reverse separation holds; inconclusive when the seed ranges overlap "
        "or there is only one seed."
    )
    math = (
        "pre:  x_L = x_l + sum_{i=l}^{L-1} F(x_i);  dL/dx_l = dL/dx_L (1 + d/dx_l sum F(x_i)).\n"
        "post: x_{l+1} = ReLU(x_l + F(x_l)); the ReLU (and BN before it) sits on the skip path."
    )
    references = (
        "He, Zhang, Ren & Sun 2016, Identity Mappings in Deep Residual Networks",
        "Brock, De & Smith 2021, Characterizing signal propagation to close the performance gap "
        "in unnormalized ResNets",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(d, a) for d in s.depths for a in ARCHS]

    def cost(self, s: Settings, c: Condition) -> float:
        return c.depth * s.epochs * (s.n_train or 4000) / 1000

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        nets: dict[int, dict[str, ArchResult]] = {}
        for d in s.depths:
            nets[d] = {}
            for a in ARCHS:
                by = runs.where(depth=d, arch=a)
                init = InitStats(**by.records[0].get("init"))  # the first seed's, as before
                loss, acc, test = (by.values(k) for k in ("train_loss", "train_acc", "test_acc"))
                nets[d][a] = ArchResult(loss, acc, test, init)
        diverged = [
            f"{self.label(r.condition)} seed {r.seed}: {r.error}" for r in runs if r.diverged
        ]
        return Result(list(s.depths), s.epochs, runs.seeds, nets, diverged)

    def checks(self, r: Result) -> list[Check]:
        deepest = r.nets[r.depths[-1]]
        pre, post = deepest["pre"].train_loss, deepest["post"].train_loss
        n = min(len(pre), len(post))
        values = ", ".join(f"{v:.4g}" for v in pre), ", ".join(f"{v:.4g}" for v in post)
        measured = f"depth {r.depths[-1]} train loss: pre {values[0]} vs post {values[1]}"
        if r.diverged:
            return [Check("every run trained without diverging", False, "; ".join(r.diverged), "evidence")]  # fmt: skip
        if n < 2:
            return [Check("two seeds or more: one seed cannot show a separation", False, measured, "evidence")]  # fmt: skip
        where = f"at depth {r.depths[-1]} beyond the seed spread"
        reverse = Check(f"post-activation not below pre-activation {where}", not clearly_greater(pre, post), measured)  # fmt: skip
        separate = Check(f"pre-activation below post-activation {where}", clearly_greater(post, pre), measured, "evidence")  # fmt: skip
        return [reverse, separate]

    def detail(self, r: Result) -> str:
        parts = [
            f"depth {k}: train loss pre {describe(r.nets[k]['pre'].train_loss)} vs post "
            f"{describe(r.nets[k]['post'].train_loss)}"
            for k in r.depths
        ]
        pre, post = r.nets[r.depths[-1]]["pre"], r.nets[r.depths[-1]]["post"]
        return "; ".join(parts) + (
            f"; at init, first/last block gradient ratio pre {pre.grad_first_over_last:.3g} vs "
            f"post {post.grad_first_over_last:.3g}; last-block output variance pre "
            f"{pre.init.var[-1]:.3g} vs post {post.init.var[-1]:.3g}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {}
        for d in r.depths:
            for a in ARCHS:
                net = r.nets[d][a]
                stat = describe(net.train_loss)
                out[f"{a}{d}_train_loss"] = stat.mean
                out[f"{a}{d}_train_loss_std"] = stat.std
                out[f"{a}{d}_grad_first_over_last"] = net.grad_first_over_last
                out[f"{a}{d}_final_var"] = float(net.init.var[-1])
        return out

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for d in r.depths:
            for a in ARCHS:
                net = r.nets[d][a]
                for i, seed in enumerate(r.seeds):
                    rows.append([d, a, seed, net.train_loss[i], net.train_acc[i], net.test_acc[i]])
        return [
            Table(
                f"Final loss after {r.epochs} epoch(s) of SGD (lr 0.1, cosine) on MNIST-1D",
                ["depth", "activation", "seed", "train loss", "train acc", "test acc"],
                rows,
                "train loss/acc: whole training split in eval mode after training",
            )
        ]

    def notes(self, r: Result) -> list[str]:
        if max(r.depths) >= 110:
            return []
        return [
            f"He et al. 2016 saw the gap open at 110-1001 layers on CIFAR; this scale stops at "
            f"{max(r.depths)} layers and {r.epochs} epochs of MNIST-1D, where the two may not "
            "separate."
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        d = r.depths[-1]
        fig, axes = _plot.subplots(1, 4, width=3.9, height=3.4)
        for arch in ARCHS:
            color, style, _ = STYLES[arch]
            init = r.nets[d][arch].init
            idx = np.arange(1, len(init.var) + 1)
            kw: dict[str, Any] = {"color": color, "ms": 3, "label": f"{arch}-act"}
            axes[0][0].plot(idx, init.var, style, **kw)
            axes[0][1].plot(idx, init.sq_mean, style, **kw)
            axes[0][2].semilogy(np.arange(1, len(init.grad) + 1), init.grad, style, **kw)
        axes[0][0].set(title=f"depth {d}: channel variance", xlabel="block", yscale="log")
        axes[0][1].set(title=f"depth {d}: channel squared mean", xlabel="block", yscale="log")
        axes[0][2].set(title=f"depth {d}: ||dL/dW|| per block", xlabel="block")
        ax = axes[0][3]
        for arch in ARCHS:
            color, _, off = STYLES[arch]
            for i, k in enumerate(r.depths):
                vals = r.nets[k][arch].train_loss
                label = f"{arch}-act" if i == 0 else None
                ax.scatter([i + off] * len(vals), vals, color=color, s=18, label=label)
            means = [np.mean(r.nets[k][arch].train_loss) for k in r.depths]
            ax.plot(np.arange(len(r.depths)) + off, means, color=color)
        ax.set(
            title="final training loss", xlabel="depth", xticks=range(len(r.depths)),
            xticklabels=[str(k) for k in r.depths], yscale="log",
        )  # fmt: skip
        for a in axes[0][:3]:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
        for a in axes[0]:
            a.legend()
        _plot.save(fig, outdir / "preactivation.png")
        return [
            Figure(
                "preactivation.png",
                f"Signal propagation and parameter-gradient norms at init for depth {d} (left "
                "three), and the final training loss of every seed against depth (right; line: "
                "mean).",
            )
        ]
