"""C03 rnn-temporal-skip: a skip from step t to t+k shortens the gradient's path through time.

An RNN unrolled over T steps is a T-layer network with shared weights; the gradient from
``h_T`` back to ``h_0`` crosses T step Jacobians and, for a contracting tanh cell, shrinks like
``rho^T``. The temporal skip ``h_t = cell(x_t, h_{t-1}) + mean_k h_{t-k}``
(:class:`~skiplab.nn.TemporalSkip`) adds paths of ``T / k`` identity hops (El Hihi & Bengio
1995; Zhang et al. 2016), so the gradient need not vanish. The claim measures the gradient and
then whether it buys accuracy on the adding problem as the sequences grow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import describe
from skiplab.data import adding_problem
from skiplab.diagnostics.through_time import state_jacobian_norm
from skiplab.models.rnn import RecurrentNet, RNNConfig
from skiplab.train import SequenceRegression, TrainConfig

#: name -> (ks, merge); "plain" is the twin without temporal skips.
VARIANTS: dict[str, tuple[tuple[int, ...], str]] = {
    "plain": ((2,), "add"),
    "skip k=2": ((2,), "add"),
    "skip k=2,4": ((2, 4), "add"),
    "skip k=2 (average)": ((2,), "average"),
}
SKIPS = ("skip k=2", "skip k=2 (average)")  # the trained skip variants
TRAINED = ("plain", *SKIPS)
BASELINE_MSE = 1.0 / 6.0  # predicting the mean sum, 1: Var(U(0,1) + U(0,1))
SOLVED = 0.5  # "solves" the task: test MSE below half the baseline
TOLERANCE = 0.04  # test accuracy: the fraction of sums predicted within 0.04
CURVE_POINTS = 20  # the training-loss curve: the mean loss of each twentieth of the steps
COLORS = {"plain": _plot.PLAIN, "skip k=2": _plot.RESIDUAL, "skip k=2,4": _plot.PALETTE[2],
          "skip k=2 (average)": _plot.PALETTE[4]}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    grad_lengths: tuple[int, ...] = (5, 10, 25, 50, 100, 200)  # the plain RNN's falls to ~0
    lengths: tuple[int, ...] = (10, 20, 40)  # adding-problem lengths trained in minutes
    steps: int = 600  # Adam steps per adding-problem run
    hidden: int = 32  # enough state for two numbers
    batch_size: int = 64  # fresh sequences per step
    lr: float = 2e-3  # Adam; clipped at gradient norm 1 against the tanh RNN's spikes
    test_size: int = 1000  # held-out sequences per length


SCALES = {
    "tiny": Settings(grad_lengths=(5, 20), lengths=(5, 10), steps=30, hidden=8),
    "quick": Settings(),
    "full": Settings(grad_lengths=(5, 10, 25, 50, 100, 200, 400, 1000),
                     lengths=(10, 25, 50, 100, 200), steps=5000, hidden=64),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    task: str  # "gradient" (dh_T/dh_0 at init) or "adding" (trained on the adding problem)
    variant: str  # a key of VARIANTS
    length: int  # T: the sequence length


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, float]:
    """One variant from its seeded init (the same cell weights for every variant of a seed)."""
    ks, merge = VARIANTS[c.variant]
    cfg = RNNConfig(hidden_size=s.hidden, ks=ks, merge=merge, skip=c.variant != "plain")
    if c.task == "gradient":  # one sequence per seed, cut to length T
        model = run.build(lambda: RecurrentNet(cfg).double())
        x = run.put(adding_problem(1, max(s.grad_lengths), seed=seed)[0].double())  # (1, T, 2)
        norm = state_jacobian_norm(model.rnn, x[:, : c.length], x.new_zeros(s.hidden))
        run.log(c.length, grad_norm=norm)
        return {"grad_norm": norm}
    model = run.build(lambda: RecurrentNet(cfg))
    every = max(1, s.steps // CURVE_POINTS)  # an "epoch": one point of the loss curve
    task = SequenceRegression(
        lambda n, batch_seed: adding_problem(n, c.length, seed=batch_seed),
        adding_problem(s.test_size, c.length, seed=10_000 + seed),
        steps_per_epoch=every,
        tolerance=TOLERANCE,
    )
    train = TrainConfig(
        max_steps=s.steps, batch_size=s.batch_size, lr=s.lr, optimizer="adam", weight_decay=0.0,
        schedule="constant", grad_clip=1.0, eval_every=math.ceil(s.steps / every),
    )  # fmt: skip
    fit = run.fit(model, task, train)
    last = fit.last if fit.diverged is None else {}
    return {"test_mse": last.get("test_mse", math.nan), "test_acc": last.get("test_acc", math.nan)}


Grid = dict[str, dict[int, list[float]]]  # variant -> length -> one value per seed


def _grid(runs: Runs[Condition], key: str, names: Any, lengths: Any) -> Grid:
    return {n: {t: runs.values(key, variant=n, length=t) for t in lengths} for n in names}


@dataclass
class Result(Summary):
    grad_lengths: list[int]
    lengths: list[int]
    grads: Grid  # ||dh_T/dh_0|| at init, every variant
    mse: Grid  # adding-problem test MSE, trained variants
    acc: Grid  # fraction of test sums within TOLERANCE
    curves: dict[str, list[float]]  # trained variant -> training loss, longest length, seed 1
    steps: int
    hidden: int
    batch_size: int
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)

    def solved(self, name: str, length: int) -> bool:
        """Test MSE below SOLVED x baseline in every seed (a diverged run never solves)."""
        return all(v < SOLVED * BASELINE_MSE for v in self.mse[name][length])


@register_claim
class RNNTemporalSkip(Claim[Settings, Condition, Result]):
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
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        grads = [Condition("gradient", n, t) for n in VARIANTS for t in s.grad_lengths]
        return grads + [Condition("adding", n, t) for t in s.lengths for n in TRAINED]

    def label(self, c: Condition) -> str:
        return f"{c.task} {c.variant} T={c.length}"

    def cost(self, s: Settings, c: Condition) -> float:
        if c.task == "gradient":  # one reverse pass over T steps per state unit
            return c.length * s.hidden**3
        return 3 * s.steps * s.batch_size * c.length * s.hidden**2

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        adding = runs.where(task="adding")
        first = {n: adding.where(variant=n, length=max(s.lengths)).records[0] for n in TRAINED}
        return Result(
            list(s.grad_lengths), list(s.lengths),
            grads=_grid(runs.where(task="gradient"), "grad_norm", VARIANTS, s.grad_lengths),
            mse=_grid(adding, "test_mse", TRAINED, s.lengths),
            acc=_grid(adding, "test_acc", TRAINED, s.lengths),
            curves={n: r.curve("train_loss") for n, r in first.items()},
            steps=s.steps, hidden=s.hidden, batch_size=s.batch_size, seeds=runs.seeds,
            diverged=[f"{r.condition}, seed {r.seed}: {r.error}" for r in adding if r.diverged],
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        longest = max(r.grad_lengths)
        plain_g, skip_g = r.grads["plain"][longest], r.grads["skip k=2"][longest]
        grad_ok = min(skip_g) > 0.1 and max(plain_g) < 1e-3 * min(skip_g)
        checks = [
            Check(f"at T={longest} the k = 2 skip keeps ||dh_T/dh_0|| above 0.1 and the plain "
                  "RNN's is below 1e-3 of it, in every seed", grad_ok,
                  f"plain max {max(plain_g):.2g}, skip k=2 min {min(skip_g):.3g}")
        ]  # fmt: skip
        if not any(r.solved(n, t) for n in TRAINED for t in r.lengths):
            name = f"some model solves the adding problem at some length within {r.steps} steps"
            return [*checks, Check(name, False, "no model solved any length", "evidence")]
        skip = {t: any(r.solved(n, t) for n in SKIPS) for t in r.lengths}
        skip_wins = [t for t in r.lengths if skip[t] and not r.solved("plain", t)]
        plain_wins = [t for t in r.lengths if r.solved("plain", t) and not skip[t]]
        return [
            *checks,
            Check("no length is solved by the plain RNN but by no skip variant", not plain_wins,
                  f"the plain RNN alone solved T={plain_wins}"),
            Check("some length is solved by a skip variant in every seed and not by the plain "
                  "RNN", bool(skip_wins), f"the skip alone solved T={skip_wins}", "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        longest = max(r.grad_lengths)
        g = {name: float(np.mean(r.grads[name][longest])) for name in VARIANTS}
        mse = ", ".join(
            f"T={t}: plain {np.mean(r.mse['plain'][t]):.3f} / k=2 {np.mean(r.mse['skip k=2'][t]):.3f}"
            f" / avg {np.mean(r.mse['skip k=2 (average)'][t]):.3f}"
            for t in r.lengths
        )
        return (
            f"||dh_T/dh_0|| at T={longest}: plain {g['plain']:.2g}, skip k=2 {g['skip k=2']:.3g}, "
            f"k=2,4 {g['skip k=2,4']:.3g}. Adding-problem test MSE (baseline 0.167): {mse}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        longest = max(r.grad_lengths)
        out = {
            f"grad_T{longest}_{name}": float(np.mean(r.grads[name][longest])) for name in VARIANTS
        }
        for name in TRAINED:
            for t in r.lengths:
                out[f"mse_{name}|{t}"] = float(np.mean(r.mse[name][t]))
        return out

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for t in r.lengths:
            for name in TRAINED:
                m, a = describe(r.mse[name][t]), describe(r.acc[name][t])
                rows.append([t, name, f"{m.mean:.4f} ± {m.std:.2g}", f"{m.mean / BASELINE_MSE:.2f}",
                             f"{a.mean:.1%}", "yes" if r.solved(name, t) else "no"])  # fmt: skip
        grad_rows: list[list[Any]] = []
        for name in VARIANTS:
            for t in r.grad_lengths:
                g = r.grads[name][t]
                grad_rows.append([name, t, f"{describe(g).mean:.3g}", f"{min(g):.3g}"])
        return [
            Table(
                f"Adding problem: test MSE after {r.steps} Adam steps (batch {r.batch_size}), mean ± std over seeds",
                ["T", "model", "test MSE", "MSE / baseline", "acc (|err| < 0.04)", "solved in every seed"],
                rows,
                "baseline: always predicting 1 gives MSE 1/6",
            ),
            Table(
                f"||dh_T/dh_0||_2 at init (tanh cell, hidden {r.hidden}), over {len(r.seeds)} seed(s)",
                ["model", "T", "mean", "min over seeds"],
                grad_rows,
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        notes = [f"diverged: {msg}" for msg in r.diverged]
        if r.steps < SCALES["full"].steps:
            notes.append(
                f"{r.steps} training steps per run: the tanh RNN's plateau on the adding problem "
                "(Le et al. 2015 train for ~10^6 examples) may outlast this budget for every model."
            )
        return notes

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.7)
        ax = axes[0][0]
        for name, color in COLORS.items():
            m = [max(float(np.mean(r.grads[name][t])), 1e-300) for t in r.grad_lengths]
            ax.semilogy(r.grad_lengths, m, "o-", color=color, label=name)
        ax.set(
            title="gradient through time at init", xlabel="T (steps)", ylabel="||dh_T / dh_0||_2"
        )
        ax.legend(fontsize=8)
        ax = axes[0][1]
        for name in TRAINED:
            runs = [r.mse[name][t] for t in r.lengths]
            ax.plot(r.lengths, [np.mean(v) for v in runs], "o-", color=COLORS[name], label=name)
            ax.fill_between(r.lengths, [min(v) for v in runs], [max(v) for v in runs],
                            color=COLORS[name], alpha=0.2)  # fmt: skip
        ax.axhline(BASELINE_MSE, color=_plot.REFERENCE, ls="--", label="predict 1 (1/6)")
        ax.axhline(SOLVED * BASELINE_MSE, color=_plot.REFERENCE, ls=":", label="'solved' bound")
        ax.set(title="adding problem: test MSE vs length", xlabel="T (steps)", ylabel="test MSE",
               yscale="log")  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][2]
        every = max(1, r.steps // CURVE_POINTS)  # each point: the mean loss of `every` steps
        for name in TRAINED:
            steps = np.minimum(every * np.arange(1, len(r.curves[name]) + 1), r.steps)
            ax.semilogy(steps, r.curves[name], color=COLORS[name], label=name)
        ax.axhline(BASELINE_MSE, color=_plot.REFERENCE, ls="--")
        ax.set(title=f"training loss, T = {max(r.lengths)} (first seed)", xlabel="training step",
               ylabel="MSE")  # fmt: skip
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
