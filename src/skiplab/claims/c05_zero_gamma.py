"""C05 zero-gamma: the last normalisation scale of each branch at 0 makes every block an identity.

Goyal et al. 2017 ("Accurate, Large Minibatch SGD", section 5.1) set the scale ``gamma`` of the
last BatchNorm of each residual branch to 0, so that every block starts as the identity (up to
its shortcut and post-activation) and the network starts as a shallow one whose depth the
training fades in. The claim checks the identity exactly on a 110-layer ResNet and a 100-layer
residual MLP, then trains both with and without zero-gamma across learning rates and seeds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import summarize
from skiplab.diagnostics import eval_mode
from skiplab.models import create_model
from skiplab.nn import Residual, ZeroGamma
from skiplab.train import DivergedError, TrainConfig, Trainer

INITS = ("standard", "zero-gamma")
SMOOTH = 10  # training losses are averaged over this many steps before each budget


@torch.no_grad()
def identity_blocks(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """How many residual blocks of ``model`` give exactly ``post(shortcut(x))`` on their input
    in eval mode (the branch adds exactly 0), out of how many ran."""
    seen: list[tuple[Residual, torch.Tensor, torch.Tensor]] = []
    blocks = [m for m in model.modules() if isinstance(m, Residual) and m.shortcut is not None]
    handles = [b.register_forward_hook(lambda m, i, o: seen.append((m, i[0], o))) for b in blocks]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    exact = sum(
        1
        for b, inp, out in seen
        if b.shortcut is not None and torch.equal(out, b.post(b.shortcut(inp)))
    )
    return exact, len(seen)


def _recorder(out: list[float]) -> Any:
    """A Trainer hook appending every step's training loss to ``out``."""

    def hook(_trainer: Any, _step: int, loss: float) -> None:
        out.append(loss)

    return hook


def budget_losses(losses: list[float], budgets: list[int]) -> list[float]:
    """Mean training loss over the ``SMOOTH`` steps before each budget (inf if not reached)."""
    out = []
    for b in budgets:
        window = losses[max(0, b - SMOOTH) : b]
        out.append(float(np.mean(window)) if len(losses) >= b and window else math.inf)
    return out


@register_claim
class ZeroGammaClaim(Claim):
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

    def run(self, ctx: Context) -> Evidence:
        nets: list[dict[str, Any]] = [
            {
                "label": "ResMLP-100", "name": "resmlp100", "kwargs": {"in_features": 40},
                "lrs": ctx.pick(tiny=[0.1, 1.0], quick=[0.05, 0.2, 0.8, 3.2],
                                full=[0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
                "n_train": ctx.pick(tiny=512, quick=4000, full=4000),
                "epochs": ctx.pick(tiny=4, quick=3, full=60),
            },
            {
                "label": "ResNet-110", "name": "resnet110",
                "kwargs": {"dim": 1, "in_channels": 1},
                "lrs": ctx.pick(tiny=[0.1, 1.0], quick=[0.1, 1.6],
                                full=[0.05, 0.1, 0.2, 0.4, 0.8, 1.6]),
                "n_train": ctx.pick(tiny=512, quick=2560, full=4000),
                "epochs": ctx.pick(tiny=2, quick=3, full=60),
            },
        ]  # fmt: skip
        if ctx.scale == "tiny":  # tiny scale keeps the depth of the MLP, not of the ResNet
            nets[1]["name"], nets[1]["label"] = "resnet20", "ResNet-20"
        from skiplab.data import load_mnist1d

        data = load_mnist1d()
        x_all, y_all = data.train.tensors
        test = data.test
        ev = Evidence(seeds=ctx.seeds)
        identity: dict[str, list[int]] = {}
        runs: list[dict[str, Any]] = []
        for net in nets:
            torch.manual_seed(0)
            model = create_model(net["name"], branch_init=ZeroGamma(), **net["kwargs"])
            exact, total = identity_blocks(model, x_all[:64])
            identity[net["label"]] = [exact, total]
            ev.numbers[f"{net['label']}_identity_blocks"] = exact
            ev.numbers[f"{net['label']}_blocks"] = total
            steps_per_epoch = math.ceil(net["n_train"] / 128)
            total_steps = steps_per_epoch * net["epochs"]
            budgets = sorted({max(1, total_steps // 4), max(1, total_steps // 2), total_steps})
            net["budgets"] = budgets
            train = TensorDataset(x_all[: net["n_train"]], y_all[: net["n_train"]])
            for lr in net["lrs"]:
                for init in INITS:
                    for seed in ctx.seeds:
                        cfg = {"model": net["name"], "init": init, "lr": lr,
                               "epochs": net["epochs"], "n_train": net["n_train"]}  # fmt: skip
                        tcfg = TrainConfig(epochs=net["epochs"], batch_size=128, lr=lr, seed=seed)
                        name = f"C05 {net['label']} {init} lr={lr:g} seed {seed}"
                        with ctx.run(name, cfg, seed=seed) as run_id:
                            torch.manual_seed(seed)
                            model = create_model(
                                net["name"],
                                branch_init=ZeroGamma() if init == "zero-gamma" else None,
                                **net["kwargs"],
                            )
                            losses: list[float] = []
                            trainer = Trainer(
                                model, tcfg, store=ctx.store, run_id=run_id, progress=False,
                                hooks=[_recorder(losses)],
                            )  # fmt: skip
                            diverged_at = None
                            try:
                                hist = trainer.fit(train, test)
                                acc = hist.last["test_acc"]
                            except DivergedError as err:
                                diverged_at, acc = err.step, float("nan")
                        runs.append({
                            "net": net["label"], "init": init, "lr": lr, "seed": seed,
                            "diverged_at": diverged_at, "acc": acc,
                            "budget_loss": budget_losses(losses, budgets),
                            "curve": losses[:: max(1, len(losses) // 150)],
                            "stride": max(1, len(losses) // 150),
                        })  # fmt: skip
        ev.series.update(
            identity=identity, runs=runs,
            nets=[{k: n[k] for k in ("label", "name", "lrs", "budgets", "epochs", "n_train")}
                  for n in nets],
        )  # fmt: skip
        rows = []
        for net in nets:
            for lr in net["lrs"]:
                for init in INITS:
                    rs = [r for r in runs if r["net"] == net["label"] and r["lr"] == lr
                          and r["init"] == init]  # fmt: skip
                    div = sum(r["diverged_at"] is not None for r in rs)
                    ok = [r for r in rs if r["diverged_at"] is None]
                    final = [r["budget_loss"][-1] for r in ok]
                    key = f"{net['label']}_{init}_lr{lr:g}"
                    ev.numbers[f"{key}_diverged"] = div
                    if final:
                        ev.numbers[f"{key}_final_loss"] = float(np.mean(final))
                        ev.numbers[f"{key}_test_acc"] = float(np.mean([r["acc"] for r in ok]))
                    rows.append([
                        net["label"], lr, init, f"{div}/{len(rs)}",
                        *(str(summarize([r["budget_loss"][i] for r in ok])) if ok else "diverged"
                          for i in range(len(net["budgets"]))),
                        str(summarize([r["acc"] for r in ok])) if ok else "-",
                    ])  # fmt: skip
        for init in INITS:
            ev.numbers[f"{init}_diverged_total"] = sum(
                r["diverged_at"] is not None for r in runs if r["init"] == init
            )
        ev.tables.append(
            Table(
                "Training loss at step budgets (mean over the 10 steps before each; "
                "columns: 1/4, 1/2 and all of the budget), over seeds",
                [
                    "network",
                    "lr",
                    "init",
                    "diverged",
                    "loss @1/4",
                    "loss @1/2",
                    "loss @end",
                    "test acc",
                ],
                rows,
                "; ".join(
                    f"{n['label']}: {n['budgets'][-1]} steps ({n['epochs']} epochs of "
                    f"{n['n_train']})"
                    for n in nets
                ),
            )
        )
        ev.tables.append(
            Table(
                "Exact identity at init with ZeroGamma()",
                ["network", "blocks giving exactly post(shortcut(x))", "blocks"],
                [[k, v[0], v[1]] for k, v in identity.items()],
            )
        )
        if ctx.scale != "full":
            ev.notes.append(
                "Quick scale trains for a few hundred steps (ResNet-110: "
                f"{nets[1]['budgets'][-1]} steps): it shows early-training stability and speed, "
                "where zero-gamma is meant to act, not final accuracy after a full schedule."
            )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        ident = evidence.series["identity"]
        exact = all(e == t and t > 0 for e, t in ident.values())
        runs = evidence.series["runs"]
        div = {i: sum(r["diverged_at"] is not None for r in runs if r["init"] == i) for i in INITS}
        settings = sorted({(r["net"], r["lr"]) for r in runs})
        better = worse = comparable = 0
        lines = []
        for net, lr in settings:
            rs = [r for r in runs if r["net"] == net and r["lr"] == lr]
            if any(r["diverged_at"] is not None for r in rs):
                continue
            comparable += 1
            m = {i: float(np.mean([r["budget_loss"][-1] for r in rs if r["init"] == i]))
                 for i in INITS}  # fmt: skip
            better += m["zero-gamma"] < m["standard"]
            worse += m["zero-gamma"] > m["standard"]
            lines.append(f"{net} lr {lr:g}: {m['standard']:.3f} -> {m['zero-gamma']:.3f}")
        n_runs = len(runs) // 2
        detail = (
            f"identity at init: {', '.join(f'{k} {e}/{t} blocks' for k, (e, t) in ident.items())}; "
            f"diverged runs: standard {div['standard']}/{n_runs}, zero-gamma "
            f"{div['zero-gamma']}/{n_runs}; final training loss standard -> zero-gamma where "
            f"neither diverged ({better} of {comparable} lower): {'; '.join(lines) or 'none'}."
        )
        if not exact:
            return Verdict("fails", f"zero-gamma blocks are not exact identities. {detail}")
        if div["zero-gamma"] > div["standard"]:
            return Verdict("fails", f"zero-gamma diverged more often. {detail}")
        fewer_div = div["zero-gamma"] < div["standard"] and worse <= comparable / 2
        lower_loss = comparable > 0 and better > comparable / 2
        if fewer_div or lower_loss:
            return Verdict("holds", detail)
        return Verdict("inconclusive", f"no difference in stability or loss. {detail}")

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        nets = evidence.series["nets"]
        runs = evidence.series["runs"]
        fig, axes = _plot.subplots(1, len(nets) + 2, width=4.4, height=3.8)
        colors = {"standard": _plot.PLAIN, "zero-gamma": _plot.RESIDUAL}
        for ax, net in zip(axes[0], nets):
            styles = dict(zip(net["lrs"], ["-", "--", "-.", ":"] * 3))
            for lr in net["lrs"]:
                for init in INITS:
                    rs = [r for r in runs if r["net"] == net["label"] and r["lr"] == lr
                          and r["init"] == init]  # fmt: skip
                    for k, r in enumerate(rs):
                        c = np.asarray(r["curve"], dtype=float)
                        steps = np.arange(len(c)) * r["stride"] + 1
                        label = f"{init}, lr {lr:g}" if k == 0 else None
                        ax.plot(steps, c, styles[lr], color=colors[init], alpha=0.75, lw=1.2,
                                label=label)  # fmt: skip
                        if r["diverged_at"] is not None and len(c):
                            top = min(float(np.nan_to_num(c[-1], nan=1e4)), 1e4)
                            ax.plot(steps[-1], top, "x", color=colors[init], ms=9, mew=2)
            ax.set_yscale("log")
            ax.set(title=f"{net['label']} on MNIST-1D (x: diverged)", xlabel="step",
                   ylabel="training loss (clipped at 1e4)", ylim=(None, 1e4))  # fmt: skip
            # below the axes: inside, the legend hid the early spikes it is meant to explain
            ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        ax = axes[0][len(nets)]
        for net, marker in zip(nets, ("o", "s")):
            for init in INITS:
                xs, ys = [], []
                for lr in net["lrs"]:
                    ok = [r["budget_loss"][-1] for r in runs if r["net"] == net["label"]
                          and r["lr"] == lr and r["init"] == init and r["diverged_at"] is None]  # fmt: skip
                    if ok:
                        xs.append(lr)
                        ys.append(float(np.mean(ok)))
                ax.plot(xs, ys, marker + "-", color=colors[init], label=f"{net['label']}, {init}",
                        mfc="none" if marker == "s" else colors[init])  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(title="loss at the end of the budget", xlabel="learning rate",
               ylabel="mean training loss (runs that did not diverge)")  # fmt: skip
        ax.legend(fontsize=7)
        ax = axes[0][-1]
        width = 0.38
        labels = []
        for k, (net, lr) in enumerate([(n["label"], lr) for n in nets for lr in n["lrs"]]):
            labels.append(f"{net.split('-')[0]}\nlr {lr:g}")
            for i, init in enumerate(INITS):
                rs = [r for r in runs if r["net"] == net and r["lr"] == lr and r["init"] == init]
                frac = np.mean([r["diverged_at"] is not None for r in rs]) if rs else 0.0
                ax.bar(k + (i - 0.5) * width, frac, width, color=colors[init],
                       label=init if k == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set(title="fraction of runs that diverged", ylabel="diverged / runs", ylim=(0, 1.05))
        ax.legend()
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
