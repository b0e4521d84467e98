"""C04 information: with ``Y = X + F(X) + N`` the skip keeps information about ``X``.

Linear-Gaussian blocks have a closed-form mutual information (the Gaussian channel); the claim
compares residual and plain blocks for ``F = 0``, a low-rank ``F`` and a random ``F``, one
block and a stack of blocks, checks every closed form against two sample estimators (a
Gaussian plug-in and the KSG k-nearest-neighbour estimator), and measures the same quantity
layer by layer in a real 40-layer MLP at initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import clearly_greater, describe, fmt_values
from skiplab.data import load_mnist1d
from skiplab.diagnostics import (
    gaussian_mi,
    ksg_mi,
    layerwise_information,
    linear_block_mi,
    stacked_mutual_information,
)
from skiplab.diagnostics.linear_gaussian import make_branch, noisy_copy_information, sample_stack
from skiplab.models import create_model

FAMILIES = ("zero", "low-rank", "random")
MODELS = ("residual", "plain")
# what one linear run measures (nats): one block, closed form and Gaussian plug-in estimate;
# one 2-D block, closed form and KSG; check_depth blocks, closed and Gaussian; depth blocks
NUMBERS = ("closed", "gauss", "closed2", "ksg", "stack_closed", "stack_gauss", "deep")
NOISE = 0.5  # per-block noise std of the linear-Gaussian study
KSG_NOISE = 0.7  # keeps the KSG check below ~2 nats, where its downward bias is small
READOUT_NOISE = 0.1  # noise-to-signal ratio of the real-model read-out
GAUSS_TOL = (0.05, 0.03)  # |estimate - closed form| <= 0.05 + 3% of the closed form
KSG_TOL = 0.15  # nats
COV_2 = np.diag([1.5, 0.75])  # the 2-D input of the KSG check

_fmt = partial(fmt_values, spec=".4g")  # this claim's precision


@dataclass(frozen=True)
class Settings:
    d: int = 8  # input dimension of the linear-Gaussian blocks
    n: int = 20000  # per Gaussian plug-in estimate: worst error 0.03 nats (limit 0.05 + 3%)
    n_ksg: int = 4000  # per KSG estimate in 2-D: worst error 0.05 nats (limit 0.15)
    depth: int = 32  # deepest stack: plain random F is down to 0.02 nats there
    check_depth: int = 4  # sampled stack: deep enough to compound, shallow enough to estimate
    mlp_depth: int = 40  # linear layers (20 blocks) of the real MLP and its plain twin
    n_rows: int = 1000  # MNIST-1D inputs: more than the MLP's width 128, a full-rank Cov(h)


SCALES = {
    "tiny": Settings(d=4, n=4000, n_ksg=1500, depth=8, mlp_depth=12, n_rows=300),
    "quick": Settings(),
    "full": Settings(d=16, n=200000, n_ksg=20000, depth=64, mlp_depth=100, n_rows=4000),
}


@dataclass(frozen=True)
class Condition:
    study: str  # linear: all six linear-Gaussian blocks of a seed; mlp: a real MLP at init
    model: str = "both"  # of the mlp study: residual or plain


def cov_x(d: int) -> np.ndarray:
    """The input covariance, anisotropic: a spread of signal-to-noise ratios."""
    return np.diag(np.linspace(2.0, 0.5, d))


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """The linear-Gaussian study of one seed, or one real MLP at init; the series (I(X; Y_L)
    per depth L, I(X; h_l + N) per block l) are logged."""
    if c.study == "mlp":
        inputs = run.put(load_mnist1d().train.tensors[0][: s.n_rows])  # (n, 1, 40)
        net = run.build(
            lambda: create_model("resmlp", depth=s.mlp_depth, skip=c.model == "residual")
        )
        info = list(layerwise_information(net, inputs, READOUT_NOISE, relative=True).values())
        for block, nats in enumerate(info):
            run.log(block, mi=nats)
        return {"first": info[1], "last": info[-1]}
    # One draw sequence per seed in a fixed order: a residual block and its plain twin see the
    # same branches F, drawn before both, and each its own sample noise.
    rng = np.random.default_rng(seed)
    blocks: dict[str, dict[str, Any]] = {m: {} for m in MODELS}
    for fam in FAMILIES:
        f, f2 = make_branch(fam, s.d, rng), make_branch(fam, 2, rng)
        fs = [make_branch(fam, s.d, rng) for _ in range(s.depth)]
        for m in MODELS:
            blocks[m][fam] = _linear_block(run, s, (f, f2, fs), m, fam, rng)
    return blocks


def _linear_block(
    run: Run, s: Settings, branches: tuple[Any, Any, list[Any]], model: str, fam: str, rng: Any
) -> dict[str, float]:
    """The NUMBERS of one kind of block with the given branches; logs ``I(X; Y_L)``."""
    (f, f2, fs), residual, cov = branches, model == "residual", cov_x(s.d)
    x, y = sample_stack([f], cov, NOISE, residual, s.n, rng)
    x2, y2 = sample_stack([f2], COV_2, KSG_NOISE, residual, s.n_ksg, rng)
    curve = stacked_mutual_information(fs, cov, NOISE, residual)
    xs, ys = sample_stack(fs[: s.check_depth], cov, NOISE, residual, s.n, rng)
    for depth, nats in enumerate(curve, start=1):
        run.log(depth, epoch=None, **{curve_key(model, fam): nats})
    return dict(zip(NUMBERS, (
        linear_block_mi(f, cov, NOISE, residual), gaussian_mi(x, y),
        linear_block_mi(f2, COV_2, KSG_NOISE, residual), ksg_mi(x2, y2, k=4),
        curve[s.check_depth - 1], gaussian_mi(xs, ys), curve[-1],
    )))  # fmt: skip


def curve_key(model: str, fam: str) -> str:
    """The logged name of ``I(X; Y_L)`` of one kind of block with one branch family."""
    return f"{model}_{fam}_mi"


@dataclass
class Block:
    """One kind of block with one branch family: the NUMBERS, one value per seed (nats)."""

    closed: list[float]
    gauss: list[float]
    closed2: list[float]
    ksg: list[float]
    stack_closed: list[float]
    stack_gauss: list[float]
    deep: list[float]
    curves: list[list[float]]  # per seed: I(X; Y_L) for L = 1..depth

    @property
    def series(self) -> list[list[float]]:
        """The one-block values over seeds, then each seed's stack over depth."""
        return [self.closed, *self.curves]


@dataclass
class Mlp:
    """The real MLP at init: Gaussian-channel bounds per seed (nats)."""

    first: list[float]  # after the first block
    last: list[float]  # after the last block
    curves: list[list[float]]  # per seed, per block (0 = the input)


@dataclass
class Result(Summary):
    settings: Settings
    seeds: list[int]
    full_information: float  # I(X; X + N): what a noisy copy of X carries
    blocks: dict[str, dict[str, Block]]  # model -> branch family
    mlp: dict[str, Mlp]  # model -> its real MLP


@register_claim
class Information(Claim[Settings, Condition, Result]):
    id = "C04"
    slug = "information"
    title = "The skip keeps the information about the input: I(X; X + F X + N)"
    statement = (
        "With Y = X + F(X) + N the skip keeps information about X: I(X;Y) = 1/2 ln det(I + ...); "
        "even a useless F loses nothing, while the plain block Y = F(X) + N keeps only what F "
        "passes on."
    )
    method = (
        "Closed-form Gaussian mutual information (slogdet) of linear blocks Y = A X + N with "
        "A = I + F (residual) or A = F (plain), X ~ N(0, S), N ~ N(0, s^2 I), for F = 0, a "
        "rank-2 F and a Gaussian F with E|Fv|^2 = |v|^2, one block and stacks up to L blocks "
        "(each with its own F and noise). Every closed form is compared with a Gaussian plug-in "
        "estimate from samples of the same block, and (in 2-D) with the KSG k-NN estimator. A "
        "real 40-layer residual MLP and its plain twin at initialisation, on MNIST-1D inputs: "
        "I(X; h_l + N) per block with read-out noise 0.1 x the layer's RMS activation "
        "(skiplab.diagnostics.layerwise_information, Gaussian-channel bound)."
    )
    criterion = (
        "Holds when, for every seed: (1) F = 0 gives the residual block exactly I(X; X + N) "
        "(relative error < 1e-10) and the plain block 0; (2) the residual block keeps at least "
        "as much as the plain one for every F family, at every depth of the stack; (3) every "
        "closed form agrees with its sample estimates (Gaussian estimator within 0.05 nats + 3%, "
        "KSG within 0.15 nats), so the numbers are not an artefact of the formula; (4) in the "
        "real MLP the last block of the residual network keeps more information than the plain "
        "twin's for every seed (ranges separate). Fails if any of these is violated."
    )
    math = (
        "Block: Y = A X + N, X ~ N(0, S), N ~ N(0, s^2 I) independent; A = I + F (residual) or "
        "A = F (plain).\n"
        "Y is Gaussian with Cov(Y) = A S A^T + s^2 I, and Y | X = x is N(A x, s^2 I), so\n"
        "  I(X;Y) = h(Y) - h(Y|X) = 1/2 ln det(2 pi e (A S A^T + s^2 I)) - 1/2 ln det(2 pi e s^2 I)\n"
        "         = 1/2 ln det(I + A S A^T / s^2)  =  1/2 sum_i ln(1 + mu_i / s^2),\n"
        "  mu_i the eigenvalues of A S A^T.\n"
        "F = 0:  residual A = I:  I = 1/2 ln det(I + S / s^2) = I(X; X + N): nothing is lost: all "
        "that the block's noise lets through.\n"
        "        plain    A = 0:  I = 1/2 ln det(I) = 0: everything is lost.\n"
        "rank(F) = r:  plain A S A^T has rank <= r, so I <= r/2 ln(1 + ||F||^2 ||S|| / s^2); the "
        "residual A = I + F is invertible unless F has eigenvalue -1, and then keeps all d "
        "directions. (It can even exceed I(X; X + N) when I + F amplifies X against the fixed "
        "noise: the skip guarantees that nothing is lost, not a ceiling.)\n"
        "Stack: Y_l = A_l Y_{l-1} + N_l gives Y_L = P_L X + sum_l M_l N_l with P_L = A_L...A_1, "
        "M_l = A_L...A_{l+1}, noise covariance C_L = A_L C_{L-1} A_L^T + s^2 I (C_0 = 0), and\n"
        "  I(X; Y_L) = 1/2 [ln det(P_L S P_L^T + C_L) - ln det C_L]  (non-increasing in L by "
        "data processing).\n"
        "Estimators: Gaussian plug-in 1/2 [ln det S_x + ln det S_y - ln det S_xy] (exact for "
        "Gaussians as n -> inf); KSG (Kraskov et al. 2004) psi(k) + psi(n) - <psi(n_x+1) + "
        "psi(n_y+1)>, distribution-free.\n"
        "Real model: I(X; h_l + N) <= 1/2 ln det(I + Cov(h_l)/s_l^2) (the Gaussian maximises "
        "entropy at a given covariance), s_l = 0.1 RMS(h_l): an upper bound, exact for "
        "Gaussian h_l, compared between twins at the same noise-to-signal ratio."
    )
    references = (
        "Cover & Thomas 2006, Elements of Information Theory, ch. 9 (Gaussian channel)",
        "Kraskov, Stoegbauer & Grassberger 2004, Estimating mutual information",
        "He et al. 2016, Identity Mappings in Deep Residual Networks",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition("linear"), *(Condition("mlp", m) for m in MODELS)]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.study == "mlp":
            return s.mlp_depth * s.n_rows / 1e4
        return 6 * (s.n * s.d * (1 + s.check_depth) + 20 * s.n_ksg) / 1e5

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        linear = runs.where(study="linear")

        def block(m: str, fam: str) -> Block:
            numbers = {k: [float(r.get(m)[fam][k]) for r in linear] for k in NUMBERS}
            return Block(**numbers, curves=[r.curve(curve_key(m, fam)) for r in linear])

        def mlp(m: str) -> Mlp:
            by = runs.where(study="mlp", model=m)
            return Mlp(by.values("first"), by.values("last"), [r.curve("mi") for r in by])

        blocks = {m: {fam: block(m, fam) for fam in FAMILIES} for m in MODELS}
        full = noisy_copy_information(cov_x(s.d), NOISE)
        return Result(s, linear.seeds, full, blocks, {m: mlp(m) for m in MODELS})

    def checks(self, r: Result) -> list[Check]:
        res, plain, full = r.blocks["residual"], r.blocks["plain"], r.full_information
        zero = (res["zero"].closed, plain["zero"].closed)
        zero_ok = all(abs(a - full) <= 1e-10 * full and b == 0.0 for a, b in zip(*zero))
        # one block, and every depth of every seed's stack
        pairs = [(ra, pb) for fam in FAMILIES for ra, pb in zip(res[fam].series, plain[fam].series)]
        dominates = all(a >= b - 1e-9 for ra, pb in pairs for a, b in zip(ra, pb))
        gauss, ksg = _estimator_errors(r)
        estimators_ok = all(e <= GAUSS_TOL[0] + GAUSS_TOL[1] * c for c, e in gauss) and all(
            e <= KSG_TOL for _, e in ksg
        )
        worst = f"worst error Gaussian {_worst(gauss):.3f}, KSG {_worst(ksg):.3f} nats"
        last = (r.mlp["residual"].last, r.mlp["plain"].last)
        return [
            Check("F = 0 exact: the residual block keeps I(X; X+N), the plain block 0", zero_ok,
                  f"residual {_fmt(zero[0])} vs {full:.4g}; plain {_fmt(zero[1])}"),
            Check("residual >= plain for every F, at every depth", dominates),
            Check("estimators agree with the closed forms", estimators_ok, worst),
            Check("the real MLP's last block keeps more with skips (ranges separate)",
                  clearly_greater(*last), f"residual {_fmt(last[0])} vs plain {_fmt(last[1])}"),
        ]  # fmt: skip

    def literature(self, r: Result) -> list[Comparison]:
        zero, full = r.blocks["residual"]["zero"], r.full_information
        rel = max(abs(v - full) / full for v in zero.closed)
        est = max(abs(g - full) for g in zero.gauss)
        _, ksg = _estimator_errors(r)
        res, plain = r.blocks["residual"], r.blocks["plain"]
        deep = {m: float(np.mean(r.blocks[m]["random"].deep)) for m in MODELS}
        last = (r.mlp["residual"].last, r.mlp["plain"].last)
        n = r.settings
        return [
            Comparison(
                "Cover & Thomas 2006, ch. 9 (the Gaussian channel)",
                "Y = X + Z, Z ~ N(0, N): I(X; Y) = 1/2 log(1 + P/N) for X ~ N(0, P), its "
                "capacity; independent parallel channels add",
                f"F = 0 residual block: closed form {np.mean(zero.closed):.4f} nats = 1/2 sum "
                f"ln(1 + s_i^2/s^2) = {full:.4f} (relative difference {rel:.1e}); Gaussian "
                f"plug-in estimate within {est:.3f} nats (n = {n.n:,})",
                rel < 1e-10 and est <= GAUSS_TOL[0] + GAUSS_TOL[1] * full,
            ),
            Comparison(
                "Kraskov, Stoegbauer & Grassberger 2004, abstract",
                "the k-NN estimators have minimal bias, systematic errors that scale as "
                "functions of k/N",
                f"KSG (k = 4, N = {n.n_ksg:,}) against the 2-D closed forms: worst error "
                f"{_worst(ksg):.3f} nats (limit {KSG_TOL:g})",
                _worst(ksg) <= KSG_TOL,
            ),
            Comparison(
                "He et al. 2016 (Identity Mappings), sec. 2",
                "Eqn. (4): with identity skips the signal propagates directly from any unit to "
                "any other, forward and backward",
                f"after {n.depth} blocks with random F: residual {deep['residual']:.3f} vs plain "
                f"{deep['plain']:.3f} nats; the real {n.mlp_depth}-layer MLP's last block: "
                f"residual {_fmt(last[0])} vs plain {_fmt(last[1])}",
                clearly_greater(*last)
                and all(np.mean(res[f].deep) >= np.mean(plain[f].deep) for f in FAMILIES),
            ),
        ]

    def detail(self, r: Result) -> str:
        res, plain = r.blocks["residual"], r.blocks["plain"]
        gauss, ksg = _estimator_errors(r)
        pairs = {fam: (np.mean(res[fam].closed), np.mean(plain[fam].closed)) for fam in FAMILIES}
        return (
            f"F=0: residual {pairs['zero'][0]:.3f} nats = I(X;X+N) {r.full_information:.3f}, "
            f"plain {pairs['zero'][1]:.3f}; low-rank F: {pairs['low-rank'][0]:.3f} vs "
            f"{pairs['low-rank'][1]:.3f}; random F: {pairs['random'][0]:.3f} vs "
            f"{pairs['random'][1]:.3f}; after the deepest stack: random F "
            f"{np.mean(res['random'].deep):.3f} vs {np.mean(plain['random'].deep):.3f}. Worst "
            f"estimator error: Gaussian {_worst(gauss):.3f}, KSG {_worst(ksg):.3f} nats. Real "
            f"MLP last block: residual {describe(r.mlp['residual'].last)} vs plain "
            f"{describe(r.mlp['plain'].last)} nats; {len(r.seeds)} seed(s)."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {
            f"{m}_{fam}_{k}": float(np.mean(getattr(r.blocks[m][fam], k)))
            for m in MODELS
            for fam in FAMILIES
            for k in NUMBERS
        }
        out["full_information"] = r.full_information
        for m in MODELS:
            out[f"mlp_{m}_last"] = float(np.mean(r.mlp[m].last))
            out[f"mlp_{m}_first"] = float(np.mean(r.mlp[m].first))
        return out

    def tables(self, r: Result) -> list[Table]:
        s, c = r.settings, r.settings.check_depth
        rows = [
            [seed, m, fam, *(getattr(r.blocks[m][fam], k)[i] for k in NUMBERS)]
            for i, seed in enumerate(r.seeds)
            for fam in FAMILIES
            for m in MODELS
        ]
        mlp = [[m, str(describe(r.mlp[m].first)), str(describe(r.mlp[m].last))] for m in MODELS]
        return [
            Table(
                f"Mutual information (nats): closed form vs sample estimates (d={s.d}, s={NOISE})",
                ["seed", "model", "F", "1 block closed", "1 block Gaussian est.", "2-D closed",
                 "2-D KSG", f"{c} blocks closed", f"{c} blocks Gaussian est.",
                 f"{s.depth} blocks closed"],
                rows,
                f"Gaussian estimates from {s.n} samples, KSG (k=4) from {s.n_ksg} samples in 2-D "
                f"with s={KSG_NOISE}; I(X; X+N) = {r.full_information:.3f} nats.",
            ),
            Table(
                f"Real {s.mlp_depth}-layer MLP at init on MNIST-1D ({s.n_rows} inputs): "
                "I(X; h_l + N), noise 0.1 x RMS(h_l)",
                ["model", "first block", "last block"], mlp,
                "Gaussian-channel upper bound from the sample covariance of h_l.",
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        return [
            "The real-model numbers are Gaussian-channel bounds at a fixed noise-to-signal "
            "ratio, not the exact information of a nonlinear network; they rank the twins, they "
            "are not comparable with the linear-Gaussian nats."
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.6, height=3.8)
        _one_block_panel(axes[0][0], r)
        _stack_panel(axes[0][1], r)
        ax = axes[0][2]
        for m in MODELS:
            for i, curve in enumerate(r.mlp[m].curves):
                ax.plot(range(len(curve)), curve, color=COLORS[m], alpha=0.8, lw=1.5,
                        label=m if i == 0 else None)  # fmt: skip
        ax.set(title="real MLP at init (MNIST-1D)", xlabel="block (0 = input)",
               ylabel="I(X; h_l + N) bound, nats")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        _plot.save(fig, outdir / "information.png")
        caption = (
            "Left: closed-form I(X;Y) of one linear-Gaussian block (bars) and Gaussian sample "
            "estimates (black ticks); with F = 0 the residual block keeps I(X; X+N) and the "
            "plain block 0. Middle: information after L blocks (closed form, mean over seeds; "
            "circles: sample estimates). Right: Gaussian-channel bound on I(X; h_l + N) per "
            "block of a residual MLP and its plain twin at init, one line per seed."
        )
        return [Figure("information.png", caption)]


COLORS = {"residual": _plot.RESIDUAL, "plain": _plot.PLAIN}


def _estimator_errors(r: Result) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``(closed form, |estimate - closed form|)`` of every Gaussian and every KSG estimate."""
    gauss: list[tuple[float, float]] = []
    ksg: list[tuple[float, float]] = []
    for b in (r.blocks[m][fam] for m in MODELS for fam in FAMILIES):
        pairs = zip(b.closed + b.stack_closed, b.gauss + b.stack_gauss)
        gauss.extend((c, abs(g - c)) for c, g in pairs)
        ksg.extend((c, abs(e - c)) for c, e in zip(b.closed2, b.ksg))
    return gauss, ksg


def _worst(errors: list[tuple[float, float]]) -> float:
    return max(e for _, e in errors)


def _one_block_panel(ax: Any, r: Result) -> None:
    xpos = np.arange(len(FAMILIES))
    for i, m in enumerate(MODELS):
        closed = [np.mean(r.blocks[m][f].closed) for f in FAMILIES]
        gauss = [np.mean(r.blocks[m][f].gauss) for f in FAMILIES]
        ax.bar(xpos + (i - 0.5) * 0.38, closed, 0.36, color=COLORS[m], label=f"{m} closed form")
        ax.plot(xpos + (i - 0.5) * 0.38, gauss, "k_", ms=18, mew=2)
    ax.plot([], [], "k_", ms=12, mew=2, label="Gaussian estimate")
    ax.axhline(r.full_information, color=_plot.REFERENCE, ls="--", label="I(X; X+N)")
    ax.set_xticks(xpos, [f"F {f}" for f in FAMILIES])
    top = max(
        r.full_information,
        *(float(np.mean(r.blocks[m][f].closed)) for m in MODELS for f in FAMILIES),
    )
    ax.set(title="one block: I(X;Y)", ylabel="nats", ylim=(0, 1.45 * top))  # room for the legend
    ax.legend(fontsize=8, loc="upper center", ncol=2)


def _stack_panel(ax: Any, r: Result) -> None:
    check = r.settings.check_depth
    for m in MODELS:
        for fam, style in zip(FAMILIES, ("-", "--", ":")):
            b = r.blocks[m][fam]
            mean = np.mean(np.asarray(b.curves), axis=0)
            ax.plot(np.arange(1, len(mean) + 1), np.maximum(mean, 1e-3), style,
                    color=COLORS[m], lw=2, label=f"{m}, F {fam}")  # fmt: skip
            ax.plot(check, max(np.mean(b.stack_gauss), 1e-3), "o", color=COLORS[m], mfc="none")
    ax.set_yscale("log")
    ax.set(title=f"stack of blocks (o: Gaussian estimate at L={check})", xlabel="blocks L",
           ylabel="I(X; Y_L), nats (floor 1e-3)")  # fmt: skip
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below
