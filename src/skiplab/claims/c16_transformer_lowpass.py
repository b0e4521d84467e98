"""C16 transformer-lowpass: what the residual stream and the attention branch carry, by frequency.

In a pre-LN block ``x_{l+1} = x_l + Attn(LN(x_l))`` the residual stream ``x_l`` and the attention
branch's output are both sequences over token positions. Taking the FFT along the positions
gives each a power spectrum (:mod:`skiplab.diagnostics.token_spectrum`); the article says the
residual path carries the low-frequency (global, slowly varying) content and attention adds the
high-frequency detail. The claim measures both spectra in a trained Transformer, the gradient
each path carries back, and -- since the skip's placement decides how a deep Transformer trains
-- post-LN against pre-LN under learning-rate warm-up (Xiong et al. 2020).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import clearly_greater, describe
from skiplab.data import load_mnist1d_sequence
from skiplab.diagnostics.token_spectrum import (
    CUTOFF,
    TokenSpectra,
    plot_token_spectra,
    residual_spectra,
)
from skiplab.models import create_model
from skiplab.models.transformer import Transformer
from skiplab.train import Classification, TrainConfig

SPECTRA, WARMUP = "spectra", "warmup"  # the two studies
LN_VARIANTS = ("post_ln", "pre_ln")
PROBE = 256  # held-out sequences the spectra and gradients are measured on
LOW = ("low_stream", "low_branch", "low_stream_ac", "low_branch_ac")  # fractions per sublayer


@dataclass(frozen=True)
class Settings:
    steps: int = 300  # Adam steps of the spectra model (full scale: 4000)
    n_layer: int = 4  # blocks whose spectra are compared
    n_embd: int = 64  # 4 heads of 16
    lr: float = 1e-3  # Adam (betas 0.9, 0.98 as in Vaswani et al.), warm-up over 10% of steps
    batch_size: int = 64  # of the spectra model
    deep: int = 6  # blocks of the warm-up models: Xiong et al. 2020 use 6-12
    warm_steps: int = 200  # Adam steps of each warm-up model (warm-up: the first 25%)
    warm_batch: int = 32  # of the warm-up models
    warm_lr: float = 2e-3  # high enough for Adam without warm-up to be risky for post-LN
    n_train: int = 4000  # all of MNIST-1D's 4,000 training sequences


SCALES = {
    "tiny": Settings(steps=30, n_layer=2, n_embd=32, deep=3, warm_steps=30, n_train=500),
    "quick": Settings(),
    "full": Settings(steps=4000, n_layer=6, n_embd=128, deep=18, warm_steps=4000, warm_batch=64),
}


@dataclass(frozen=True)
class Condition:
    study: str  # "spectra" (pre-LN spectra at init and trained) or "warmup"
    variant: str  # post_ln or pre_ln
    warmup: bool  # linear learning-rate warm-up (spectra: over 10% of steps; warmup: 25%)


def _encoder(variant: str, n_layer: int, n_embd: int) -> Transformer:
    """The bidirectional encoder of MNIST-1D's 40 scalar tokens (learned positions, mean head)."""
    model = create_model("transformer_mnist1d", variant=variant, n_layer=n_layer, n_embd=n_embd)
    assert isinstance(model, Transformer)
    return model


def layer_grad_norms(model: Transformer, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Gradient norm of each block's last MLP weight (Xiong et al. 2020, Fig. 3)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    norms = []
    for block in model.blocks:
        # the block's last linear layer is its MLP's output projection
        weight = [m for m in block.modules() if isinstance(m, nn.Linear)][-1].weight
        norms.append(float(weight.grad.norm()) if weight.grad is not None else 0.0)
    model.zero_grad(set_to_none=True)
    return norms


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Spectra of a pre-LN encoder before and after training, or one warm-up model's accuracy."""
    splits = load_mnist1d_sequence().subset(n_train=s.n_train)
    x, y = run.put(*(t[:PROBE] for t in splits.test.tensors))
    if c.study == SPECTRA:
        model = run.build(lambda: _encoder(c.variant, s.n_layer, s.n_embd))
        attn = [f"blocks.{i}.attn" for i in range(s.n_layer)]
        init = residual_spectra(model, x, y, attn)
        steps, lr, batch, warmup = s.steps, s.lr, s.batch_size, s.steps // 10
    else:
        model = run.build(lambda: _encoder(c.variant, s.deep, s.n_embd))
        grad_init = layer_grad_norms(model, x, y)
        steps, lr, batch = s.warm_steps, s.warm_lr, s.warm_batch
        warmup = s.warm_steps // 4 if c.warmup else 0
    cfg = TrainConfig(
        epochs=1, max_steps=steps, batch_size=batch, lr=lr, optimizer="adam", betas=(0.9, 0.98),
        weight_decay=0.0, schedule="constant", warmup_steps=warmup, log_every=max(1, steps // 100),
    )  # fmt: skip
    fit = run.fit(model, Classification(splits.train, splits.test), cfg)
    acc = math.nan if fit.diverged else fit.last["test_acc"]
    if c.study == SPECTRA:
        trained = None if fit.diverged else asdict(residual_spectra(model, x, y, attn))
        return {"test_acc": acc, "init": asdict(init), "trained": trained}
    return {"test_acc": acc, "grad_init": grad_init}


@dataclass
class Result(Summary):
    init: list[TokenSpectra]  # per seed
    trained: list[TokenSpectra]  # per seed whose spectra run did not diverge
    test_acc: list[float]  # spectra model, per seed
    no_warmup: dict[str, list[float]]  # variant -> test accuracy per seed (NaN: diverged)
    with_warmup: dict[str, list[float]]
    grad_init: dict[str, list[float]]  # variant -> per block, first seed
    settings: Settings  # what the tables and figures name
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)


@register_claim
class TransformerLowpass(Claim[Settings, Condition, Result]):
    id = "C16"
    slug = "transformer-lowpass"
    title = "The residual stream carries the low frequencies, attention the high ones"
    statement = (
        "In a Transformer block the residual path carries the low-frequency (global) content of "
        "the token sequence, while attention learns the high-frequency detail."
    )
    method = (
        "A bidirectional pre-LN Transformer encoder classifies MNIST-1D read as 40 scalar tokens "
        "(learned positions, mean-pooled head). After training, the FFT over token positions of "
        "the residual stream x_l entering each block and of the attention branch Attn(LN(x_l)) "
        f"gives power spectra; the fraction of energy at <= {CUTOFF:g} cycles/token (DC "
        "included) is compared per block, and at init for reference. The gradient reaching x_l "
        "along the skip (dL/dy) and through the branch (J^T dL/dy) is measured per block. "
        "Separately, deeper post-LN and pre-LN encoders are trained with and without linear "
        "learning-rate warm-up (Xiong et al. 2020), and the gradient norm of each block's last "
        "MLP weight is measured at init."
    )
    criterion = (
        "Holds when, in the trained models, the residual stream's low-frequency fraction "
        "(averaged over blocks) exceeds the attention branch's in every seed (ranges over seeds "
        "do not overlap); fails when the branch's exceeds the stream's in every seed; otherwise "
        "inconclusive. The gradient split and the warm-up comparison are reported beside it and "
        "do not enter this verdict (they test different statements)."
    )
    math = (
        "x_{l+1} = x_l + A_l(LN(x_l))  =>  X_{l+1}(f) = X_l(f) + A_l(f) for every frequency f "
        "(the FFT is linear): the stream's spectrum is the sum of the branches' contributions "
        "and their cross terms.\n"
        "low(h) = sum_{f <= f_c} |H(f)|^2 / sum_f |H(f)|^2, with H the FFT over positions.\n"
        "Gradient: dL/dx_l = dL/dy + J_A^T dL/dy (pre-LN: the skip passes dL/dy unchanged).\n"
        "Xiong et al. 2020: in post-LN the expected gradient of the last layers' weights is "
        "O(d sqrt(ln d)) independent of depth, in pre-LN O(d sqrt(ln d / L)): post-LN needs "
        "warm-up."
    )
    references = (
        "Vaswani et al. 2017, Attention Is All You Need",
        "Xiong et al. 2020, On Layer Normalization in the Transformer Architecture",
        "Wang et al. 2022, Anti-Oversmoothing in Deep Vision Transformers via the Fourier Domain",
        "Park & Kim 2022, How Do Vision Transformers Work?",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        warm = [Condition(WARMUP, v, w) for v in LN_VARIANTS for w in (False, True)]
        return [Condition(SPECTRA, "pre_ln", True), *warm]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.study == SPECTRA:
            return s.steps * s.batch_size * s.n_layer * s.n_embd**2
        return s.warm_steps * s.warm_batch * s.deep * s.n_embd**2

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        spectra, warm = runs.where(study=SPECTRA), runs.where(study=WARMUP)
        first = warm.where(warmup=False).records
        return Result(
            init=[TokenSpectra(**r.get("init")) for r in spectra],
            trained=[TokenSpectra(**r.get("trained")) for r in spectra if r.get("trained")],
            test_acc=spectra.values("test_acc"),
            no_warmup={v: warm.values("test_acc", variant=v, warmup=False) for v in LN_VARIANTS},
            with_warmup={v: warm.values("test_acc", variant=v, warmup=True) for v in LN_VARIANTS},
            grad_init={r.condition.variant: r.get("grad_init") for r in first if r.seed == runs.seeds[0]},
            settings=s,
            seeds=runs.seeds,
            diverged=[f"{r.condition.study} {r.condition.variant} warm-up {r.condition.warmup}, "
                      f"seed {r.seed}: {r.error}" for r in runs if r.diverged],
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        if len(r.trained) < len(r.init):
            return [Check("every spectra model trained without diverging", False, kind="evidence")]
        stream, branch = _low(r.trained, "low_stream"), _low(r.trained, "low_branch")
        text = f"stream {describe(stream).mean:.3f}, attention {describe(branch).mean:.3f}"
        lowpass = Check(
            "attention is not the more low-pass path on every seed",
            not clearly_greater(branch, stream), text,
        )  # fmt: skip
        if not lowpass.passed:
            return [lowpass]
        more = "the residual stream is more low-pass than attention on every seed (no overlap)"
        return [lowpass, Check(more, clearly_greater(stream, branch), text, kind="evidence")]

    def detail(self, r: Result) -> str:
        if not r.trained:
            return "no spectra model finished training."
        n = self.numbers(r)
        ratio = [
            float(np.mean(np.asarray(p.grad_branch) / np.asarray(p.grad_skip))) for p in r.trained
        ]
        return (
            f"low-frequency energy fraction (<= {CUTOFF:g} cycles/token), trained, mean over blocks: "
            f"residual stream {describe(_low(r.trained, 'low_stream'))}, attention branch "
            f"{describe(_low(r.trained, 'low_branch'))} (at init: {n['low_stream_init']:.3f} vs "
            f"{n['low_branch_init']:.3f}); without the DC bin, trained: stream "
            f"{n['low_stream_ac_trained']:.3f} vs attention {n['low_branch_ac_trained']:.3f}; "
            f"gradient via attention / via skip {np.mean(ratio):.2f}; warm-up gain post-LN "
            f"{n['warmup_gain_post_ln']:+.3f} vs pre-LN {n['warmup_gain_pre_ln']:+.3f} (Xiong et "
            "al. predict post-LN > pre-LN)."
        )  # fmt: skip

    def numbers(self, r: Result) -> dict[str, float]:
        out = {f"warmup_gain_{v}": _gain(r, v) for v in LN_VARIANTS}
        for stage, probes in (("init", r.init), ("trained", r.trained)):
            out.update({f"{key}_{stage}": _mean(_low(probes, key)) for key in LOW})
        return {**out, "test_acc": _mean(r.test_acc)}

    def tables(self, r: Result) -> list[Table]:
        s, rows = r.settings, []
        for stage, probes in (("init", r.init), ("trained", r.trained)):
            for i, name in enumerate(probes[0].names if probes else []):
                m = {
                    k: float(np.mean([getattr(p, k)[i] for p in probes]))
                    for k in (*LOW, "grad_skip", "grad_branch")
                }
                rows.append([stage, name, *(f"{m[k]:.3f}" for k in LOW), f"{m['grad_skip']:.3g}",
                             f"{m['grad_branch']:.3g}", f"{m['grad_branch'] / m['grad_skip']:.2f}"])  # fmt: skip
        warm_rows = [
            [v, s.deep, _cell(r.no_warmup[v]), _cell(r.with_warmup[v]), f"{_gain(r, v):+.3f}"]
            for v in LN_VARIANTS
        ]
        return [
            Table(
                f"Per block: energy fraction at <= {CUTOFF:g} cycles/token and gradient reaching the block input",
                ["model", "sublayer", "low-freq stream", "low-freq attention", "stream, no DC",
                 "attention, no DC", "|grad| via skip", "|grad| via attention", "attention / skip"],
                rows,
                f"pre-LN encoder, {s.n_layer} blocks, width {s.n_embd}, MNIST-1D (40 tokens); trained "
                f"{s.steps} steps, test accuracy {_mean(r.test_acc):.1%}; means over {len(r.seeds)} seed(s)",
            ),
            Table(
                f"Warm-up sensitivity at depth {s.deep} (Adam lr {s.warm_lr:g}, {s.warm_steps} steps, "
                f"warm-up {s.warm_steps // 4} steps): test accuracy",
                ["variant", "blocks", "no warm-up", "with warm-up", "gain from warm-up"],
                warm_rows,
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        notes = [f"diverged: {msg}" for msg in r.diverged]
        notes.append(
            "Xiong et al.'s gradient analysis assumes blocks fed with O(1)-scale inputs; here the "
            "embeddings start at N(0, 0.02) (GPT-2 init), so the per-block gradients at init need "
            "not follow their Fig. 3."
        )
        if r.settings.n_embd < 128:  # below the full scale's width
            notes.append(
                "Small models and short training on one task: the spectra describe this encoder on "
                "MNIST-1D, not Transformers in general."
            )
        return notes

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        _figure(r, outdir / "transformer_lowpass.png")
        return [
            Figure(
                "transformer_lowpass.png",
                "Top: power spectra over token positions of the residual stream entering each block "
                "and of the attention branch output (normalised, mean over blocks; dotted: at init); "
                "the low-frequency energy fraction per block (band: range over seeds); the gradient "
                "reaching each block's input along the skip and through attention. Bottom: test "
                "accuracy of deep post-LN and pre-LN encoders with and without warm-up (dots: seeds); "
                "per-block gradient norm of the last MLP weight at init (Xiong et al. 2020, Fig. 3).",
            )
        ]


def _low(probes: list[TokenSpectra], key: str) -> list[float]:
    """Per seed: ``key`` averaged over blocks."""
    return [float(np.mean(getattr(p, key))) for p in probes]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _gain(r: Result, variant: str) -> float:
    """Mean test accuracy gained from warm-up (NaN when a run diverged)."""
    return _mean(r.with_warmup[variant]) - _mean(r.no_warmup[variant])


def _cell(accs: list[float]) -> str:
    done = [a for a in accs if math.isfinite(a)]
    text = f"{np.mean(done):.3f}" if done else "-"
    return text if len(done) == len(accs) else f"{text} ({len(accs) - len(done)} diverged)"


def _figure(r: Result, path: Path) -> None:
    fig, axes = _plot.subplots(2, 3, width=4.4, height=3.6)
    plot_token_spectra(axes[0], {"trained": r.trained, "init": r.init})
    ax = axes[1][0]
    for i, variant in enumerate(LN_VARIANTS):
        color = _plot.PLAIN if variant == "post_ln" else _plot.RESIDUAL
        for j, vals in enumerate((r.no_warmup[variant], r.with_warmup[variant])):
            ax.bar(i * 3 + j, np.nanmean(vals), color=color, alpha=1.0 if j else 0.5)
            ax.plot([i * 3 + j] * len(vals), vals, "k.", ms=6)
        ax.text(i * 3 + 0.5, 0.95, _name(variant), ha="center", transform=ax.get_xaxis_transform())
        g = r.grad_init.get(variant, [])
        axes[1][1].semilogy(np.arange(len(g)), g, "o-", color=color, label=_name(variant))
    ax.set_xticks([0, 1, 3, 4], ["no\nwarm-up", "warm-up", "no\nwarm-up", "warm-up"], fontsize=8)
    ax.set(title=f"warm-up sensitivity, {r.settings.deep} blocks", ylabel="test accuracy",
           ylim=(0, 1))  # fmt: skip
    axes[1][1].set(title="grad norm of each block's last MLP weight at init", xlabel="block",
                   ylabel="||dL/dW||", xticks=np.arange(r.settings.deep))  # fmt: skip
    axes[1][1].legend(fontsize=8)
    axes[1][2].axis("off")
    _plot.save(fig, path)


def _name(variant: str) -> str:
    return variant.replace("_", "-").replace("ln", "LN")  # post_ln -> post-LN
