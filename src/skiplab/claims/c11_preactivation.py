"""C11 preactivation: a clean identity path trains better than post-activation.

He et al. 2016 ("Identity Mappings in Deep Residual Networks"): with pre-activation blocks
``x_{l+1} = x_l + F(x_l)`` (BN and ReLU inside ``F``), ``x_L = x_l + sum_i F(x_i)`` and
``dL/dx_l = dL/dx_L (1 + d/dx_l sum_i F(x_i))``: the signal and the gradient reach every block
directly. Post-activation blocks ``x_{l+1} = ReLU(x_l + F(x_l))`` put a nonlinearity on the
identity path after every add.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference, fmt_values
from skiplab.data import get_dataset
from skiplab.diagnostics import gradient_flow_at_init, signal_propagation
from skiplab.models import create_model
from skiplab.train import Classification, TrainConfig, evaluate

ARCHS = ("post", "pre")
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over ten classes
# The positive control: both shallowest nets end a quarter or more below the chance loss.
CONTROL_LOSS = 0.75 * CHANCE_LOSS
STYLES = {"post": (_plot.PLAIN, "s-", -0.06), "pre": (_plot.RESIDUAL, "o-", 0.06)}


@dataclass(frozen=True)
class Settings:
    depths: tuple[int, ...] = (20, 110)  # the control's depth and He et al. 2016's shallowest
    epochs: int = 2  # one budget for both block types: the early gap He et al. 2016 Fig. 1 show
    widths: tuple[int, int, int] = (8, 16, 32)  # half He et al.'s: depth, not width, matters
    n_train: int | None = None  # MNIST-1D's whole training split (4,000)
    n_test: int | None = None  # and its whole test split (1,000)
    batch_size: int = 128  # He et al. 2015
    lr: float = 0.1  # He et al. 2015 (SGD, momentum 0.9, cosine schedule)
    weight_decay: float = 1e-4  # He et al. 2015
    probe_size: int = 128  # training examples the signal and gradient probes see at init


SCALES = {
    "tiny": Settings(depths=(8, 32), epochs=8, widths=(16, 32, 64), n_train=1024, n_test=256),
    "quick": Settings(),
    "full": Settings(depths=(20, 56, 110, 164), epochs=40, widths=(16, 32, 64)),
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
    kw = {"depth": c.depth, "dim": 1, "in_channels": 1, "preact": c.arch == "pre",
          "widths": s.widths}  # fmt: skip
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

    def gap(self, depth: int) -> Stat:
        """``log10(L_post / L_pre)`` at ``depth``, paired by seed (a seed gives both nets the
        same batches), with its 95% t-interval: > 0 where pre-activation trains better."""
        post, pre = (np.log10(self.nets[depth][a].train_loss) for a in ARCHS)
        return difference(list(post), list(pre), paired=True)


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
        "shortcuts) of growing depth on MNIST-1D: signal propagation (Brock et al. 2021) and "
        "per-block gradient norms at init, then SGD (lr 0.1, cosine) under one budget and the "
        "final training loss (whole training split, eval mode) over seeds. Quick: depths 20 "
        "(the positive control) and 110 at half He et al.'s widths (8, 16, 32), 2 epochs of "
        "the 4,000 training examples, 5 seeds; full: depths 20, 56, 110, 164 at full width, "
        "40 epochs."
    )
    criterion = (
        "With g = log10(L_post / L_pre) per seed (final training loss, paired by seed) and its "
        "95% t-interval at the deepest depth. Positive control: both nets of the shallowest "
        "depth train, every seed's loss below 0.75 ln 10 (else inconclusive: the budget cannot "
        "decide). Holds when the interval of g lies above 0; fails when it lies below 0 "
        "(post-activation trains better beyond the seed spread); inconclusive when it "
        "contains 0 or there is only one seed."
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
    version = 2  # v2: quick is depths 20 and 110 at half width, 2 epochs, 5 seeds; intervals
    default_seeds = {"tiny": 3, "quick": 5, "full": 5}
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
        if r.diverged:
            return [Check("every run trained without diverging", False, "; ".join(r.diverged), "evidence")]  # fmt: skip
        low, deep = r.depths[0], r.depths[-1]
        shallow = r.nets[low]["pre"].train_loss + r.nets[low]["post"].train_loss
        control = Check(
            f"both depth-{low} nets train (every seed below {CONTROL_LOSS:.3g}, 0.75 ln 10)",
            max(shallow) < CONTROL_LOSS,
            f"train loss pre {fmt_values(r.nets[low]['pre'].train_loss)}, post "
            f"{fmt_values(r.nets[low]['post'].train_loss)}",
            "control",
        )
        g = r.gap(deep)
        measured = (
            f"depth {deep} train loss pre {fmt_values(r.nets[deep]['pre'].train_loss)} vs post "
            f"{fmt_values(r.nets[deep]['post'].train_loss)}; log10(post / pre) {g}"
        )
        if g.n < 2:
            return [control, Check("two seeds or more: one seed cannot show a separation", False, measured, "evidence")]  # fmt: skip
        where = f"at depth {deep}: the 95% interval of log10(L_post / L_pre)"
        return [
            control,
            Check(f"post-activation not better {where} is not below 0", not g.hi < 0, measured),
            Check(f"pre-activation better {where} is above 0", g.lo > 0, measured, "evidence"),
        ]

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
            gap = r.gap(d)
            out.update({f"gap{d}": gap.mean, f"gap{d}_lo": gap.lo, f"gap{d}_hi": gap.hi})
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
            ),
            Table(
                "log10(L_post / L_pre) by depth: > 0 where pre-activation trains better",
                ["depth", "mean [95% t-interval]", "seeds"],
                [[d, r.gap(d).interval(), r.gap(d).n] for d in r.depths],
                "paired by seed (the same batches for both block types)",
            ),
        ]

    def literature(self, r: Result) -> list[Comparison]:
        deep = r.depths[-1]
        err = {a: 100 * (1 - float(np.mean(r.nets[deep][a].test_acc))) for a in ARCHS}
        gaps = ", ".join(f"depth {d}: {r.gap(d).interval()}" for d in r.depths)
        g = r.gap(deep)
        return [
            Comparison(
                "He et al. 2016, Fig. 1 and Sec. 4.2, ResNet-1001 on CIFAR-10",
                "with the original (post-activation) unit the training loss falls very slowly "
                "at the beginning; with pre-activation it falls quickly",
                f"after {r.epochs} epochs of MNIST-1D, log10(L_post / L_pre) by depth: {gaps}",
                None if g.lo <= 0 <= g.hi else g.lo > 0,
            ),
            Comparison(
                "He et al. 2016, Fig. 6 (right), ResNet-164 on CIFAR-10",
                "at 164 layers the pre-activation net ends with a slightly higher training "
                "loss but a lower test error (the gain there is regularisation)",
                f"depth {deep} after {r.epochs} epochs (not converged): log10(L_post / L_pre) "
                f"{g.interval()}",
                None,  # a short budget measures early training speed, not the converged loss
            ),
            Comparison(
                "He et al. 2016, Tables 3 and 4, CIFAR-10 test error, original vs pre-activation",
                "ResNet-110 6.61% vs 6.37%, ResNet-164 5.93% vs 5.46%, ResNet-1001 7.61% vs 4.92%",
                f"depth {deep} on MNIST-1D: post {err['post']:.1f}% vs pre {err['pre']:.1f}% "
                "test error",
                None,  # another dataset, half the width, 2 epochs instead of ~160
            ),
        ]

    def notes(self, r: Result) -> list[str]:
        notes = [
            f"{r.epochs} epoch(s) measure how fast each block type trains, not the loss it "
            "converges to: He et al. 2016 (Fig. 6 right) find the converged training loss of "
            "pre-activation ResNet-164 slightly higher than the original's, its test error lower."
        ]
        if max(r.depths) < 110:
            notes.append(
                f"He et al. 2016 saw the gap open at 110-1001 layers on CIFAR; this scale stops "
                f"at {max(r.depths)} layers, where the two may not separate or post-activation "
                "may train faster."
            )
        return notes

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
