"""C03 rnn-temporal-skip: a skip from step t to t+k shortens the gradient's path through time.

An RNN unrolled over T steps is a T-layer network with shared weights; the gradient from
``h_T`` back to ``h_0`` crosses T step Jacobians and, for a contracting tanh cell, shrinks like
``rho^T``. The temporal skip ``h_t = cell(x_t, h_{t-1}) + mean_k h_{t-k}``
(:class:`~skiplab.nn.TemporalSkip`) adds paths of ``T / k`` identity hops (El Hihi & Bengio
1995; Zhang et al. 2016), so the gradient need not vanish. The claim measures the gradient and
then whether it buys accuracy on the adding problem as the sequences grow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skiplab import _plot
from skiplab.claims._base import (
    Claim,
    Context,
    Evidence,
    Figure,
    Table,
    Verdict,
    register_claim,
)
from skiplab.claims._stats import summarize
from skiplab.data import adding_problem
from skiplab.models.rnn import RecurrentNet, RNNConfig

#: name -> (ks, merge); "plain" is the twin without temporal skips.
VARIANTS: dict[str, tuple[tuple[int, ...], str]] = {
    "plain": ((2,), "add"),
    "skip k=2": ((2,), "add"),
    "skip k=2,4": ((2, 4), "add"),
    "skip k=2 (average)": ((2,), "average"),
}
TRAINED = ("plain", "skip k=2", "skip k=2 (average)")
BASELINE_MSE = 1.0 / 6.0  # predicting the mean sum, 1: Var(U(0,1) + U(0,1))
SOLVED = 0.5  # "solves" the task: test MSE below half the baseline


def _model(name: str, hidden: int, seed: int) -> RecurrentNet:
    ks, merge = VARIANTS[name]
    torch.manual_seed(seed)  # the same cell weights for every variant of a seed
    return RecurrentNet(RNNConfig(hidden_size=hidden, ks=ks, merge=merge, skip=name != "plain"))


def gradient_norm(model: RecurrentNet, x: torch.Tensor) -> float:
    """Spectral norm of ``dh_T / dh_0`` for one sequence ``x`` ``(1, T, I)`` (float64)."""
    model = model.double()
    h0 = torch.zeros(model.cfg.hidden_size, dtype=torch.float64)

    def last(h: torch.Tensor) -> torch.Tensor:
        return model.rnn(x.double(), h.unsqueeze(0))[1].squeeze(0)

    jac = torch.autograd.functional.jacobian(last, h0, vectorize=True)  # (H, H)
    return float(torch.linalg.matrix_norm(jac, ord=2))


def train_adding(
    model: RecurrentNet, length: int, steps: int, seed: int, batch: int = 64, lr: float = 2e-3
) -> tuple[float, float, list[float]]:
    """Adam on fresh batches; returns test MSE, test accuracy (|error| < 0.04) and a curve."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_test, y_test = adding_problem(1000, length, seed=10_000 + seed)
    curve = []
    for step in range(steps):
        x, y = adding_problem(batch, length, seed=seed * 1_000_003 + step)
        loss = F.mse_loss(model(x).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
    with torch.no_grad():
        pred = model(x_test).squeeze(-1)
    mse = F.mse_loss(pred, y_test).item()
    acc = ((pred - y_test).abs() < 0.04).float().mean().item()
    k = max(1, steps // 20)  # a 20-point smoothed curve for the figure
    return mse, acc, [float(np.mean(curve[i : i + k])) for i in range(0, steps, k)]


@register_claim
class RNNTemporalSkip(Claim):
    id = "C03"
    slug = "rnn-temporal-skip"
    title = "A temporal skip t -> t+k gives the gradient a shorter path through time"
    statement = (
        "A skip connection from step t to step t+2 of a recurrent network gives the gradient a "
        "shorter path through time and helps it learn long-range dependencies."
    )
    method = (
        "Elman (tanh) RNNs, hidden 32-64, PyTorch's default init, with and without temporal "
        "skips h_t = cell(x_t, h_{t-1}) + mean_k h_{t-k} (k = 2; k = 2 and 4; and a convex "
        "'average' merge). (1) Spectral norm of dh_T/dh_0 at init, same cell weights for every "
        "variant, against T. (2) The adding problem (Le et al. 2015 form) trained with Adam on "
        "fresh batches at several lengths; test MSE against the mean-predictor baseline 1/6."
    )
    criterion = (
        "Gradient half: at the longest T the k = 2 skip keeps ||dh_T/dh_0|| above 0.1 and the "
        "plain RNN's is below 1e-3 of it, for every seed. Accuracy half: a length is solved when "
        f"the test MSE is below {SOLVED:g} x 1/6; the half holds when some length is solved by a "
        "skip variant in every seed and not by the plain RNN, and no length is solved by the "
        "plain RNN but not by the skip. Holds when both halves hold; fails when either is "
        "contradicted; inconclusive when nothing is solved at any length (the budget cannot "
        "tell the models apart)."
    )
    math = (
        "Plain: dh_T/dh_0 = prod_{t=1..T} J_t, ||.|| <= prod ||J_t|| ~ rho^T.\n"
        "Skip k: h_t = f(h_{t-1}) + mean_k h_{t-k}; the sum over paths includes the pure-skip "
        "path(s) of T/k identity hops (weight 1/|K| per hop; for one k the weight is 1), so "
        "dh_T/dh_0 = I + (terms through f) for T a multiple of k: no geometric decay forced.\n"
        "Adding problem: y = u_a + u_b, u ~ U(0,1); predicting 1 gives MSE 1/6."
    )
    references = (
        "El Hihi & Bengio 1995, Hierarchical Recurrent Neural Networks for Long-Term Dependencies",
        "Zhang et al. 2016, Architectural Complexity Measures of Recurrent Neural Networks",
        "Hochreiter & Schmidhuber 1997, Long Short-Term Memory (adding problem)",
        "Le, Jaitly & Hinton 2015, A Simple Way to Initialize Recurrent Networks of ReLUs",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}
    single_threaded = True

    def run(self, ctx: Context) -> Evidence:
        grad_lengths = ctx.pick(
            tiny=[5, 20], quick=[5, 10, 25, 50, 100, 200], full=[5, 10, 25, 50, 100, 200, 400, 1000]
        )
        lengths = ctx.pick(tiny=[5, 10], quick=[10, 20, 40], full=[10, 25, 50, 100, 200])
        steps = ctx.pick(tiny=30, quick=600, full=5000)
        hidden = ctx.pick(tiny=8, quick=32, full=64)
        ev = Evidence(seeds=ctx.seeds)
        grads: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
        results: dict[str, list[float]] = {}
        curves: dict[str, list[float]] = {}
        rows: list[list[Any]] = []
        for seed in ctx.seeds:
            cfg = {"lengths": grad_lengths, "hidden": hidden, "variants": list(VARIANTS)}
            with ctx.run(f"C03 gradient seed {seed}", cfg, seed=seed):
                x_all, _ = adding_problem(1, max(grad_lengths), seed=seed)
                for name in VARIANTS:
                    model = _model(name, hidden, seed)
                    for length in grad_lengths:
                        g = gradient_norm(model, x_all[:, :length])
                        grads[name].setdefault(str(length), []).append(g)
            for length in lengths:
                for name in TRAINED:
                    cfg = {
                        "task": "adding",
                        "length": length,
                        "steps": steps,
                        "hidden": hidden,
                        "variant": name,
                    }
                    with ctx.run(
                        f"C03 adding T={length} {name} seed {seed}", cfg, seed=seed
                    ) as run_id:
                        t0 = time.perf_counter()
                        model = _model(name, hidden, seed)
                        mse, acc, curve = train_adding(model, length, steps, seed)
                        wall = time.perf_counter() - t0
                        ctx.store.finish_run(
                            run_id,
                            "completed",
                            results={"test_mse": mse, "test_acc": acc, "wall_s": wall},
                        )
                    results.setdefault(f"{name}|{length}", []).append(mse)
                    results.setdefault(f"acc {name}|{length}", []).append(acc)
                    if seed == ctx.seeds[0]:
                        curves[f"{name}|{length}"] = curve
        for length in lengths:
            for name in TRAINED:
                m = summarize(results[f"{name}|{length}"])
                a = summarize(results[f"acc {name}|{length}"])
                rows.append([length, name, f"{m.mean:.4f} ± {m.std:.2g}", f"{m.mean / BASELINE_MSE:.2f}",
                             f"{a.mean:.1%}", "yes" if max(results[f"{name}|{length}"]) < SOLVED * BASELINE_MSE else "no"])  # fmt: skip
        ev.tables.append(
            Table(
                f"Adding problem: test MSE after {steps} Adam steps (batch 64), mean ± std over seeds",
                ["T", "model", "test MSE", "MSE / baseline", "acc (|err| < 0.04)", "solved in every seed"],
                rows,
                "baseline: always predicting 1 gives MSE 1/6",
            )
        )  # fmt: skip
        longest = str(max(grad_lengths))
        grad_rows = []
        for name in VARIANTS:
            for length in grad_lengths:
                s = summarize(grads[name][str(length)])
                grad_rows.append(
                    [name, length, f"{s.mean:.3g}", f"{min(grads[name][str(length)]):.3g}"]
                )
        ev.tables.append(
            Table(
                f"||dh_T/dh_0||_2 at init (tanh cell, hidden {hidden}), over {len(ctx.seeds)} seed(s)",
                ["model", "T", "mean", "min over seeds"],
                grad_rows,
            )
        )
        ev.series.update(
            grads=grads, grad_lengths=grad_lengths, lengths=lengths, results=results, curves=curves
        )
        for name in VARIANTS:
            ev.numbers[f"grad_T{longest}_{name}"] = float(np.mean(grads[name][longest]))
        for key, values in results.items():
            if not key.startswith("acc "):
                ev.numbers[f"mse_{key}"] = float(np.mean(values))
        if ctx.scale != "full":
            ev.notes.append(
                f"{steps} training steps per run: the tanh RNN's plateau on the adding problem "
                "(Le et al. 2015 train for ~10^6 examples) may outlast this budget for every model."
            )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        grads = evidence.series["grads"]
        longest = str(max(evidence.series["grad_lengths"]))
        plain_g, skip_g = grads["plain"][longest], grads["skip k=2"][longest]
        grad_ok = min(skip_g) > 0.1 and max(plain_g) < 1e-3 * min(skip_g)
        res = evidence.series["results"]

        def solved(name: str, length: int) -> bool:
            return max(res[f"{name}|{length}"]) < SOLVED * BASELINE_MSE

        lengths = evidence.series["lengths"]
        skips = [n for n in TRAINED if n != "plain"]
        skip_wins = [
            t for t in lengths if any(solved(n, t) for n in skips) and not solved("plain", t)
        ]
        plain_wins = [
            t for t in lengths if solved("plain", t) and not any(solved(n, t) for n in skips)
        ]
        anything = any(solved(n, t) for n in TRAINED for t in lengths)
        mse = ", ".join(
            f"T={t}: plain {np.mean(res[f'plain|{t}']):.3f} / k=2 {np.mean(res[f'skip k=2|{t}']):.3f}"
            f" / avg {np.mean(res[f'skip k=2 (average)|{t}']):.3f}"
            for t in lengths
        )
        detail = (
            f"||dh_T/dh_0|| at T={longest}: plain {np.mean(plain_g):.2g}, skip k=2 {np.mean(skip_g):.3g}, "
            f"k=2,4 {np.mean(grads['skip k=2,4'][longest]):.3g}. Adding-problem test MSE (baseline 0.167): {mse}."
        )
        if not grad_ok:
            return Verdict("fails", f"the skip did not keep the gradient. {detail}")
        if plain_wins:
            return Verdict(
                "fails", f"the plain RNN solved T={plain_wins} where no skip variant did. {detail}"
            )
        if skip_wins:
            return Verdict(
                "holds", f"the skip solved T={skip_wins} where the plain RNN did not. {detail}"
            )
        if not anything:
            return Verdict(
                "inconclusive",
                f"the gradient half holds, but no model solved the adding problem at any length within the budget. {detail}",
            )
        return Verdict(
            "inconclusive",
            f"the gradient half holds; plain and skip RNNs solved the same lengths. {detail}",
        )

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        grads = evidence.series["grads"]
        glen = evidence.series["grad_lengths"]
        lengths = evidence.series["lengths"]
        res = evidence.series["results"]
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.7)
        ax = axes[0][0]
        colors = {"plain": _plot.PLAIN, "skip k=2": _plot.RESIDUAL, "skip k=2,4": _plot.PALETTE[2],
                  "skip k=2 (average)": _plot.PALETTE[4]}  # fmt: skip
        for name, color in colors.items():
            m = [max(np.mean(grads[name][str(t)]), 1e-300) for t in glen]
            ax.semilogy(glen, m, "o-", color=color, label=name)
        ax.set(
            title="gradient through time at init", xlabel="T (steps)", ylabel="||dh_T / dh_0||_2"
        )
        ax.legend(fontsize=8)
        ax = axes[0][1]
        for name in TRAINED:
            m = [np.mean(res[f"{name}|{t}"]) for t in lengths]
            lo = [min(res[f"{name}|{t}"]) for t in lengths]
            hi = [max(res[f"{name}|{t}"]) for t in lengths]
            ax.plot(lengths, m, "o-", color=colors[name], label=name)
            ax.fill_between(lengths, lo, hi, color=colors[name], alpha=0.2)
        ax.axhline(BASELINE_MSE, color=_plot.REFERENCE, ls="--", label="predict 1 (1/6)")
        ax.axhline(SOLVED * BASELINE_MSE, color=_plot.REFERENCE, ls=":", label="'solved' bound")
        ax.set(
            title="adding problem: test MSE vs length",
            xlabel="T (steps)",
            ylabel="test MSE",
            yscale="log",
        )
        ax.legend(fontsize=8)
        ax = axes[0][2]
        longest = max(lengths)
        for name in TRAINED:
            c = evidence.series["curves"].get(f"{name}|{longest}")
            if c:
                ax.semilogy(np.arange(len(c)), c, color=colors[name], label=name)
        ax.axhline(BASELINE_MSE, color=_plot.REFERENCE, ls="--")
        ax.set(
            title=f"training loss, T = {longest} (first seed)",
            xlabel="training progress (1/20ths)",
            ylabel="MSE",
        )
        ax.legend(fontsize=8)
        _plot.save(fig, outdir / "rnn_temporal_skip.png")
        return [
            Figure(
                "rnn_temporal_skip.png",
                "Left: spectral norm of dh_T/dh_0 at init, same tanh cell with and without temporal "
                "skips; the plain RNN's falls geometrically with T. Middle: adding-problem test MSE "
                "against sequence length (band: range over seeds; dashed: the mean predictor). "
                "Right: training loss at the longest length.",
            )
        ]
