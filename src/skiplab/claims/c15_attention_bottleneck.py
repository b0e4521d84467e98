"""C15 attention-bottleneck: a fixed context vector is a bottleneck; attention is a skip past it.

An encoder-decoder that hands the decoder only the encoder's last state must squeeze the whole
source into ``hidden_size`` numbers, and the gradient from output step t to input position s
must cross every encoder step after s (Sutskever et al. 2014; Cho et al. 2014). Attention
(Bahdanau et al. 2015) gives every output step a weighted sum of *all* encoder states: a direct
path from each input to each output. The claim trains both on copy and reversal as the
sequences grow and reads out accuracy and the gradient reaching each input position.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import clearly_greater, describe
from skiplab.data import sequence_copy, sequence_reversal
from skiplab.diagnostics.through_time import source_gradients
from skiplab.models.seq2seq import Seq2Seq, Seq2SeqConfig
from skiplab.train import SequenceToSequence, TrainConfig

TASKS = {"reverse": sequence_reversal, "copy": sequence_copy}
LABELS = {"none": "fixed context", "additive": "additive attention", "dot": "dot-product attention"}
VOCAB = 10
CURVE_POINTS = 20  # the training-loss curve: the mean loss of each twentieth of the steps


@dataclass(frozen=True)
class Settings:
    lengths: tuple[int, ...] = (5, 10, 20)  # reversal lengths; copy and dot at the longest
    steps: int = 300  # Adam steps per model: equal budget, not convergence
    hidden: int = 48  # the fixed context's size, the bottleneck
    batch_size: int = 64  # fresh pairs per step
    lr: float = 3e-3  # Adam with teacher forcing, gradients clipped at norm 1
    test_size: int = 500  # held-out pairs for greedy decoding


SCALES = {
    "tiny": Settings(lengths=(3, 6), steps=20, hidden=16),
    "quick": Settings(),
    "full": Settings(lengths=(5, 10, 20, 40, 80), steps=3000, hidden=128),
}


@dataclass(frozen=True)
class Condition:
    task: str  # "reverse" or "copy"
    length: int  # of source and target
    attention: str  # "none" (fixed context), "additive" (Bahdanau) or "dot" (Luong)


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Train one encoder-decoder; greedy accuracy, and at the longest reversal its gradients."""
    make = TASKS[c.task]
    arch = Seq2SeqConfig(attention=c.attention, hidden_size=s.hidden, vocab_size=VOCAB)
    model = run.build(lambda: Seq2Seq(arch))
    every = max(1, s.steps // CURVE_POINTS)  # an "epoch": one point of the loss curve
    task = SequenceToSequence(
        lambda n, batch_seed: make(n, c.length, vocab=VOCAB, seed=batch_seed),
        make(s.test_size, c.length, vocab=VOCAB, seed=777_000 + seed),
        steps_per_epoch=every,
    )
    cfg = TrainConfig(
        max_steps=s.steps, batch_size=s.batch_size, lr=s.lr, optimizer="adam", weight_decay=0.0,
        schedule="constant", grad_clip=1.0, eval_every=math.ceil(s.steps / every),
    )  # fmt: skip
    fit = run.fit(model, task, cfg)
    if fit.diverged:
        return {"token_acc": math.nan, "seq_acc": math.nan}
    out: dict[str, Any] = {
        "token_acc": fit.last["test_token_acc"],
        "seq_acc": fit.last["test_seq_acc"],
    }
    if c.task == "reverse" and c.length == max(s.lengths):
        pairs = run.put(*sequence_reversal(64, c.length, vocab=VOCAB, seed=555_000 + seed))
        out["grads"] = source_gradients(model, *pairs)  # (S,) over 64 test pairs
        src, tgt = run.put(*sequence_reversal(1, c.length, vocab=VOCAB, seed=1))
        with torch.no_grad():
            model(src, tgt)
        assert model.last_weights is not None
        out["weights"] = model.last_weights[0].tolist()  # (T, S)
    return out


@dataclass
class Row:
    """One condition's greedy-decoding accuracy, one value per seed."""

    task: str
    length: int
    attention: str
    token_acc: list[float]
    seq_acc: list[float]


@dataclass
class Result(Summary):
    lengths: list[int]
    rows: list[Row]  # in the order of the conditions
    grads: dict[str, list[float]]  # attention -> gradient per source position (first seed)
    weights: list[list[float]]  # additive attention (T, S) on one reversal (first seed)
    steps: int
    hidden: int
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)

    def acc(self, task: str, length: int, attention: str) -> list[float]:
        """Token accuracy per seed of one condition."""
        return next(r.token_acc for r in self.rows
                    if (r.task, r.length, r.attention) == (task, length, attention))  # fmt: skip


@register_claim
class AttentionBottleneck(Claim[Settings, Condition, Result]):
    id = "C15"
    slug = "attention-bottleneck"
    title = "A fixed context vector is a bottleneck; attention gives each output a direct path"
    statement = (
        "An encoder-decoder that passes a single fixed-size context vector loses information as "
        "sequences grow; attention gives every output step a direct path to every input."
    )
    method = (
        "GRU encoder-decoders (skiplab GRUs, embedding 32, hidden 48-128) with a fixed context "
        "(the last encoder state), additive attention (Bahdanau) or dot-product attention "
        "(Luong), trained with Adam and teacher forcing on sequence reversal at several lengths "
        "and on copying at the longest; greedy-decoding token accuracy on 500 held-out pairs; "
        "the gradient of the loss reaching each input embedding."
    )
    criterion = (
        "Holds when, on reversal at the longest length, additive attention's greedy token "
        "accuracy exceeds the fixed context's in every seed (ranges over seeds do not overlap) "
        "and the gap at the longest length is larger than at the shortest. Fails when the fixed "
        "context is as good or better at the longest length; inconclusive otherwise."
    )
    math = (
        "Fixed: c = h_S for every output step; dL/dx_s passes through S - s encoder steps.\n"
        "Attention: c_t = sum_j alpha_tj h_j; dL/dh_s has the direct term alpha_ts dL/dc_t.\n"
        "Chance token accuracy: 1 / |vocab| = 0.1."
    )
    references = (
        "Sutskever, Vinyals & Le 2014, Sequence to Sequence Learning with Neural Networks",
        "Cho et al. 2014, On the Properties of Neural Machine Translation: Encoder-Decoder Approaches",
        "Bahdanau, Cho & Bengio 2015, Neural Machine Translation by Jointly Learning to Align and Translate",
        "Luong, Pham & Manning 2015, Effective Approaches to Attention-based NMT",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        longest = max(s.lengths)
        reverse = [Condition("reverse", t, a) for t in s.lengths for a in ("none", "additive")]
        return [*reverse, Condition("reverse", longest, "dot"), Condition("copy", longest, "none"),
                Condition("copy", longest, "additive")]  # fmt: skip

    def cost(self, s: Settings, c: Condition) -> float:
        return 3 * s.steps * s.batch_size * c.length * s.hidden**2

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        longest = max(s.lengths)
        rows = [
            Row(c.task, c.length, c.attention, runs.values("token_acc", **asdict(c)),
                runs.values("seq_acc", **asdict(c)))
            for c in self.conditions(s)
        ]  # fmt: skip
        first = {a: runs.where(task="reverse", length=longest, attention=a).records[0]
                 for a in ("none", "additive", "dot")}  # fmt: skip
        return Result(
            list(s.lengths), rows,
            grads={a: r.get("grads", []) for a, r in first.items()},
            weights=first["additive"].get("weights", []),
            steps=s.steps, hidden=s.hidden, seeds=runs.seeds,
            diverged=[f"{r.condition}, seed {r.seed}: {r.error}" for r in runs if r.diverged],
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        short, long = min(r.lengths), max(r.lengths)
        att, fix = r.acc("reverse", long, "additive"), r.acc("reverse", long, "none")
        gap = {t: float(np.mean(r.acc("reverse", t, "additive")) - np.mean(r.acc("reverse", t, "none")))
               for t in (short, long)}  # fmt: skip
        seeds = f"attention {min(att):.3f}..{max(att):.3f}, fixed {min(fix):.3f}..{max(fix):.3f}"
        return [
            Check(f"on reversal at length {long} the fixed context is not as good as attention",
                  not np.mean(fix) >= np.mean(att), f"gap {gap[long]:+.3f}"),
            Check(f"attention beats the fixed context in every seed at length {long}",
                  clearly_greater(att, fix), seeds, "evidence"),
            Check(f"the gap is larger at length {long} than at length {short}",
                  gap[long] > gap[short], f"{gap[long]:+.3f} vs {gap[short]:+.3f}", "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        short, long = min(r.lengths), max(r.lengths)
        mean = {(task, t, a): float(np.mean(r.acc(task, t, a))) for task, t, a in
                (("reverse", long, "additive"), ("reverse", long, "none"), ("reverse", long, "dot"),
                 ("reverse", short, "additive"), ("reverse", short, "none"), ("copy", long, "additive"),
                 ("copy", long, "none"))}  # fmt: skip
        att, fix = mean["reverse", long, "additive"], mean["reverse", long, "none"]
        gap_short = mean["reverse", short, "additive"] - mean["reverse", short, "none"]
        copy_gap = mean["copy", long, "additive"] - mean["copy", long, "none"]
        return (
            f"reversal token accuracy at length {long}: attention {att:.3f} vs fixed context "
            f"{fix:.3f} (gap {att - fix:+.3f}; at length {short}: {gap_short:+.3f}); "
            f"dot-product attention {mean['reverse', long, 'dot']:.3f}; copy at length {long}: "
            f"gap {copy_gap:+.3f}; {len(r.seeds)} seed(s)."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        return {
            f"acc_{w.task}|{w.length}|{w.attention}": describe(w.token_acc).mean for w in r.rows
        }

    def tables(self, r: Result) -> list[Table]:
        rows = []
        for w in r.rows:
            s, q = describe(w.token_acc), describe(w.seq_acc)
            rows.append([w.task, w.length, LABELS[w.attention], f"{s.mean:.3f} ± {s.std:.2g}",
                         f"{min(w.token_acc):.3f}..{max(w.token_acc):.3f}", f"{q.mean:.3f}"])  # fmt: skip
        return [
            Table(
                f"Greedy-decoding accuracy after {r.steps} Adam steps (hidden {r.hidden}, vocab {VOCAB})",
                ["task", "length", "context", "token acc (mean ± std)", "range over seeds", "whole-sequence acc"],
                rows,
                "chance token accuracy 0.1",
            )
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        notes = [f"diverged: {d}" for d in r.diverged]
        if r.steps < SCALES["full"].steps:
            notes.append(f"{r.steps} steps per model: both models are still learning; the "
                         "comparison is at equal budget, not at convergence.")  # fmt: skip
        return notes

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        long = max(r.lengths)
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.7)
        ax = axes[0][0]
        for attention, color in (("none", _plot.PLAIN), ("additive", _plot.RESIDUAL)):
            accs = [r.acc("reverse", t, attention) for t in r.lengths]
            ax.plot(r.lengths, [np.mean(a) for a in accs], "o-", color=color,
                    label=f"reverse, {LABELS[attention]}")  # fmt: skip
            ax.fill_between(r.lengths, [min(a) for a in accs], [max(a) for a in accs], color=color,
                            alpha=0.2)  # fmt: skip
        ax.plot([long], [np.mean(r.acc("reverse", long, "dot"))], "s", color=_plot.PALETTE[2],
                label=f"reverse, {LABELS['dot']}")  # fmt: skip
        for attention, color in (("none", _plot.PLAIN), ("additive", _plot.RESIDUAL)):
            ax.plot([long], [np.mean(r.acc("copy", long, attention))], "^", color=color, mfc="none",
                    ms=9, label=f"copy, {LABELS[attention]}")  # fmt: skip
        ax.axhline(1 / VOCAB, color=_plot.REFERENCE, ls="--", label="chance")
        ax.set(title="greedy token accuracy vs length", xlabel="sequence length",
               ylabel="token accuracy", ylim=(0, 1.02))  # fmt: skip
        ax.legend(fontsize=7)
        ax = axes[0][1]
        for attention, color in (("none", _plot.PLAIN), ("additive", _plot.RESIDUAL),
                                 ("dot", _plot.PALETTE[2])):  # fmt: skip
            g = r.grads[attention]
            if g:
                ax.semilogy(np.arange(len(g)), np.maximum(g, 1e-30), "o-", color=color,
                            label=LABELS[attention])  # fmt: skip
        ax.set(title=f"gradient reaching each input (reverse, T={long})", xlabel="source position s",
               ylabel="||dL / d emb(x_s)||")  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][2]
        w = np.asarray(r.weights)
        if w.size:
            im = ax.imshow(w, cmap="viridis", aspect="auto", vmin=0, vmax=1)
            fig.colorbar(im, ax=ax, label="attention weight")
        ax.set(title="additive attention weights (reverse)", xlabel="source position s",
               ylabel="output step t")  # fmt: skip
        ax.grid(False)
        _plot.save(fig, outdir / "attention_bottleneck.png")
        return [
            Figure(
                "attention_bottleneck.png",
                "Left: greedy-decoding token accuracy against sequence length (band: range over "
                "seeds); fixed context vs attention on reversal, and copy at the longest length. "
                "Middle: gradient of the loss reaching each source embedding. Right: learned "
                "additive attention on one reversal example (the anti-diagonal is the alignment).",
            )
        ]
