"""C03 rnn-temporal-skip: a skip from step t to t+k shortens the gradient's path through time.

An RNN unrolled over T steps is a T-layer network with shared weights; the gradient from
``h_T`` back to ``h_0`` crosses T step Jacobians and, for a contracting tanh cell, shrinks like
``rho^T``. The temporal skip ``h_t = cell(x_t, h_{t-1}) + mean_k h_{t-k}``
(:class:`~skiplab.nn.TemporalSkip`) adds paths of ``T / k`` identity hops (El Hihi & Bengio
1995; Zhang et al. 2016), so the gradient need not vanish. The claim measures that gradient at
init, then what it buys: the longest span over which each model learns to carry one symbol
(first-symbol recall, the latching task of Bengio et al. 1994), climbing a ladder of lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference
from skiplab.data.recall import first_symbol_recall
from skiplab.diagnostics.through_time import state_jacobian_norm
from skiplab.models.rnn import RecurrentNet, RNNConfig
from skiplab.train import StreamClassification, TrainConfig

#: name -> (ks, merge); "plain" is the twin without temporal skips.
VARIANTS: dict[str, tuple[tuple[int, ...], str]] = {
    "plain": ((2,), "add"),
    "skip k=2": ((2,), "add"),
    "skip k=2,4": ((2, 4), "add"),
    "skip k=2 (average)": ((2,), "average"),
}
TRAINED = ("plain", "skip k=2")  # the two arms of the recall ladder
SOLVED = 0.95  # a rung is solved: test accuracy >= 95% (guessing scores 1 / symbols)
STOP = 0.99  # stop training a rung once the last WINDOW fresh batches average >= 99% correct
WINDOW = 4  # batches behind the stopping rule (256 sequences, each scored before its step)
LOG_EVERY = 25  # training loss logged every 25 steps
SIGN_SEEDS = 6  # seeds at which "every seed agrees" is a 95% sign-test interval (1 - 2^-5)
COLORS = {"plain": _plot.PLAIN, "skip k=2": _plot.RESIDUAL, "skip k=2,4": _plot.PALETTE[2],
          "skip k=2 (average)": _plot.PALETTE[4]}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    grad_lengths: tuple[int, ...] = (5, 10, 25, 50, 100, 200)  # the plain RNN's falls to ~0
    lengths: tuple[int, ...] = (5, 10, 20, 40, 80, 160)  # the ladder; plain solves 5, not 40
    symbols: int = 4  # classes to recall (guessing: 25%) and distractor tokens
    steps: int = 600  # Adam steps per rung at most; the skip needs ~25-125, plain ~25-300
    hidden: int = 16  # ample for one of four symbols
    batch_size: int = 64  # fresh sequences per step
    lr: float = 1e-2  # Adam; clipped at gradient norm 1 against the tanh RNN's spikes
    test_size: int = 1000  # held-out sequences per rung


SCALES = {
    "tiny": Settings(grad_lengths=(5, 20), lengths=(5, 40), steps=150),
    "quick": Settings(),
    "full": Settings(grad_lengths=(5, 10, 25, 50, 100, 200, 400, 1000),
                     lengths=(5, 10, 20, 40, 80, 160, 320, 640), steps=3000, hidden=32),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    task: str  # "gradient" (dh_T/dh_0 at init) or "recall" (the ladder of trained lengths)
    variant: str  # a key of VARIANTS
    length: int  # gradient: T; recall: the top rung


def _config(s: Settings, variant: str) -> RNNConfig:
    ks, merge = VARIANTS[variant]
    return RNNConfig(
        input_size=2 * s.symbols, hidden_size=s.hidden, out_features=s.symbols, ks=ks,
        merge=merge, skip=variant != "plain",
    )  # fmt: skip


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, float]:
    """One variant from its seeded init (the same cell weights for every variant of a seed)."""
    cfg = _config(s, c.variant)
    if c.task == "gradient":  # one sequence per seed, cut to length T
        model = run.build(lambda: RecurrentNet(cfg).double())
        x = first_symbol_recall(1, max(s.grad_lengths), s.symbols, seed=seed)[0]
        x = run.put(x.double())[:, : c.length]  # (1, T, 2 * symbols)
        norm = state_jacobian_norm(model.rnn, x, x.new_zeros(s.hidden))
        run.log(c.length, grad_norm=norm)
        return {"grad_norm": norm}
    out: dict[str, float] = {"longest": 0.0}
    for length in s.lengths:  # climb until the first rung not solved
        model = run.build(lambda: RecurrentNet(cfg))  # the same init at every rung
        acc, steps = _train(run, s, model, length, seed)
        out[f"acc|{length}"], out[f"steps|{length}"] = acc, steps
        run.log(length, rung_acc=acc, rung_steps=steps)  # one row per rung climbed
        if not acc >= SOLVED:  # a diverged rung (NaN) is not solved either
            break
        out["longest"] = float(length)
    return out


def _train(run: Run, s: Settings, model: RecurrentNet, length: int, seed: int) -> tuple[float, int]:
    """Adam on fresh batches until the last WINDOW batches (each scored before the step that
    learns from it) average >= STOP correct, or ``s.steps`` steps; the held-out accuracy of
    the model it ends with (NaN if it diverged) and the steps taken."""
    task = StreamClassification(
        lambda n, batch_seed: first_symbol_recall(n, length, s.symbols, seed=batch_seed),
        first_symbol_recall(s.test_size, length, s.symbols, seed=10_000 + seed),
        steps_per_epoch=WINDOW,
    )  # fmt: skip
    cfg = TrainConfig(
        epochs=1, max_steps=s.steps, batch_size=s.batch_size, lr=s.lr, optimizer="adam",
        weight_decay=0.0, schedule="constant", grad_clip=1.0, eval_every=s.steps,
        log_every=LOG_EVERY,
    )  # fmt: skip
    fit = run.fit(
        model, task, cfg, prefix=f"T{length}/", until=lambda h: h.last["train_acc"] >= STOP
    )
    acc = math.nan if fit.diverged else fit.last["test_acc"]
    return acc, fit.steps


Grid = dict[str, dict[int, list[float]]]  # variant -> length -> one value per seed


def _grid(runs: Runs[Condition], key: str, names: Any, lengths: Any) -> Grid:
    return {n: {t: runs.values(key, variant=n, length=t) for t in lengths} for n in names}


@dataclass
class Result(Summary):
    grad_lengths: list[int]
    lengths: list[int]  # the ladder
    grads: Grid  # ||dh_T/dh_0|| at init, every variant
    acc: Grid  # test accuracy per rung, trained variants (NaN: not reached)
    steps: Grid  # Adam steps spent on the rung (NaN: not reached)
    longest: dict[str, list[float]]  # trained variant -> longest rung solved, per seed
    max_steps: int
    hidden: int
    symbols: int
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)

    def solved(self, name: str, length: int) -> int:
        """Seeds whose ``name`` run solved rung ``length``."""
        return sum(a >= SOLVED for a in self.acc[name][length])

    def effect(self) -> tuple[Stat, bool]:
        """Skip minus plain longest rung solved (paired by seed), and whether its 95% interval
        excludes 0: the t-interval, or, when every seed shows the same difference (a
        zero-width t-interval), the sign test's (all of >= SIGN_SEEDS seeds agree)."""
        d = difference(self.longest["skip k=2"], self.longest["plain"], paired=True)
        unanimous = d.std == 0 and d.n >= SIGN_SEEDS and d.mean != 0
        return d, d.excludes_zero or unanimous


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
        "Elman (tanh) RNNs, PyTorch's default init, with and without temporal skips "
        "h_t = cell(x_t, h_{t-1}) + mean_k h_{t-k} (k = 2; k = 2 and 4; and a convex 'average' "
        "merge). (1) Spectral norm of dh_T/dh_0 at init, same cell weights for every variant, "
        "against T. (2) First-symbol recall (Bengio et al. 1994's latching task): a sequence's "
        "class is its first token (one of 4), the other T - 1 tokens are random distractors; "
        "the last state is read out. Plain and k = 2 twins from the same init climb a ladder "
        "of lengths (quick: 5, 10, 20, 40, 80, 160), each rung trained afresh with Adam on "
        "fresh batches of 64 for at most 600 steps, stopped early once four fresh batches in a "
        "row average 99% correct; a rung is solved at 95% test accuracy on 1,000 held-out "
        "sequences, and a model climbs until its first unsolved rung. Quick: 6 seeds."
    )
    criterion = (
        "Gradient half (claim): at the longest T the k = 2 skip keeps ||dh_T/dh_0|| above 0.1 "
        "and the plain RNN's is below 1e-3 of it, for every seed. Recall half: positive control, "
        "the plain RNN solves the shortest rung in every seed (else inconclusive: the budget "
        "cannot decide); the ladder must reach past the plain RNN (it fails some rung in some "
        "seed, else inconclusive). The effect is the per-seed difference of the longest rung "
        "solved, skip minus plain: claim, its mean is positive (else fails); evidence, its 95% "
        "paired t-interval excludes 0 (when every seed shows the same difference the t-interval "
        f"has zero width and the sign test decides: all of at least {SIGN_SEEDS} seeds agree, "
        "p <= 2^-5 two-sided). A skip solving the top rung is censored there, so the effect is "
        "a lower bound."
    )
    math = (
        "Plain: dh_T/dh_0 = prod_{t=1..T} J_t, ||.|| <= prod ||J_t|| ~ rho^T.\n"
        "Skip k: h_t = f(h_{t-1}) + mean_k h_{t-k}; the sum over paths includes the pure-skip "
        "path(s) of T/k identity hops (weight 1/|K| per hop; for one k the weight is 1), so "
        "dh_T/dh_0 = I + (terms through f) for T a multiple of k: no geometric decay forced.\n"
        "Recall: with k = 2 the odd states accumulate h_{2m+1} = h_1 + sum_j f(x_{2j+1}, "
        "h_{2j}), so h_1, which holds the first token, stays in every odd state, and the even "
        "read-out h_T = sum_j f(x_{2j}, h_{2j-1}) reaches it through one tanh step per term "
        "instead of T - 1; the plain RNN must learn a recurrent matrix that keeps the symbol "
        "through T - 1 contractions, from a gradient that crossed them all."
    )
    references = (
        "El Hihi & Bengio 1995, Hierarchical Recurrent Neural Networks for Long-Term Dependencies",
        "Zhang et al. 2016, Architectural Complexity Measures of Recurrent Neural Networks",
        "Bengio, Simard & Frasconi 1994, Learning Long-Term Dependencies with Gradient Descent "
        "is Difficult (the latching task)",
        "Schmidhuber, Hochreiter & Bengio 2001, Evaluating Benchmark Problems by Random Guessing",
    )
    version = 3  # v2: first-symbol recall ladder instead of the adding problem; v3: run.fit
    default_seeds = {"tiny": 6, "quick": 6, "full": 10}  # 6: the sign test can decide
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        grads = [Condition("gradient", n, t) for n in VARIANTS for t in s.grad_lengths]
        return grads + [Condition("recall", n, max(s.lengths)) for n in TRAINED]

    def label(self, c: Condition) -> str:
        return f"{c.task} {c.variant} T={c.length}"

    def cost(self, s: Settings, c: Condition) -> float:
        if c.task == "gradient":  # one reverse pass over T steps per state unit
            return c.length * s.hidden**3
        climbed = s.lengths if c.variant != "plain" else s.lengths[:4]  # plain stops early
        return 3 * s.steps * s.batch_size * sum(climbed) * s.hidden**2 / 4

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        recall = runs.where(task="recall")
        by = {n: recall.where(variant=n) for n in TRAINED}
        return Result(
            list(s.grad_lengths), list(s.lengths),
            grads=_grid(runs.where(task="gradient"), "grad_norm", VARIANTS, s.grad_lengths),
            acc={n: {t: by[n].values(f"acc|{t}") for t in s.lengths} for n in TRAINED},
            steps={n: {t: by[n].values(f"steps|{t}") for t in s.lengths} for n in TRAINED},
            longest={n: by[n].values("longest") for n in TRAINED},
            max_steps=s.steps, hidden=s.hidden, symbols=s.symbols, seeds=runs.seeds,
            diverged=[f"{r.condition.variant}, seed {r.seed}: rung {t} diverged" for r in recall
                      for t in s.lengths if math.isnan(r.get(f"acc|{t}", 0.0))],
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        longest = max(r.grad_lengths)
        plain_g, skip_g = r.grads["plain"][longest], r.grads["skip k=2"][longest]
        grad_ok = min(skip_g) > 0.1 and max(plain_g) < 1e-3 * min(skip_g)
        shortest, top, n = min(r.lengths), max(r.lengths), len(r.seeds)
        plain = r.longest["plain"]
        checks = [
            Check(f"at T={longest} the k = 2 skip keeps ||dh_T/dh_0|| above 0.1 and the plain "
                  "RNN's is below 1e-3 of it, in every seed", grad_ok,
                  f"plain max {max(plain_g):.2g}, skip k=2 min {min(skip_g):.3g}"),
            Check(f"positive control: the plain RNN solves the shortest rung (T={shortest}) in "
                  f"every seed within {r.max_steps} steps", r.solved("plain", shortest) == n,
                  f"{r.solved('plain', shortest)}/{n} seeds", "control"),
        ]  # fmt: skip
        if min(plain) >= top:
            return [*checks, Check(f"the plain RNN fails some rung up to T={top} (the ladder "
                                   "reaches past it)", False, f"it solved T={top} in every seed",
                                   "evidence")]  # fmt: skip
        d, decided = r.effect()
        measured = _effect_text(r, d)
        return [
            *checks,
            Check("the temporal skip extends the longest length solved (skip minus plain > 0)",
                  d.mean > 0, measured),
            Check("the 95% interval of that difference excludes 0", decided, measured, "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        longest = max(r.grad_lengths)
        g = {name: float(np.mean(r.grads[name][longest])) for name in VARIANTS}
        rates = "; ".join(
            f"{name} " + ", ".join(f"T={t}: {r.solved(name, t)}/{len(r.seeds)}" for t in r.lengths)
            for name in TRAINED
        )
        return (
            f"||dh_T/dh_0|| at T={longest}: plain {g['plain']:.2g}, skip k=2 {g['skip k=2']:.3g}, "
            f"k=2,4 {g['skip k=2,4']:.3g}. Longest length solved: {_effect_text(r, r.effect()[0])}."
            f" Seeds solving each rung: {rates}."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        longest = max(r.grad_lengths)
        out = {
            f"grad_T{longest}_{name}": float(np.mean(r.grads[name][longest])) for name in VARIANTS
        }
        d, _ = r.effect()
        out.update(effect_mean=d.mean, effect_lo=d.lo, effect_hi=d.hi)
        for name in TRAINED:
            out[f"longest_{name}"] = float(np.mean(r.longest[name]))
            for t in r.lengths:
                out[f"solved_{name}|{t}"] = r.solved(name, t) / len(r.seeds)
        return out

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for t in r.lengths:
            for name in TRAINED:
                acc = [a for a in r.acc[name][t] if not math.isnan(a)]
                steps = [st for st in r.steps[name][t] if not math.isnan(st)]
                rows.append([t, name, f"{len(acc)}/{len(r.seeds)}",
                             f"{r.solved(name, t)}/{len(r.seeds)}",
                             f"{np.mean(acc):.1%}" if acc else "-",
                             f"{np.median(steps):.0f}" if steps else "-"])  # fmt: skip
        seeds = [[seed, *(f"{r.longest[n][i]:.0f}" for n in TRAINED),
                  f"{r.longest['skip k=2'][i] - r.longest['plain'][i]:.0f}"]
                 for i, seed in enumerate(r.seeds)]  # fmt: skip
        grad_rows = [
            [name, t, f"{describe(r.grads[name][t]).mean:.3g}", f"{min(r.grads[name][t]):.3g}"]
            for name in VARIANTS
            for t in r.grad_lengths
        ]
        return [
            Table(
                f"First-symbol recall ({r.symbols} symbols, guessing {1 / r.symbols:.0%}), each rung trained afresh for at most {r.max_steps} Adam steps",
                ["T", "model", "seeds that reached it", f"solved (test acc >= {SOLVED:.0%})", "mean test acc", "median steps"],
                rows,
                "a model climbs the ladder until its first unsolved rung; longer rungs are not trained",
            ),
            Table("Longest length solved per seed (same init for both models)",
                  ["seed", *TRAINED, "skip - plain"], seeds, _effect_text(r, r.effect()[0])),
            Table(
                f"||dh_T/dh_0||_2 at init (tanh cell, hidden {r.hidden}), over {len(r.seeds)} seed(s)",
                ["model", "T", "mean", "min over seeds"],
                grad_rows,
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        notes = [f"diverged: {msg}" for msg in r.diverged]
        top = max(r.lengths)
        if min(r.longest["skip k=2"]) >= top:
            notes.append(
                f"The skip solved the top rung (T={top}) in every seed, so its longest length is "
                "censored there and the effect is a lower bound."
            )
        return notes

    def literature(self, r: Result) -> list[Comparison]:
        n = len(r.seeds)
        plain = ", ".join(f"T={t}: {r.solved('plain', t)}/{n}" for t in r.lengths)
        falling = r.solved("plain", min(r.lengths)) > r.solved("plain", max(r.lengths))
        d, decided = r.effect()
        fastest = [st for t in r.lengths for st in r.steps["skip k=2"][t] if not math.isnan(st)]
        return [
            Comparison(
                "Bengio, Simard & Frasconi 1994 (preprint), Fig. 2: the minimal latching task",
                "a recurrent sigmoid net trained by backpropagation converges less and less "
                "often as the sequence grows (the probability of success falls rapidly with T)",
                f"plain tanh RNN, seeds solving each rung: {plain}",
                falling,
            ),
            Comparison(
                "Zhang et al. 2016, abstract",
                "increasing the recurrent skip coefficient (skip connections through time) "
                "gives performance boosts on long-term dependency problems",
                f"k = 2 skip minus plain, longest length solved: {d.interval()} steps",
                d.mean > 0 and decided,
            ),
            Comparison(
                "Schmidhuber, Hochreiter & Bengio 2001 (latch problem)",
                "random weight guessing solves the latch problem in ~6-22 trials: it is easy to "
                "represent, hard only for gradient descent across the span",
                f"the skip solves each rung it reaches in {max(fastest, default=0):.0f} Adam "
                "steps at most; the plain RNN fails once the span is long",
                None,
            ),
        ]

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
            rate = [r.solved(name, t) / len(r.seeds) for t in r.lengths]
            ax.plot(r.lengths, rate, "o-", color=COLORS[name], label=name)
        ax.set(title="first-symbol recall: seeds solving T", xlabel="T (steps)",
               ylabel=f"fraction of seeds (test acc >= {SOLVED:.0%})", xscale="log",
               ylim=(-0.05, 1.05))  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][2]
        for name in TRAINED:
            shift = 1.06 if name == "plain" else 0.94  # side by side at each T
            for mark, won in (("o", True), ("x", False)):
                pts = [(t * shift, st) for t in r.lengths
                       for st, a in zip(r.steps[name][t], r.acc[name][t])
                       if not math.isnan(st) and (a >= SOLVED) == won]  # fmt: skip
                if pts:
                    ax.plot(*zip(*pts), mark, color=COLORS[name], ls="none",
                            label=f"{name}, {'solved' if won else 'not solved'}")  # fmt: skip
        ax.axhline(r.max_steps, color=_plot.REFERENCE, ls="--", label="step budget")
        ax.set(title="Adam steps spent per rung (x: not solved)", xlabel="T (steps)",
               ylabel="steps", xscale="log", yscale="log")  # fmt: skip
        ax.legend(fontsize=8)
        _plot.save(fig, outdir / "rnn_temporal_skip.png")
        return [
            Figure(
                "rnn_temporal_skip.png",
                "Left: spectral norm of dh_T/dh_0 at init, same tanh cell with and without temporal "
                "skips; the plain RNN's falls geometrically with T. Middle: the fraction of seeds "
                "whose model solves first-symbol recall at each length (a model climbs until its "
                "first failure, so a rung above it counts as unsolved). Right: Adam steps each run "
                "spent on a rung (dot: solved and stopped early; x: not solved), one mark per "
                "seed; rungs a model never reached have no mark.",
            )
        ]


def _effect_text(r: Result, d: Stat) -> str:
    plain, skip = r.longest["plain"], r.longest["skip k=2"]
    how = "95% paired t-interval" if d.hi > d.lo else "every seed the same; sign test"
    return (
        f"plain {np.mean(plain):.3g} (range {min(plain):.0f}-{max(plain):.0f}), skip k=2 "
        f"{np.mean(skip):.3g} (range {min(skip):.0f}-{max(skip):.0f}); skip - plain "
        f"{d.interval()} steps ({how}, {d.n} seeds)"
    )
