"""C16 transformer-lowpass: what the residual stream and the attention branch carry, by frequency.

In a pre-LN block ``x_{l+1} = x_l + Attn(LN(x_l))`` the residual stream ``x_l`` and the attention
branch's output are both signals over token positions. Taking the FFT along the positions
gives each a power spectrum (:mod:`skiplab.diagnostics.token_spectrum`); the article says the
residual path carries the low-frequency (global, slowly varying) content and attention adds the
high-frequency detail. The claim measures both spectra in trained encoders in two settings
(MNIST-1D read as 40 scalar tokens; MNIST cut into a 7x7 grid of image patches, ViT-style),
beside Park & Kim 2022's high-frequency change across each sublayer, and -- since the skip's
placement decides how a deep Transformer trains -- redoes Xiong et al. 2020's warm-up test on
12-block post-LN and pre-LN encoders.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference
from skiplab.data import Splits, load_mnist, load_mnist1d_sequence
from skiplab.diagnostics.token_spectrum import CUTOFF, TokenSpectra, plot_token_spectra
from skiplab.diagnostics.token_spectrum import residual_spectra as _spectra
from skiplab.models import create_model
from skiplab.models.transformer import Transformer
from skiplab.train import Classification, TrainConfig

SPECTRA, WARMUP = "spectra", "warmup"  # the two studies
DATA = ("mnist1d", "patches")  # the spectra settings: 1-D tokens, a 2-D grid of image patches
ARMS = {"post-LN": ("post_ln", False), "post-LN + warm-up": ("post_ln", True),
        "pre-LN": ("pre_ln", False)}  # fmt: skip
PROBE = 256  # held-out examples the spectra and gradients are measured on
CHANCE = 0.1  # ten classes
SPECTRA_CONTROL = 0.3  # the spectra encoders learn: test accuracy's interval above 3x chance
WARM_CONTROL = 0.5  # pre-LN without warm-up trains: its accuracy's interval above 0.5
LOW = ("low_stream", "low_branch", "low_stream_ac", "low_branch_ac", "hf_change")


@dataclass(frozen=True)
class Settings:
    steps: int = 300  # Adam steps of the MNIST-1D spectra encoder (full scale: 4000)
    n_layer: int = 4  # blocks of the spectra encoders
    n_embd: int = 32  # 4 heads of 8
    lr: float = 1e-3  # Adam (betas 0.9, 0.98 as in Vaswani et al.), warm-up over 10% of steps
    batch_size: int = 64
    patch: int = 4  # MNIST 28x28 in 4x4-pixel patches: a 7x7 grid of 49 tokens
    patch_steps: int = 150  # 1.2 epochs of the 8,000 training images
    patch_cutoff: float = 0.15  # "low" on the grid: radius <= 1/7 (a period of 7 tokens or more)
    deep: int = 12  # blocks of the warm-up encoders: Xiong et al. 2020's depth regime
    warm_patch: int = 7  # 7x7-pixel patches, a 4x4 grid of 16 tokens: 12 blocks a CPU trains
    warm_steps: int = 200  # Adam steps of each warm-up encoder
    warm_up: int = 100  # linear warm-up steps of the warm-up arm (a quarter varied more)
    warm_batch: int = 32
    warm_lr: float = 3e-3  # post-LN without warm-up stalls at chance here (at 2e-3 it trains)
    n_train: int | None = None  # MNIST-1D: all 4,000 training sequences
    mnist_train: int = 8000  # MNIST images (the shipped 10k test set, split 8,000 / 2,000)
    mnist_test: int = 1000  # of the 2,000 held-out images


SCALES = {
    "tiny": Settings(steps=30, n_layer=2, patch_steps=30, deep=3, warm_steps=30, warm_up=15,
                     n_train=500, mnist_train=500, mnist_test=300),
    "quick": Settings(),
    "full": Settings(steps=4000, n_layer=6, n_embd=64, patch_steps=3000, deep=18,
                     warm_steps=3000, warm_up=1500),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    study: str  # "spectra" (pre-LN spectra at init and trained) or "warmup"
    data: str  # "mnist1d" or "patches"
    variant: str  # post_ln or pre_ln
    warmup: bool  # linear learning-rate warm-up (spectra: over 10% of steps; warmup: warm_up)


def patches(splits: Splits, size: int) -> tuple[Splits, tuple[int, int]]:
    """Images ``(N, 1, H, W)`` as ``(N, H/size * W/size, size * size)`` patch tokens in raster
    order (ViT's patch embedding is the encoder's input projection), and the grid shape."""

    def cut(x: torch.Tensor) -> torch.Tensor:
        tiles = x.unfold(2, size, size).unfold(3, size, size)  # (N, 1, rows, cols, size, size)
        return tiles.reshape(x.shape[0], -1, size * size)

    (x, y), (xt, yt) = splits.train.tensors, splits.test.tensors
    rows, cols = x.shape[2] // size, x.shape[3] // size
    tokens = Splits(TensorDataset(cut(x), y), TensorDataset(cut(xt), yt), name="mnist_patches",
                    num_classes=splits.num_classes, in_channels=size * size,
                    input_shape=(rows * cols, size * size))  # fmt: skip
    return tokens, (rows, cols)


def _data(s: Settings, c: Condition) -> tuple[Splits, tuple[int, int] | None]:
    if c.data == "mnist1d":
        return load_mnist1d_sequence().subset(n_train=s.n_train), None
    size = s.patch if c.study == SPECTRA else s.warm_patch
    return patches(load_mnist().subset(s.mnist_train, s.mnist_test), size)


def xavier_init(model: nn.Module) -> None:
    """Xavier-normal linear weights, zero biases, unit-variance embeddings: every block sees
    O(1) inputs, the regime of Xiong et al.'s analysis (GPT-2's N(0, 0.02) is not)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=1.0)


def _encoder(c: Condition, n_layer: int, n_embd: int, splits: Splits) -> Transformer:
    """A bidirectional encoder of the setting's tokens (learned positions, mean head). The
    MNIST-1D encoder keeps the library's GPT-2 init; the patch encoders start from Xavier."""
    length, features = splits.train.tensors[0].shape[1:]
    model = create_model("transformer_mnist1d", variant=c.variant, n_layer=n_layer,
                         n_embd=n_embd, in_features=int(features), block_size=int(length))  # fmt: skip
    assert isinstance(model, Transformer)
    if c.data == "patches":
        xavier_init(model)
    return model


def layer_grad_norms(model: Transformer, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Gradient norm of each block's last MLP weight, the quantity of Xiong et al.'s analysis."""
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
    """Spectra of a pre-LN encoder before and after training, or one warm-up encoder's accuracy."""
    splits, grid = _data(s, c)
    x, y = run.put(*(t[:PROBE] for t in splits.test.tensors))
    depth = s.n_layer if c.study == SPECTRA else s.deep
    model = run.build(lambda: _encoder(c, depth, s.n_embd, splits))
    names = [f"blocks.{i}.{part}" for i in range(depth) for part in ("attn", "mlp")]
    cutoff = CUTOFF if grid is None else s.patch_cutoff
    out: dict[str, Any] = {}
    if c.study == SPECTRA:
        out["init"] = asdict(_spectra(model, x, y, names, cutoff=cutoff, grid=grid))
        steps = s.steps if c.data == "mnist1d" else s.patch_steps
        lr, batch, warmup = s.lr, s.batch_size, steps // 10
    else:
        out["grad_init"] = layer_grad_norms(model, x, y)
        steps, lr, batch = s.warm_steps, s.warm_lr, s.warm_batch
        warmup = s.warm_up if c.warmup else 0
    cfg = TrainConfig(
        epochs=1, max_steps=steps, batch_size=batch, lr=lr, optimizer="adam", betas=(0.9, 0.98),
        weight_decay=0.0, schedule="constant", warmup_steps=warmup, log_every=max(1, steps // 50),
        eval_every=10**6,  # evaluate once, after the last step
    )  # fmt: skip
    fit = run.fit(model, Classification(splits.train, splits.test), cfg)
    out["test_acc"] = math.nan if fit.diverged else fit.last["test_acc"]
    if c.study == SPECTRA:
        trained = None if fit.diverged else _spectra(model, x, y, names, cutoff=cutoff, grid=grid)
        out["trained"] = None if trained is None else asdict(trained)
    return out


@dataclass
class Setting:
    """One spectra setting's runs, per seed (attention and MLP sublayers interleaved)."""

    init: list[TokenSpectra]
    trained: list[TokenSpectra]  # seeds whose run did not diverge
    test_acc: list[float]
    setup: str


@dataclass
class Result(Summary):
    spectra: dict[str, Setting]  # "mnist1d", "patches"
    warm: dict[str, list[float]]  # arm (ARMS) -> test accuracy per seed (NaN: diverged)
    grad_init: dict[str, list[float]]  # variant -> per block, first seed
    settings: Settings
    seeds: list[int]
    diverged: list[str] = field(default_factory=list)


@register_claim
class TransformerLowpass(Claim[Settings, Condition, Result]):
    id = "C16"
    slug = "transformer-lowpass"
    title = "The residual stream carries the low frequencies, attention the high ones"
    version = 2
    statement = (
        "In a Transformer block the residual path carries the low-frequency (global) content of "
        "the token sequence, while attention learns the high-frequency detail."
    )
    method = (
        "Two settings, each a 4-block bidirectional pre-LN encoder (width 32, learned positions, "
        "mean-pooled head) trained with Adam: MNIST-1D read as 40 scalar tokens (GPT-2 init, "
        "300 steps) and MNIST cut into a 7x7 grid of 4x4-pixel patches (ViT-style tokens, "
        "Xavier init, 150 steps); 5 seeds each. Before and after training, on 256 held-out examples, the FFT "
        "over token positions (2-D over the patch grid, binned by radius) of the residual stream "
        "x_l entering each attention sublayer and of the attention branch Attn(LN(x_l)) gives "
        f"power spectra; the fraction of energy at <= {CUTOFF:g} cycles/token (patches: radius "
        "<= 1/7; DC included) is averaged over blocks, per seed. Beside it: Park & Kim 2022's "
        "change of the high-frequency log amplitude (relative to DC) across each attention and "
        "MLP sublayer, and the gradient reaching x_l along the skip and through the branch. "
        "Separately, Xiong et al. 2020's warm-up test: 12-block post-LN encoders with and "
        "without linear warm-up (over the first 100 of 200 steps) and pre-LN encoders without "
        "it, Xavier init (O(1) inputs), Adam lr 3e-3, on 16 MNIST patch tokens, 5 seeds."
    )
    criterion = (
        "Per setting, d = (stream's low-frequency fraction) - (attention branch's), per seed, "
        "with its 95% t-interval over seeds. Holds when d's interval lies above 0 in both "
        "settings; fails when it lies below 0 in a setting (attention is the more low-pass "
        "path); otherwise inconclusive. Positive control: in each setting the encoders learn "
        f"(test accuracy's interval above {SPECTRA_CONTROL:g}, 3x chance); if not, inconclusive. "
        "The warm-up study, Park & Kim's measure and the gradient split test other statements: "
        "they are compared with the literature and do not enter this verdict."
    )
    math = (
        "x_{l+1} = x_l + A_l(LN(x_l))  =>  X_{l+1}(f) = X_l(f) + A_l(f) for every frequency f "
        "(the FFT is linear): the stream's spectrum is the sum of the branches' contributions "
        "and their cross terms.\n"
        "low(h) = sum_{|f| <= f_c} |H(f)|^2 / sum_f |H(f)|^2, with H the FFT over positions.\n"
        "Softmax attention averages tokens with non-negative weights summing to 1: a uniform "
        "attention matrix outputs the mean token (pure DC), which is why Wang et al. 2022 call "
        "it a low-pass filter.\n"
        "Park & Kim: a(h) = mean over batch, channels of log|H(f)|; change across a sublayer "
        "x -> y: [a_y(f_max) - a_y(0)] - [a_x(f_max) - a_x(0)] (< 0: low-pass).\n"
        "Gradient: dL/dx_l = dL/dy + J_A^T dL/dy (pre-LN: the skip passes dL/dy unchanged)."
    )
    references = (
        "Vaswani et al. 2017, Attention Is All You Need",
        "Xiong et al. 2020, On Layer Normalization in the Transformer Architecture",
        "Wang et al. 2022, Anti-Oversmoothing in Deep Vision Transformers via the Fourier Domain",
        "Park & Kim 2022, How Do Vision Transformers Work?",
    )
    default_seeds = {"tiny": 1, "quick": 5, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        spectra = [Condition(SPECTRA, d, "pre_ln", True) for d in DATA]
        return spectra + [Condition(WARMUP, "patches", v, w) for v, w in ARMS.values()]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.study == WARMUP:
            return s.warm_steps * s.warm_batch * s.deep * 16
        steps = s.steps if c.data == "mnist1d" else s.patch_steps
        return steps * s.batch_size * s.n_layer * (40 if c.data == "mnist1d" else 49)

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        spectra = {}
        for data in DATA:
            by = runs.where(study=SPECTRA, data=data)
            spectra[data] = Setting(
                init=[TokenSpectra(**r.get("init")) for r in by],
                trained=[TokenSpectra(**r.get("trained")) for r in by if r.get("trained")],
                test_acc=by.values("test_acc"),
                setup=_setup(s, data),
            )
        warm = runs.where(study=WARMUP)
        first = [r for r in warm if r.seed == runs.seeds[0] and not r.condition.warmup]
        return Result(
            spectra=spectra,
            warm={arm: warm.values("test_acc", variant=v, warmup=w) for arm, (v, w) in ARMS.items()},
            grad_init={r.condition.variant: r.get("grad_init") for r in first},
            settings=s,
            seeds=runs.seeds,
            diverged=[f"{r.condition.study} {r.condition.data} {r.condition.variant} warm-up "
                      f"{r.condition.warmup}, seed {r.seed}: {r.error}" for r in runs if r.diverged],
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        return [c for data in DATA for c in _setting_checks(data, r.spectra[data])]

    def detail(self, r: Result) -> str:
        parts = []
        for data, st in r.spectra.items():
            if len(st.trained) < 2:
                parts.append(f"{data}: too few trained encoders for an interval")
                continue
            d, acc = _gap(st), describe(st.test_acc)
            parts.append(
                f"{data}: stream {_mean(_attn(st.trained, 'low_stream')):.3f} vs attention "
                f"{_mean(_attn(st.trained, 'low_branch')):.3f}, d = {d.interval()} (95% CI, "
                f"n={d.n}), without the DC bin {_gap(st, '_ac').interval()}; test accuracy "
                f"{acc.interval()}"
            )
        gain = _warm_gain(r)
        warm = f"; post-LN warm-up gain at depth {r.settings.deep}: " + (
            gain.interval() if gain else "-"
        )
        return (
            "low-frequency energy fraction, trained, mean over blocks: " + "; ".join(parts) + warm
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out: dict[str, float] = {}
        for data, st in r.spectra.items():
            for stage, probes in (("init", st.init), ("trained", st.trained)):
                for key in LOW:
                    out[f"{data}_{key}_{stage}"] = _mean(_attn(probes, key))
                out[f"{data}_mlp_hf_change_{stage}"] = _mean(_attn(probes, "hf_change", "mlp"))
            out[f"{data}_test_acc"] = _mean(st.test_acc)
            if len(st.trained) > 1:
                d = _gap(st)
                out.update({f"{data}_gap": d.mean, f"{data}_gap_lo": d.lo, f"{data}_gap_hi": d.hi})
        for arm, accs in r.warm.items():
            out[f"warm_acc_{_key(arm)}"] = _mean(_chance_if_diverged(accs))
        gain = _warm_gain(r)
        if gain is not None:
            out.update({"warmup_gain_post_ln": gain.mean, "warmup_gain_post_ln_lo": gain.lo,
                        "warmup_gain_post_ln_hi": gain.hi})  # fmt: skip
        return out

    def tables(self, r: Result) -> list[Table]:
        return [_spectra_table(r), _summary_table(r), _warm_table(r)]

    def literature(self, r: Result) -> list[Comparison]:
        return _literature(r)

    def notes(self, r: Result) -> list[str]:
        notes = [f"diverged: {msg}" for msg in r.diverged]
        decided = {d: st for d, st in r.spectra.items() if len(st.trained) > 1}
        if decided:
            ac = "; ".join(f"{d} {_gap(st, '_ac').interval()}" for d, st in decided.items())
            notes.append(
                "The verdict counts the DC bin (the mean over tokens, the most global content). "
                f"Without it, stream - attention low-frequency fraction is {ac}: attention's "
                "low-pass character lies mostly in the mean token it adds, which is what a "
                "softmax average keeps (Wang et al. 2022)."
            )
            mlp = "; ".join(
                f"{d} {describe(_attn(st.trained, 'hf_change', 'mlp')).interval()}"
                for d, st in decided.items()
            )
            notes.append(
                f"Park & Kim's change across the MLP sublayers here: {mlp} (below 0 lowers high "
                "frequencies). They report MLPs raising them in a ViT on ImageNet; these small "
                "encoders on digit tasks need not behave alike, and this claim does not test why."
            )
        init = {d: _mean(_attn(st.init, "low_branch")) for d, st in r.spectra.items()}
        notes.append(
            "The two spectra settings differ in data (1-D sequence vs 2-D patch grid) and in init "
            "(MNIST-1D: GPT-2's N(0, 0.02), under which attention starts near-uniform and its "
            f"output's low-frequency fraction at init is {init['mnist1d']:.3f}; patches: Xavier, "
            f"{init['patches']:.3f}): a result shared by both does not hinge on either; a "
            "disagreement could not be pinned on one of them."
        )
        notes.append(
            "The warm-up study uses Xavier init because under the GPT-2 init (tiny embeddings) "
            "the effect did not appear: v1 of this claim (6 blocks, Adam lr 2e-3, 2 seeds) "
            "measured post-LN 0.38 without warm-up vs 0.37 with it, and pre-LN 0.14 vs 0.15, "
            "with post-LN's last-layer gradients at init 30x smaller than pre-LN's, the "
            "opposite of Xiong et al.'s analysis, which assumes O(1) inputs to the blocks."
        )
        if r.settings.n_embd < 64:  # below the full scale's width
            notes.append(
                "Small encoders trained briefly on two digit tasks: the spectra describe these "
                "encoders, not Transformers in general."
            )
        return notes

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        _figure(r, outdir / "transformer_lowpass.png")
        return [
            Figure(
                "transformer_lowpass.png",
                "Rows 1-2 (MNIST-1D tokens; MNIST patch grid): power spectra over token positions "
                "(patches: 2-D, by radius) of the residual stream entering each attention "
                "sublayer and of the attention branch output (normalised, mean over blocks; "
                "dotted: at init); the low-frequency energy fraction per block (band: range over "
                "seeds); the gradient reaching each block's input along the skip and through "
                "attention. Row 3: test accuracy of 12-block encoders with and without warm-up "
                "(dots: seeds; a diverged run counts as chance); per-block gradient norm of the "
                "last MLP weight at init; Park & Kim's change of the high-frequency log amplitude "
                "across each attention and MLP sublayer, trained (below 0: the sublayer removes "
                "high frequencies from the stream).",
            )
        ]


def _setup(s: Settings, data: str) -> str:
    if data == "mnist1d":
        return f"MNIST-1D, 40 scalar tokens, GPT-2 init, {s.steps} steps"
    side = 28 // s.patch
    return f"MNIST, {side}x{side} grid of {s.patch}x{s.patch} patches, Xavier init, {s.patch_steps} steps"


def _attn(probes: list[TokenSpectra], key: str, part: str = "attn") -> list[float]:
    """Per seed: ``key`` averaged over the blocks' ``part`` sublayers."""
    return [
        float(np.mean([v for n, v in zip(p.names, getattr(p, key)) if n.endswith(part)]))
        for p in probes
    ]


def _per_block(probes: list[TokenSpectra], key: str, part: str = "attn") -> np.ndarray:
    """``(seeds, blocks)`` values of ``key`` at the ``part`` sublayers."""
    return np.asarray(
        [[v for n, v in zip(p.names, getattr(p, key)) if n.endswith(part)] for p in probes]
    )


def _gap(st: Setting, suffix: str = "") -> Stat:
    """Per seed stream - attention low-frequency fraction (``suffix="_ac"``: without the DC
    bin), with its interval."""
    stream, branch = (_attn(st.trained, f"low_{p}{suffix}") for p in ("stream", "branch"))
    return difference(stream, branch, paired=True)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _key(arm: str) -> str:
    return arm.replace("-", "_").replace(" + ", "_").replace(" ", "_").lower()


def _chance_if_diverged(accs: list[float]) -> list[float]:
    """A diverged warm-up run has no final model: it counts as guessing (chance accuracy)."""
    return [a if math.isfinite(a) else CHANCE for a in accs]


def _warm_gain(r: Result) -> Stat | None:
    """Test accuracy gained from warm-up by post-LN (paired by seed: the same init)."""
    on, off = (_chance_if_diverged(r.warm[a]) for a in ("post-LN + warm-up", "post-LN"))
    return difference(on, off, paired=True) if on and len(on) == len(off) else None


def _setting_checks(data: str, st: Setting) -> list[Check]:
    """The criterion in one spectra setting."""
    if not st.trained or len(st.trained) < len(st.init):
        return [Check(f"{data}: every spectra encoder trained without diverging", False,
                      kind="evidence")]  # fmt: skip
    acc = describe(st.test_acc)
    control = Check(
        f"{data}: the encoders learn the task (test accuracy's 95% interval above "
        f"{SPECTRA_CONTROL:g}, 3x chance)",
        acc.lo > SPECTRA_CONTROL, f"test accuracy {acc.interval()}", kind="control",
    )  # fmt: skip
    d = _gap(st)
    text = f"stream - attention low-frequency fraction {d.interval()} (95% CI, n={d.n})"
    checks = [
        control,
        Check(f"{data}: attention is not clearly the more low-pass path", _side(d) >= 0, text),
    ]
    if _side(d) >= 0:  # not refuted: decided only when the interval lies above 0
        more = f"{data}: the residual stream is clearly the more low-pass path"
        checks.append(Check(more, _side(d) > 0, text, kind="evidence"))
    return checks


def _side(stat: Stat | None) -> int:
    """+1 / -1 when the interval lies wholly above / below 0, else 0."""
    if stat is None or not stat.excludes_zero:
        return 0
    return 1 if stat.lo > 0 else -1


def _agree(sides: list[int], expected: int) -> bool | None:
    """True when every setting shows the expected sign, False when every one shows the opposite
    sign or none is decided the expected way while some shows the opposite, else None."""
    if sides and all(s == expected for s in sides):
        return True
    if any(s == -expected for s in sides) and not any(s == expected for s in sides):
        return False
    return None


def _by_setting(r: Result, stat_of: Any) -> tuple[str, list[int]]:
    texts, sides = [], []
    for data, st in r.spectra.items():
        stat = stat_of(st) if len(st.trained) > 1 else None
        texts.append(f"{data} {stat.interval() if stat else '-'}")
        sides.append(_side(stat))
    return "; ".join(texts), sides


def _literature(r: Result) -> list[Comparison]:
    gaps, gap_sides = _by_setting(r, _gap)
    ac, _ = _by_setting(r, lambda st: _gap(st, "_ac"))
    attn, attn_sides = _by_setting(r, lambda st: describe(_attn(st.trained, "hf_change")))
    mlp, mlp_sides = _by_setting(r, lambda st: describe(_attn(st.trained, "hf_change", "mlp")))
    rows = [
        Comparison(
            "the article (this claim's statement)",
            "the residual stream carries the low frequencies, attention the high-frequency detail",
            f"stream - attention low-frequency fraction, trained (95% CI): {gaps}",
            _agree(gap_sides, +1),
        ),
        Comparison(
            "Wang et al. 2022, abstract (their AttnScale code splits attention into its DC part "
            "1/N and a high-pass rest)",
            "self-attention is inherently a low-pass filter; stacked, it leaves feature maps "
            "with only their DC component",
            f"stream - attention low-frequency fraction, trained (95% CI; below 0: attention "
            f"the more low-pass): {gaps}; without the DC bin: {ac}",
            _agree(gap_sides, -1),
        ),
        Comparison(
            "Park & Kim 2022, Fig. 2a and 8 (ViT-Ti on ImageNet-1K; their fourier_analysis "
            "notebook)",
            "MSA sublayers lower the feature map's high-frequency log amplitude relative to DC "
            "(low-pass filters)",
            f"change across each attention sublayer, trained, mean over blocks (95% CI): {attn}",
            _agree(attn_sides, -1),
        ),
        Comparison(
            "Park & Kim 2022, same figures",
            "MLP (and Conv) sublayers raise the high-frequency log amplitude",
            f"change across each MLP sublayer, trained, mean over blocks (95% CI): {mlp}",
            _agree(mlp_sides, +1),
        ),
    ]
    return [*rows, _xiong(r)]


def _xiong(r: Result) -> Comparison:
    gain = _warm_gain(r)
    pre = _chance_if_diverged(r.warm["pre-LN"])
    control = describe(pre) if pre else None
    ok = control is not None and control.lo > WARM_CONTROL
    measured = (
        f"depth {r.settings.deep}, Adam lr {r.settings.warm_lr:g}: post-LN accuracy gained from "
        f"warm-up {gain.interval() if gain else '-'} (95% CI); pre-LN without warm-up "
        f"{control.interval() if control else '-'} (control: interval above {WARM_CONTROL:g})"
    )
    agrees = None
    post, pre_g = r.grad_init.get("post_ln"), r.grad_init.get("pre_ln")
    if post and pre_g:
        measured += (
            f"; at init the last block's MLP weight gets a {post[-1] / pre_g[-1]:.1f}x larger "
            f"gradient in post-LN than in pre-LN (seed {r.seeds[0]})"
        )
    if not ok:
        measured += "; the control failed, so the budget cannot decide"
    elif _side(gain):
        agrees = _side(gain) > 0
    return Comparison(
        "Xiong et al. 2020, abstract",
        "post-LN needs learning-rate warm-up (its gradients near the output are large at init); "
        "pre-LN trains without it to comparable results",
        measured,
        agrees,
    )


def _spectra_table(r: Result) -> Table:
    rows = []
    for data, st in r.spectra.items():
        for stage, probes in (("init", st.init), ("trained", st.trained)):
            if not probes:
                continue
            vals = {k: _per_block(probes, k).mean(0) for k in (*LOW, "grad_skip", "grad_branch")}
            mlp = _per_block(probes, "hf_change", "mlp").mean(0)
            for i in range(len(mlp)):
                rows.append([data, stage, i, *(f"{vals[k][i]:.3f}" for k in LOW[:4]),
                             f"{vals['hf_change'][i]:+.2f}", f"{mlp[i]:+.2f}",
                             f"{vals['grad_branch'][i] / vals['grad_skip'][i]:.2f}"])  # fmt: skip
    return Table(
        "Per block, mean over seeds: low-frequency energy fraction (DC included, then without), "
        "Park & Kim's high-frequency change, gradient split",
        ["setting", "model", "block", "low stream", "low attention", "stream, no DC",
         "attention, no DC", "HF change attention", "HF change MLP", "|grad| attention / skip"],
        rows,
        "low: energy at <= 0.125 cycles/token (MNIST-1D) or radius <= 1/7 (patch grid). HF "
        "change: [log amplitude at the highest frequency - at DC] after the sublayer minus "
        "before (Park & Kim 2022); below 0 the sublayer is a low-pass filter of the stream.",
    )  # fmt: skip


def _summary_table(r: Result) -> Table:
    rows: list[list[Any]] = []
    for data, st in r.spectra.items():
        if len(st.trained) < 2:
            rows.append([data, st.setup, "-", "-", "-", "-", "-"])
            continue
        rows.append([
            data, st.setup, describe(st.test_acc).interval(), _gap(st).interval(),
            _gap(st, "_ac").interval(),
            describe(_attn(st.trained, "hf_change")).interval(),
            describe(_attn(st.trained, "hf_change", "mlp")).interval(),
        ])  # fmt: skip
    return Table(
        "Trained encoders, mean over seeds [95% t-interval]: the effect the verdict rests on",
        ["setting", "setup", "test accuracy", "stream - attention low fraction",
         "same without DC", "HF change attention", "HF change MLP"],
        rows,
    )  # fmt: skip


def _warm_table(r: Result) -> Table:
    s, rows = r.settings, []
    for arm, accs in r.warm.items():
        done = [a for a in accs if math.isfinite(a)]
        stat = describe(_chance_if_diverged(accs)) if accs else None
        rows.append([arm, s.deep, stat.interval() if stat else "-", len(accs) - len(done)])
    gain = _warm_gain(r)
    return Table(
        f"Warm-up test at depth {s.deep} (Adam lr {s.warm_lr:g}, {s.warm_steps} steps, warm-up "
        f"{s.warm_up} steps, MNIST 4x4 grid of 7x7 patches, Xavier init): test accuracy",
        ["arm", "blocks", "test accuracy [95% CI]", "diverged runs"],
        rows,
        f"post-LN accuracy gained from warm-up (paired by seed): "
        f"{gain.interval() if gain else '-'}; control: pre-LN without warm-up above "
        f"{WARM_CONTROL:g}; chance {CHANCE:g}.",
    )  # fmt: skip


def _attention_only(p: TokenSpectra) -> TokenSpectra:
    keep = [i for i, n in enumerate(p.names) if n.endswith("attn")]
    lists: dict[str, Any] = {f.name: [getattr(p, f.name)[i] for i in keep]
                             for f in dataclasses.fields(p) if f.name not in ("length", "grid")}  # fmt: skip
    return dataclasses.replace(p, **lists)


def _figure(r: Result, path: Path) -> None:
    fig, axes = _plot.subplots(3, 3, width=4.4, height=3.6)
    for row, (data, st) in enumerate(r.spectra.items()):
        stages: dict[str, Sequence[TokenSpectra]] = {
            "trained": [_attention_only(p) for p in st.trained],
            "init": [_attention_only(p) for p in st.init],
        }
        cutoff = CUTOFF if data == "mnist1d" else r.settings.patch_cutoff
        plot_token_spectra(axes[row], stages, cutoff=cutoff)
        for ax in axes[row]:
            ax.set_title(f"{data}: {ax.get_title()}", fontsize=9)
        if data == "patches":
            axes[row][0].set_xlabel("radial frequency over the grid (cycles / token)")
    _warm_panel(axes[2][0], r)
    for variant, g in r.grad_init.items():
        color = _plot.PLAIN if variant == "post_ln" else _plot.RESIDUAL
        axes[2][1].semilogy(np.arange(len(g)), g, "o-", color=color, label=_name(variant))
    axes[2][1].set(title="grad norm of each block's last MLP weight at init", xlabel="block",
                   ylabel="||dL/dW||", xticks=np.arange(r.settings.deep))  # fmt: skip
    axes[2][1].legend(fontsize=8)
    ax = axes[2][2]
    for data, ls in zip(DATA, ("o-", "s--")):
        probes = r.spectra[data].trained
        if not probes:
            continue
        for part, color in (("attn", _plot.PLAIN), ("mlp", _plot.RESIDUAL)):
            vals = _per_block(probes, "hf_change", part)
            ax.plot(np.arange(vals.shape[1]), vals.mean(0), ls, color=color, label=f"{data} {part}")
    ax.axhline(0.0, color=_plot.REFERENCE, lw=0.8)
    ax.set(title="Park & Kim: high-frequency change across a sublayer", xlabel="block",
           ylabel="delta log amplitude (hi - DC)", xticks=np.arange(r.settings.n_layer))  # fmt: skip
    ax.legend(fontsize=7)
    _plot.save(fig, path)


def _warm_panel(ax: Any, r: Result) -> None:
    colors = (_plot.PLAIN, _plot.PLAIN, _plot.RESIDUAL)
    for i, ((arm, accs), color) in enumerate(zip(r.warm.items(), colors)):
        vals = _chance_if_diverged(accs)
        ax.bar(i, np.mean(vals) if vals else 0.0, color=color, alpha=1.0 if "warm" in arm else 0.5)
        ax.plot([i] * len(vals), vals, "k.", ms=6)
    ax.axhline(CHANCE, color=_plot.REFERENCE, ls="--", lw=0.8, label="chance")
    ax.set_xticks(range(len(r.warm)), [a.replace(" + ", "\n+ ") for a in r.warm], fontsize=8)
    ax.set(title=f"warm-up test, {r.settings.deep} blocks, lr {r.settings.warm_lr:g}",
           ylabel="test accuracy", ylim=(0, 1))  # fmt: skip
    ax.legend(fontsize=7)


def _name(variant: str) -> str:
    return variant.replace("_", "-").replace("ln", "LN")  # post_ln -> post-LN
