"""C14 gru-residual: the GRU update is a dynamic, learned residual connection.

``h_t = (1 - z_t) * h_{t-1} + z_t * h~_t = h_{t-1} + z_t * (h~_t - h_{t-1})``: a residual add
whose branch weight ``z_t`` the network computes (Cho et al. 2014; the highway view of
Srivastava et al. 2015). skiplab builds the GRU from its :class:`~skiplab.nn.GatedSkip`;
this claim checks that it *is* the GRU (same numbers as ``torch.nn.GRU``) and that the gate
value controls the gradient through time as the residual reading predicts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference
from skiplab.data import load_mnist1d_sequence
from skiplab.diagnostics.through_time import (
    pin_update_gate,
    state_jacobian_norm,
    torch_gru_differences,
)
from skiplab.models.rnn import GRU, GRUCell, RecurrentNet, RNNConfig, SkipRNN
from skiplab.train import Classification, TrainConfig

GATES = (0.001, 0.01, 0.03, 0.1, 0.3, 0.5, 0.9)
TOLERANCE = 1e-6
DIFFS = ("out", "h", "grad_x", "grad_params")  # what torch_gru_differences compares
PUBLISHED_GRU_MNIST1D = 0.91  # greydanus/mnist1d README, table "MNIST-1D", column GRU
CHANCE = 0.1  # ten balanced MNIST-1D classes
CURVE_POINTS = 10  # MNIST-1D test accuracy about this many times during training


@dataclass(frozen=True)
class Settings:
    lengths: tuple[int, ...] = (10, 25, 50, 100)  # T of dh_T/dh_0: (1 - z)^T spans decades
    hidden: int = 32  # state of the equivalence test and the gate sweep
    mnist_steps: int = 400  # Adam steps of each MNIST-1D run: the GRU is far above chance
    mnist_hidden: int = 64  # one-directional, read from the last state
    mnist_seeds: int | None = None  # MNIST-1D runs on the first seeds only (None: every seed)
    batch_size: int = 128  # MNIST-1D batch
    lr: float = 3e-3  # Adam, cosine to 0, gradients clipped at norm 1


SCALES = {
    "tiny": Settings(lengths=(10, 25), mnist_steps=200, mnist_hidden=48, lr=5e-3),
    "quick": Settings(),
    "full": Settings(lengths=(10, 25, 50, 100, 200), mnist_steps=6000, mnist_hidden=128),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    experiment: str  # "equivalence" (vs torch.nn.GRU), "gate" (dh_T/dh_0) or "mnist1d"
    skip: bool = True  # False: the plain twin, no carried h_{t-1}
    gate: float | None = None  # the pinned update gate z; None: the learned gate at init
    length: int = 0  # T of dh_T/dh_0 (gate runs)


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, float]:
    """One run from the seed's init: the same cell weights for every gate and the plain twin."""
    experiment = {"equivalence": _equivalence, "gate": _gate, "mnist1d": _mnist1d}
    return experiment[c.experiment](run, s, c)


def _equivalence(run: Run, s: Settings, c: Condition) -> dict[str, float]:
    """skiplab's GRU against torch.nn.GRU with its weights: 2 layers, T = 50, batch 4, float64."""
    gen, f64 = run.generator(), torch.float64
    ref = run.build(lambda: torch.nn.GRU(8, s.hidden, num_layers=2, batch_first=True).double())
    ours = run.build(GRU.from_torch(ref))
    x, h0, w = run.put(
        torch.randn(4, 50, 8, generator=gen, dtype=f64),
        torch.randn(2, 4, s.hidden, generator=gen, dtype=f64),
        torch.randn(4, 50, s.hidden, generator=gen, dtype=f64),  # the loss's output weights
    )
    diffs = torch_gru_differences(ref, ours, x, h0, w)
    for t, d in enumerate(diffs.out_by_step, start=1):
        run.log(t, out_diff=d)
    return {k: getattr(diffs, k) for k in DIFFS}


def _gate(run: Run, s: Settings, c: Condition) -> dict[str, float]:
    """||dh_T/dh_0|| of one cell with its gate pinned (one sequence per seed, cut to T)."""
    gen, f64 = run.generator(), torch.float64
    cell = run.build(lambda: GRUCell(8, s.hidden, skip=c.skip).double())
    if c.gate is not None:
        pin_update_gate(cell, c.gate)
    x = torch.randn(1, max(s.lengths), 8, generator=gen, dtype=f64)[:, : c.length]  # (1, T, 8)
    x, h0 = run.put(x, 0.5 * torch.randn(s.hidden, generator=gen, dtype=f64))
    norm = state_jacobian_norm(SkipRNN(cell), x, h0)
    run.log(c.length, jac_norm=norm)
    return {"jac_norm": norm}


def _mnist1d(run: Run, s: Settings, c: Condition) -> dict[str, float]:
    """The MNIST-1D paper's GRU baseline (MNIST-1D as a 40-step sequence), or its plain twin."""
    splits = load_mnist1d_sequence()
    arch = RNNConfig(input_size=1, hidden_size=s.mnist_hidden, out_features=10, cell="gru",
                     ks=(), skip=c.skip)  # fmt: skip
    model = run.build(lambda: RecurrentNet(arch))
    epochs = math.ceil(s.mnist_steps / math.ceil(len(splits.train) / s.batch_size))
    cfg = TrainConfig(
        max_steps=s.mnist_steps, batch_size=s.batch_size, lr=s.lr, optimizer="adam",
        weight_decay=0.0, schedule="cosine", grad_clip=1.0,
        eval_every=max(1, epochs // CURVE_POINTS),
    )  # fmt: skip
    fit = run.fit(model, Classification(splits.train, splits.test), cfg)
    return {"test_acc": math.nan if fit.diverged else fit.last["test_acc"]}


Norms = dict[int, list[float]]  # T -> ||dh_T/dh_0|| per seed


@dataclass
class Curve:
    steps: list[int]
    acc: list[float]


@dataclass
class Result(Summary):
    lengths: list[int]
    seeds: list[int]
    diffs: dict[str, list[float]]  # DIFFS -> largest difference to torch.nn.GRU per seed
    gated: dict[float, Norms]  # pinned gate z -> norms
    learned: Norms  # the learned gate at init
    plain_half: Norms  # the plain twin at z = 0.5
    plain_learned: Norms  # the plain twin with the learned gate
    mnist_acc: dict[str, list[float]]  # "gru" / "plain" -> test accuracy per MNIST-1D seed
    mnist_curves: dict[str, Curve]  # the first seed's test accuracy during training
    mnist_steps: int
    mnist_hidden: int
    diverged: list[str] = field(default_factory=list)


@register_claim
class GRUResidual(Claim[Settings, Condition, Result]):
    id = "C14"
    slug = "gru-residual"
    title = "The GRU update is a dynamic, learned residual connection"
    statement = (
        "The GRU update h_t = (1 - z) h_{t-1} + z h~_t is a residual connection whose branch "
        "weight z is learned and input-dependent; z -> 0 makes it an identity highway through time."
    )
    method = (
        "(1) A GRU built from skiplab's GatedSkip loads a torch.nn.GRU's state dict (2 layers, "
        "hidden 32, float64) and is compared on outputs, last states, input gradients and "
        "parameter gradients. (2) The update gate is pinned to a constant z (its weights zeroed, "
        "its bias set) and the spectral norm of dh_T/dh_0 is measured for z in "
        f"{list(GATES)} and several T, against (1 - z)^T, the part carried by the skip alone; "
        "the plain twin (no carried h_{t-1}) is measured with the same weights. (3) MNIST-1D "
        "as a 40-step sequence: skiplab's GRU (one-directional, classified from its last state; "
        "Adam 3e-3, cosine to 0, batch 128, gradients clipped at 1) beside its plain twin, the "
        "same cell without the carried state, from the same seeded init and batches; 400 steps "
        "and 3 seeds at quick scale, 6,000 steps and hidden 128 at full scale."
    )
    criterion = (
        f"Holds when (1) every difference is below {TOLERANCE:g} for every seed; (2) at the "
        "longest T, ||dh_T/dh_0|| falls monotonically as z grows, at the smallest z it is at "
        "least half of (1 - z)^T (the highway survives), and the plain twin's norm is below "
        "1e-3 of the GRU's at z = 0.5; and (3) on MNIST-1D the GRU's test accuracy minus its "
        "plain twin's, paired by seed, is positive (else fails) with a 95% t-interval that "
        "excludes 0 (else inconclusive). Positive control: the GRU learns MNIST-1D, the 95% "
        f"t-interval of its test accuracy lies above chance ({CHANCE:g}); if not, the budget "
        "cannot decide and the verdict is inconclusive."
    )
    math = (
        "h_t = h_{t-1} + z * (h~_t - h_{t-1})  =>  dh_t/dh_{t-1} = (1 - z) I + z dh~_t/dh_{t-1}"
        " (+ terms from dz/dh).\n"
        "With z constant: dh_T/dh_0 = prod_t [(1 - z) I + z J_t]; as z -> 0 this tends to I, "
        "so ||dh_T/dh_0|| -> 1 (an identity highway); its skip-only part is (1 - z)^T I.\n"
        "Plain twin h_t = z h~_t: dh_T/dh_0 = prod_t z J_t, at most (z ||J||)^T."
    )
    references = (
        "Cho et al. 2014, Learning Phrase Representations using RNN Encoder-Decoder",
        "Srivastava, Greff & Schmidhuber 2015, Highway Networks",
        "Greydanus & Kobak 2024, Scaling down deep learning with MNIST-1D (GRU baseline 91%)",
        "Chung, Gulcehre, Cho & Bengio 2014, Empirical Evaluation of Gated Recurrent Neural "
        "Networks on Sequence Modeling",
    )
    default_seeds = {"tiny": 3, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        pinned = [(True, z) for z in (*GATES, None)] + [(False, 0.5), (False, None)]
        gates = [Condition("gate", skip, z, t) for skip, z in pinned for t in s.lengths]
        return [Condition("equivalence"), *gates, Condition("mnist1d"), Condition("mnist1d", False)]

    def plan(self, s: Settings, seeds: Sequence[int]) -> list[tuple[Condition, int]]:
        mnist = seeds[: s.mnist_seeds]
        return [(c, seed) for c in self.conditions(s)
                for seed in (mnist if c.experiment == "mnist1d" else seeds)]  # fmt: skip

    def label(self, c: Condition) -> str:
        twin = "" if c.skip else "plain "
        if c.experiment == "gate":
            return f"{twin}gate z={'learned' if c.gate is None else c.gate} T={c.length}"
        return f"{twin}{c.experiment}"

    def cost(self, s: Settings, c: Condition) -> float:
        if c.experiment == "mnist1d":  # 40 steps, forward and backward
            return 3 * 40 * s.mnist_steps * s.batch_size * s.mnist_hidden**2
        return (c.length or 50) * s.hidden**3

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        sweep, mnist = runs.where(experiment="gate"), runs.where(experiment="mnist1d")

        def norms(skip: bool, z: float | None) -> Norms:
            return {t: sweep.values("jac_norm", skip=skip, gate=z, length=t) for t in s.lengths}

        names = {"gru": True, "plain": False}
        first = {n: mnist.where(skip=skip).records[0] for n, skip in names.items()}
        return Result(
            list(s.lengths), runs.seeds,
            diffs={k: runs.values(k, experiment="equivalence") for k in DIFFS},
            gated={z: norms(True, z) for z in GATES}, learned=norms(True, None),
            plain_half=norms(False, 0.5), plain_learned=norms(False, None),
            mnist_acc={n: mnist.values("test_acc", skip=skip) for n, skip in names.items()},
            mnist_curves={n: Curve(r.steps("test_acc"), r.curve("test_acc")) for n, r in first.items()},
            mnist_steps=s.mnist_steps, mnist_hidden=s.mnist_hidden,
            diverged=[f"{r.condition}, seed {r.seed}: {r.error}" for r in mnist if r.diverged],
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        worst = max(max(v) for v in r.diffs.values())
        long, z0 = max(r.lengths), GATES[0]
        means = [float(np.mean(r.gated[z][long])) for z in GATES]
        plain, gru_half = float(np.mean(r.plain_half[long])), float(np.mean(r.gated[0.5][long]))
        return [
            *_mnist_checks(r.mnist_acc),
            Check(f"skiplab's GRU matches torch.nn.GRU to {TOLERANCE:g}", worst < TOLERANCE,
                  f"max difference {worst:.1e}"),
            Check(f"||dh_T/dh_0|| at T={long} falls monotonically as z grows",
                  all(a > b for a, b in itertools.pairwise(means)),
                  ", ".join(f"z={z}: {m:.3g}" for z, m in zip(GATES, means))),
            Check(f"at z={z0} the highway survives: at least half of (1-z)^T",
                  means[0] >= 0.5 * (1 - z0) ** long,
                  f"{means[0]:.3g} vs (1-z)^T = {(1 - z0) ** long:.3g}"),
            Check("the plain twin's norm is below 1e-3 of the GRU's at z = 0.5",
                  plain < 1e-3 * gru_half, f"{plain:.2g} vs {gru_half:.3g}"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        long, z0, zn = max(r.lengths), GATES[0], GATES[-1]
        g = {z: float(np.mean(r.gated[z][long])) for z in GATES}
        acc = {n: float(np.mean(a)) for n, a in r.mnist_acc.items()}
        return (
            f"max difference to torch.nn.GRU {max(max(v) for v in r.diffs.values()):.1e} over "
            f"{len(r.diffs['out'])} seed(s); ||dh_T/dh_0|| at T={long}: z={z0}: {g[z0]:.3g} "
            f"((1-z)^T = {(1 - z0) ** long:.3g}), z=0.5: {g[0.5]:.3g}, z={zn}: {g[zn]:.3g}; plain "
            f"twin at z=0.5: {np.mean(r.plain_half[long]):.2g}. MNIST-1D GRU {acc['gru']:.1%} "
            f"(published {PUBLISHED_GRU_MNIST1D:.0%}), plain twin {acc['plain']:.1%}, paired "
            f"difference {_gap_text(mnist_gap(r.mnist_acc))} over {len(r.mnist_acc['gru'])} seeds."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        long = max(r.lengths)
        out = {f"mnist1d_{n}_acc": float(np.mean(a)) for n, a in r.mnist_acc.items()}
        gap = mnist_gap(r.mnist_acc)
        if gap is not None:
            out.update(mnist1d_gap=gap.mean, mnist1d_gap_lo=gap.lo, mnist1d_gap_hi=gap.hi)
        out.update({f"max_diff_{k}": float(max(v)) for k, v in r.diffs.items()})
        out.update({f"jac_T{long}_z{z}": float(np.mean(r.gated[z][long])) for z in GATES})
        out[f"jac_T{long}_plain_z0.5"] = float(np.mean(r.plain_half[long]))
        return out

    def tables(self, r: Result) -> list[Table]:
        long = max(r.lengths)
        eq = [[seed, *(f"{r.diffs[k][i]:.2e}" for k in DIFFS)] for i, seed in enumerate(r.seeds)]
        others = {"learned (init)": r.learned, "plain twin, z=0.5": r.plain_half,
                  "plain twin, z=learned": r.plain_learned}  # fmt: skip
        rows: list[list[Any]] = [[z, *_stat(r.gated[z][long]), f"{(1 - z) ** long:.3g}"] for z in GATES]  # fmt: skip
        rows += [[label, *_stat(n[long]), "-"] for label, n in others.items()]
        acc, size = (
            {n: f"{np.mean(a):.1%}" for n, a in r.mnist_acc.items()},
            [r.mnist_hidden, r.mnist_steps],
        )
        gap = mnist_gap(r.mnist_acc)
        mnist = [["GRU (skiplab GatedSkip)", f"{PUBLISHED_GRU_MNIST1D:.0%}", acc["gru"], len(r.mnist_acc["gru"]), *size],
                 ["plain twin (no carry)", "-", acc["plain"], len(r.mnist_acc["plain"]), *size],
                 ["GRU - plain twin (paired)", "-", _gap_text(gap), len(r.mnist_acc["gru"]), *size]]  # fmt: skip
        return [
            Table("skiplab GRU vs torch.nn.GRU, same weights (float64, 2 layers, hidden 32, T = 50)",
                  ["seed", "max |out diff|", "max |h_n diff|", "max |grad x diff|", "max |grad param diff|"],
                  eq, f"tolerance {TOLERANCE:g}"),
            Table(f"||dh_T/dh_0||_2 at T = {long} against the gate value z",
                  ["z (weight of the candidate)", "mean", "std over seeds", "(1 - z)^T"], rows),
            Table("MNIST-1D as a 40-step sequence: GRU baseline, published vs measured",
                  ["model", "published", "measured test acc", "seeds", "hidden", "steps"], mnist,
                  "published: greydanus/mnist1d README (GRU column, 4,000 train / 1,000 test; a "
                  "bidirectional GRU classified from every step's output); measured: Adam 3e-3, "
                  "cosine, batch 128, same default MNIST-1D split; mean over seeds, the "
                  "difference with its 95% t-interval"),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        short = r.mnist_steps < SCALES["full"].mnist_steps
        budget = (f"{r.mnist_steps} steps, hidden {r.mnist_hidden}: far fewer steps than the "
                  "paper, a lower bound on what the GRU reaches; enough to compare it with its "
                  "plain twin." if short else "the full budget.")  # fmt: skip
        return [f"The MNIST-1D runs use {budget}"] + [f"diverged: {d}" for d in r.diverged]

    def literature(self, r: Result) -> list[Comparison]:
        acc = {n: describe(a) for n, a in r.mnist_acc.items()}
        long, z0 = max(r.lengths), GATES[0]
        gap = mnist_gap(r.mnist_acc)
        full = r.mnist_steps >= SCALES["full"].mnist_steps
        return [
            Comparison(
                "Greydanus & Kobak 2024, greydanus/mnist1d README table 'Comparing MNIST and "
                "MNIST-1D'",
                f"GRU {PUBLISHED_GRU_MNIST1D:.0%} test accuracy on MNIST-1D (logistic regression "
                "32%, MLP 68%, CNN 94%); notebooks/train.py trains 8,000 Adam steps, the GRU "
                "is bidirectional and reads every step's output",
                f"skiplab GRU {acc['gru'].interval()} after {r.mnist_steps} steps, hidden "
                f"{r.mnist_hidden}, one-directional, last state",
                abs(acc["gru"].mean - PUBLISHED_GRU_MNIST1D) <= 0.05 if full else None,
            ),
            Comparison(
                "Cho et al. 2014, sec. 2.3 (the GRU)",
                "the update gate controls how much of the previous hidden state carries over, "
                "which helps the RNN remember long-term information (their z weights h_{t-1}; "
                "here z weights the candidate)",
                f"||dh_T/dh_0|| at T={long}: {np.mean(r.gated[z0][long]):.3g} with the carry "
                f"weight 1-z={1 - z0:g} vs {np.mean(r.gated[0.5][long]):.3g} at 1-z=0.5",
                bool(np.mean(r.gated[z0][long]) > np.mean(r.gated[0.5][long])),
            ),
            Comparison(
                "Chung et al. 2014, abstract and sec. 5",
                "gated units (GRU, LSTM) model polyphonic music and speech better than plain "
                "tanh units",
                f"MNIST-1D: GRU minus its plain twin (the same cell without the carried state, "
                f"not a tanh RNN) {_gap_text(gap)}",
                None,
            ),
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.6)
        ax = axes[0][0]
        zs = np.asarray(GATES)
        for i, length in enumerate(r.lengths):
            m = [np.mean(r.gated[z][length]) for z in GATES]
            color = _plot.PALETTE[i % len(_plot.PALETTE)]
            ax.loglog(zs, np.maximum(m, 1e-300), "o-", color=color, label=f"GRU, T={length}")
            ax.loglog(zs, np.maximum((1 - zs) ** length, 1e-300), ":", color=color)
        ax.set(title="gradient through time vs gate z\n(dotted: (1-z)^T, the skip alone)",
               xlabel="z (weight of the candidate)", ylabel="||dh_T / dh_0||_2")  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][1]
        for label, norms, color in (
            ("GRU, z = 0.01", r.gated[0.01], _plot.RESIDUAL),
            ("GRU, learned gate (init)", r.learned, _plot.PALETTE[2]),
            ("plain twin, z = 0.5", r.plain_half, _plot.PLAIN),
            ("plain twin, learned gate", r.plain_learned, _plot.PALETTE[3]),
        ):
            m = [np.mean(norms[length]) for length in r.lengths]
            ax.semilogy(r.lengths, np.maximum(m, 1e-300), "o-", color=color, label=label)
        ax.set(title="gradient through time vs T", xlabel="T (steps)", ylabel="||dh_T / dh_0||_2")
        ax.legend(fontsize=8)
        ax = axes[0][2]
        for name, color in (("gru", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
            c = r.mnist_curves[name]
            label = "GRU" if name == "gru" else "plain twin (no carry)"
            ax.plot(c.steps, c.acc, "o-", color=color, label=label)
        ax.axhline(
            PUBLISHED_GRU_MNIST1D, color=_plot.REFERENCE, ls="--", label="published GRU (91%)"
        )
        ax.set(title="MNIST-1D as a sequence", xlabel="training step", ylabel="test accuracy",
               xlim=(0, 1.05 * r.mnist_steps), ylim=(0, 1))  # fmt: skip
        ax.legend(fontsize=8)
        _plot.save(fig, outdir / "gru_residual.png")
        return [
            Figure(
                "gru_residual.png",
                "Left: spectral norm of dh_T/dh_0 with the update gate pinned to z; the gradient "
                "survives as z -> 0 (identity highway) and follows (1-z)^T. Middle: against T, "
                "GRU vs its plain twin (no carried state). Right: MNIST-1D test accuracy during "
                "training (first seed), skiplab GRU vs plain twin, with the published GRU "
                "baseline (a bidirectional GRU trained far longer).",
            )
        ]


def _stat(values: list[float]) -> list[str]:
    s = describe(values)
    return [f"{s.mean:.3g}", f"{s.std:.2g}"]


def mnist_gap(acc: dict[str, list[float]]) -> Stat | None:
    """GRU minus plain twin MNIST-1D test accuracy, paired by seed (same init seed, same
    batches); None when a run diverged."""
    gru, plain = acc["gru"], acc["plain"]
    if not gru or not all(math.isfinite(v) for v in gru + plain):
        return None
    return difference(gru, plain, paired=True)


def _mnist_checks(acc: dict[str, list[float]]) -> list[Check]:
    gru = [v for v in acc["gru"] if math.isfinite(v)]
    stat = describe(gru) if len(gru) == len(acc["gru"]) and gru else None
    control = Check(
        f"positive control: the GRU learns MNIST-1D above chance ({CHANCE:g})",
        stat is not None and stat.lo > CHANCE,
        f"GRU test accuracy {stat}" if stat else "a GRU run diverged",
        kind="control",
    )
    gap = mnist_gap(acc)
    if gap is None:
        return [control, Check("every MNIST-1D run trained without diverging", False,
                               kind="evidence")]  # fmt: skip
    text = f"GRU - plain twin test accuracy {gap.interval()}"
    return [
        control,
        Check("MNIST-1D: the GRU beats its plain twin", gap.mean > 0, text),
        Check("MNIST-1D: the difference's 95% interval excludes 0", gap.excludes_zero, str(gap),
              kind="evidence"),
    ]  # fmt: skip


def _gap_text(gap: Stat | None) -> str:
    return gap.interval() if gap else "n/a (a run diverged)"
