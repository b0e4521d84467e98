"""C02 gradient-highway: the identity path keeps the backward signal alive through depth.

For a residual block ``y = x + F(x)`` the chain rule gives ``dL/dx = dL/dy (I + dF/dx)``: the
gradient reaching ``x`` is the incoming one plus a correction. If ``||dF/dx|| <= rho < 1`` the
correction can cancel at most a fraction ``rho`` of it, so through ``L`` blocks at least
``(1 - rho)^L`` of the gradient norm survives; a plain stack ``y = F(x)`` passes at most
``rho^L``. Part one checks both bounds on stacks whose branch Jacobian norm is held at ``rho``
exactly (:mod:`skiplab.diagnostics.bounded_stacks`); part two measures the per-block gradient
norms of ResNet-56 and plain-56 at initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import fmt_values
from skiplab.data import load_mnist
from skiplab.diagnostics.block_gradients import block_gradient_norms, plot_block_gradients
from skiplab.diagnostics.bounded_stacks import (
    bound_violations,
    gradient_ratio,
    plot_ratios,
    spectral_weights,
)
from skiplab.models import create_model

# Branch phi(W x) of the bounded stacks: name -> (phi, how W is drawn). "worst" is the extremal
# case W = -rho I (phi = identity): every residual block then scales by exactly 1 - rho and
# every plain block by rho, so both bounds are met with equality.
BRANCHES = {"linear": ("linear", "gaussian"), "tanh": ("tanh", "gaussian"),
            "worst": ("linear", "negative_identity")}  # fmt: skip
BRANCH_LABELS = {"linear": "W x", "tanh": "tanh(W x)", "worst": "W = -ρI (extremal)"}
REAL_MODELS = ("resnet56", "plain56")
# Real networks: the residual gradient counts as kept when its first/last block ratio lies
# within a factor MODEST of 1, and the plain one as far off when it is DECADES_FURTHER decades
# further from 1 than the residual one.
MODEST = 10.0
DECADES_FURTHER = 1.0
# Slack for float64 rounding when comparing a measured ratio with a bound it can touch.
ROUND_SLACK = 1e-9


@dataclass(frozen=True)
class Settings:
    rho: float = 0.1  # the article's example: (1 - 0.1)^24 = 0.08
    depths: tuple[int, ...] = (8, 24, 56, 110)  # up to He et al. 2015's deepest CIFAR ResNet
    dim: int = 64  # stack width: random branches rarely align with the gradient
    directions: int = 16  # random (input, output gradient) pairs per stack and seed
    batch: int = 64  # MNIST images in the real networks' one backward pass
    image_size: int = 28  # MNIST as is (tiny: average-pooled to 14x14)


SCALES = {
    "tiny": Settings(dim=16, directions=4, batch=16, image_size=14),
    "quick": Settings(),
    "full": Settings(dim=256, directions=64, batch=256),
}


@dataclass(frozen=True)
class Condition:
    part: str  # "stack" (part 1, a norm-bounded stack) or "network" (part 2, a model at init)
    name: str  # a stack's branch (BRANCHES) or a registered model (resnet56, plain56)
    depth: int  # blocks of the stack; 56 for the networks


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Part 1: one stack's gradient ratios per direction; part 2: one network's per-block
    gradient norms at its seeded init. The series are logged per direction / block."""
    if c.part == "stack":
        phi, w_kind = BRANCHES[c.name]
        gen = run.generator(c.depth)  # one draw per depth and seed: linear and tanh share it
        weights = [run.put(w) for w in spectral_weights(c.depth, s.dim, s.rho, gen, w_kind)]
        x0 = torch.randn(s.directions, s.dim, generator=gen, dtype=torch.float64)
        x0, g = run.put(x0, torch.randn(s.directions, s.dim, generator=gen, dtype=torch.float64))
        res = gradient_ratio(weights, x0, g, True, phi).tolist()
        plain = gradient_ratio(weights, x0, g, False, phi).tolist()
        for i, (a, b) in enumerate(zip(res, plain)):
            run.log(i, residual=a, plain=b)  # step: the direction
        return {"residual_min": min(res), "residual_max": max(res), "plain_max": max(plain)}
    mnist = load_mnist(size=None if s.image_size == 28 else s.image_size)
    x, y = run.put(mnist.train.tensors[0][: s.batch], mnist.train.tensors[1][: s.batch])
    model = run.build(lambda: create_model(c.name, in_channels=1))
    grads = block_gradient_norms(model, (x,), y)  # train-mode BN: batch statistics
    for i, v in enumerate(grads.signal):
        run.log(i, output_grad=v)  # step 0: the first block's input (the stem's output)
    for i, v in enumerate(grads.parameter, start=1):
        run.log(i, param_grad=v)  # step i: block i
    par, act = grads.parameter, grads.signal
    return {"param_ratio": par[0] / par[-1], "act_ratio": act[0] / act[-1]}


@dataclass
class StackRatios:  # one branch at one depth: every seed x direction
    residual: list[float]
    plain: list[float]


@dataclass
class Network:  # one model at init, one list per seed
    parameter: list[list[float]]  # ||dL/dtheta|| per block, input side first
    activation: list[list[float]]  # ||dL/dx||: the stem's output, then every block's output

    def param_ratios(self) -> list[float]:  # first / last block, per seed
        return [g[0] / g[-1] for g in self.parameter]

    def act_ratios(self) -> list[float]:
        return [g[0] / g[-1] for g in self.activation]


@dataclass
class Result(Summary):
    rho: float
    dim: int
    directions: int
    data: str
    stacks: dict[str, dict[int, StackRatios]]  # branch -> depth
    networks: dict[str, Network]  # resnet56, plain56
    seeds: list[int]


@register_claim
class GradientHighway(Claim[Settings, Condition, Result]):
    id = "C02"
    slug = "gradient-highway"
    title = "The skip is a gradient highway: (1-rho)^L survives, a plain stack can fall to rho^L"
    statement = (
        "dL/dx = dL/dy (I + dF/dx); through L blocks the gradient keeps at least (1-rho)^L "
        "(0.08 for L = 24, rho = 0.1) while a plain stack can fall like rho^L."
    )
    method = (
        "(1) Stacks of L in {8, 24, 56, 110} blocks with branch phi(W x), W Gaussian rescaled to "
        "spectral norm exactly rho = 0.1, phi the identity or tanh; residual x + phi(W x) vs "
        "plain phi(W x); plus the extremal W = -rho I that meets both bounds with equality; a "
        "random output gradient g is backpropagated (float64) and "
        "||dL/dx_0|| / ||dL/dx_L|| is measured for several random inputs and directions per "
        "seed, a fresh stack per seed. (2) ResNet-56 and plain-56 (2-D, MNIST batch, train-mode "
        "BatchNorm) at initialisation: the norm of the loss gradient with respect to each "
        "block's parameters and each block's output, against depth, one init per seed."
    )
    criterion = (
        "Holds when (1) for every L, branch, seed and direction the residual ratio is "
        ">= (1-rho)^L and the plain ratio <= rho^L (up to 1e-9 relative float64 rounding), and "
        "(2) for every seed the real ResNet-56 keeps its first block's parameter-gradient norm "
        "within a factor 10 of its last block's (1/10 <= r_res <= 10), while plain-56's ratio "
        "r_plain is at least one decade further from 1: |log10 r_plain| >= |log10 r_res| + 1. "
        "Part (2) counts a departure in either direction: with BatchNorm a plain network's "
        "gradient at initialisation grows toward the input rather than decaying (He et al. "
        "2015 sec. 4.1 found BN keeps it from vanishing; Yang et al. 2019 show it explodes), "
        "and the measured direction is reported. Fails otherwise."
    )
    math = (
        "Residual block y = x + phi(W x), ||W||_2 = rho, 0 <= phi' <= 1:\n"
        "  J = dy/dx = I + D W,  D = diag(phi'(W x)),  ||D W||_2 <= ||D||_2 ||W||_2 <= rho.\n"
        "Backward: dL/dx = J^T dL/dy, and for any v\n"
        "  ||J^T v|| >= ||v|| - ||W^T D v|| >= (1 - rho) ||v||   (reverse triangle inequality)\n"
        "  ||J^T v|| <= (1 + rho) ||v||.\n"
        "Chaining L blocks: (1 - rho)^L <= ||dL/dx_0|| / ||dL/dx_L|| <= (1 + rho)^L.\n"
        "Plain block y = phi(W x): J^T v = W^T D v, so ||J^T v|| <= rho ||v|| and\n"
        "  ||dL/dx_0|| / ||dL/dx_L|| <= rho^L.\n"
        "rho = 0.1:  L = 24: (0.9)^24 = 0.080 vs 0.1^24 = 1e-24;  L = 110: 9.5e-6 vs 1e-110.\n"
        "Both bounds are provable for this class, so part (1) checks the implementation and "
        "shows how far inside the bounds typical gradients lie; part (2) asks whether real "
        "networks, whose branches are not norm-bounded, behave in the same spirit."
    )
    references = (
        "He et al. 2015, Deep Residual Learning",
        "He et al. 2016, Identity Mappings in Deep Residual Networks",
        "Balduzzi et al. 2017, The Shattered Gradients Problem",
        "Yang et al. 2019, A Mean Field Theory of Batch Normalization",
    )
    default_seeds = {"tiny": 2, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        stacks = [Condition("stack", b, d) for b in BRANCHES for d in s.depths]
        return stacks + [Condition("network", m, 56) for m in REAL_MODELS]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.part == "stack":
            return c.depth * s.dim**2 * s.directions / 1e6
        return s.batch * s.image_size**2 / 1e3  # a ResNet-56 forward and backward

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        def pooled(branch: str, depth: int, key: str) -> list[float]:  # every seed x direction
            return [v for r in runs.where(name=branch, depth=depth) for v in r.curve(key)]

        stacks = {
            b: {d: StackRatios(pooled(b, d, "residual"), pooled(b, d, "plain")) for d in s.depths}
            for b in BRANCHES
        }
        networks = {
            m: Network([r.curve("param_grad") for r in runs.where(name=m)],
                       [r.curve("output_grad") for r in runs.where(name=m)])
            for m in REAL_MODELS
        }  # fmt: skip
        data = f"MNIST {s.image_size}x{s.image_size}, batch {s.batch}"
        return Result(s.rho, s.dim, s.directions, data, stacks, networks, runs.seeds)

    def checks(self, r: Result) -> list[Check]:
        broken = [
            f"{branch} {msg}"
            for branch, by_depth in r.stacks.items()
            for depth, q in by_depth.items()
            for msg in bound_violations(q.residual, q.plain, depth, r.rho, ROUND_SLACK)
        ]
        r_res, r_pl = r.networks["resnet56"].param_ratios(), r.networks["plain56"].param_ratios()
        res_kept = _kept(r_res)
        plain_off = all(
            abs(math.log10(p)) >= abs(math.log10(q)) + DECADES_FURTHER for p, q in zip(r_pl, r_res)
        )
        return [
            Check("bounded stacks: residual ratio >= (1-rho)^L and plain ratio <= rho^L",
                  not broken, "; ".join(broken[:4]) or "every ratio within its bound"),
            Check(f"ResNet-56 ratio within {MODEST:g}x", res_kept, f"ResNet-56 {fmt_values(r_res)}"),
            Check(f"plain-56 at least {DECADES_FURTHER:g} decade(s) further off", plain_off,
                  f"plain-56 {fmt_values(r_pl)} vs ResNet-56 {fmt_values(r_res)}"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        rho, depths = r.rho, sorted(r.stacks["linear"])
        res, pl = r.networks["resnet56"], r.networks["plain56"]
        l24 = ""
        if 24 in depths:
            lin, worst = r.stacks["linear"][24], r.stacks["worst"][24]
            l24 = (
                f" (L=24, rho={rho:g}: random W x residual min {min(lin.residual):.3g} vs bound "
                f"{(1 - rho) ** 24:.3g}, plain max {max(lin.plain):.3g} vs {rho**24:.3g}; extremal "
                f"W=-rho*I residual {min(worst.residual):.3g}, plain {max(worst.plain):.3g})"
            )
        return (
            f"Bounded stacks over L in {depths}{l24}. At init, first/last block parameter-gradient "
            f"ratio: ResNet-56 {fmt_values(res.param_ratios())}, plain-56 {fmt_values(pl.param_ratios())} "
            f"(plain gradient {_direction(pl.param_ratios())}; block-output gradient ratios "
            f"ResNet-56 {fmt_values(res.act_ratios())}, plain-56 {fmt_values(pl.act_ratios())})."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {}
        for branch, by_depth in r.stacks.items():
            for depth, q in by_depth.items():
                out[f"{branch}_L{depth}_residual_min"] = min(q.residual)
                out[f"{branch}_L{depth}_plain_max"] = max(q.plain)
        for name, net in r.networks.items():
            out[f"{name}_param_ratio_gmean"] = _gmean(net.param_ratios())
            out[f"{name}_act_ratio_gmean"] = _gmean(net.act_ratios())
        return out

    def literature(self, r: Result) -> list[Comparison]:
        rho, deepest = r.rho, max(r.stacks["linear"])
        res_min = min(min(q.residual) for q in (r.stacks[b][deepest] for b in r.stacks))
        plain_max = max(max(q.plain) for q in (r.stacks[b][deepest] for b in r.stacks))
        r_res, r_pl = r.networks["resnet56"].param_ratios(), r.networks["plain56"].param_ratios()
        return [
            Comparison(
                "He et al. 2016 (Identity Mappings), sec. 2, Eqn. (5)",
                "dE/dx_l = dE/dx_L (1 + d/dx_l sum F): the gradient is unlikely to be canceled "
                "out, 'the gradient of a layer does not vanish even when the weights are "
                "arbitrarily small'",
                f"L={deepest}, ||W||=rho={rho:g}: residual ratio >= {res_min:.3g} (bound "
                f"(1-rho)^L = {(1 - rho) ** deepest:.3g}), plain <= {plain_max:.3g} (rho^L = "
                f"{rho**deepest:.3g}); ResNet-56 at init {fmt_values(r_res)}",
                res_min >= (1 - rho) ** deepest * (1 - ROUND_SLACK) and _kept(r_res),
            ),
            Comparison(
                "Yang et al. 2019, abstract",
                "in batch-normalized feedforward networks without skips, gradient signals grow "
                "exponentially in depth at initialization",
                f"plain-56 (2-D conv, BN) first/last block gradient ratio {fmt_values(r_pl)}: the "
                f"gradient {_direction(r_pl)}; their theory is for wide fully-connected nets",
                min(r_pl) > 1,
            ),
            Comparison(
                "Balduzzi et al. 2017, abstract",
                "gradient correlations (between nearby inputs) decay exponentially with depth "
                "in feedforward nets and sublinearly with skip-connections",
                "not measured here: this claim measures gradient norms through depth, not their "
                f"correlation across inputs (ResNet-56 ratio {fmt_values(r_res)}, plain-56 {fmt_values(r_pl)})",
                None,
            ),
        ]

    def tables(self, r: Result) -> list[Table]:
        rho, rows = r.rho, []
        for branch, by_depth in r.stacks.items():
            for d, q in by_depth.items():
                rows.append([
                    branch, d, f"{(1 - rho) ** d:.3g}", f"{min(q.residual):.3g}",
                    f"{max(q.residual):.3g}", f"{(1 + rho) ** d:.3g}", f"{max(q.plain):.3g}",
                    f"{rho**d:.3g}",
                ])  # fmt: skip
        real_rows = [
            [seed, name, f"{net.param_ratios()[i]:.3g}", f"{net.act_ratios()[i]:.3g}"]
            for i, seed in enumerate(r.seeds)
            for name, net in r.networks.items()
        ]
        return [
            Table(
                f"Gradient-norm ratio ||dL/dx_0|| / ||dL/dx_L|| of norm-bounded stacks (rho = "
                f"{rho}, width {r.dim}, {r.directions} directions x {len(r.seeds)} seeds)",
                ["branch", "L", "(1-rho)^L", "residual min", "residual max", "(1+rho)^L",
                 "plain max", "rho^L"],
                rows,
                "residual must stay >= (1-rho)^L (and <= (1+rho)^L); plain must stay <= rho^L",
            ),
            Table(
                f"Real networks at init ({r.data}, train-mode BN): first-block / last-block "
                "gradient norm",
                ["seed", "model", "parameter-gradient ratio", "block-output-gradient ratio"],
                real_rows,
                "ratio > 1: the gradient is larger near the input than near the output. Block "
                "outputs of different stages differ in size (16x28x28 vs 64x7x7), so the "
                "parameter ratio is the one the criterion uses.",
            ),
        ]  # fmt: skip

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        stacks = {
            BRANCH_LABELS[b]: {d: (q.residual, q.plain) for d, q in by_depth.items()}
            for b, by_depth in r.stacks.items()
        }
        plot_ratios(stacks, r.rho, outdir / "ratio_vs_depth.png")
        per_stage = len(r.networks["resnet56"].parameter[0]) // 3  # 16 -> 32 -> 64 channels
        plot_block_gradients(
            {label: (r.networks[m].parameter, r.networks[m].activation)
             for m, label in (("resnet56", "ResNet-56"), ("plain56", "plain-56"))},
            outdir / "per_block_gradients.png",
            boundaries=(per_stage + 0.5, 2 * per_stage + 0.5),
        )  # fmt: skip
        r_res, r_pl = r.networks["resnet56"].param_ratios(), r.networks["plain56"].param_ratios()
        return [
            Figure(
                "ratio_vs_depth.png",
                f"Input/output gradient-norm ratio of stacks whose branch Jacobian norm is held "
                f"at ρ = {r.rho:g}, against depth (log scale), with the bounds derived in the math "
                "section. Bottom: the residual stacks alone, every measured ratio as a dot.",
            ),
            Figure(
                "per_block_gradients.png",
                "ResNet-56 vs plain-56 at initialisation on one MNIST batch (train-mode BN): "
                "gradient norm per block against depth (line: geometric mean over seeds, band: "
                "min-max; dotted: stage changes; output gradient 0: the stem's output). Plain-56's "
                f"gradient {_direction(r_pl)} (first/last block parameter-gradient ratio "
                f"{fmt_values(r_pl)}); ResNet-56's ratio {fmt_values(r_res)}.",
            ),
        ]


def _kept(ratios: list[float]) -> bool:
    return all(1 / MODEST <= v <= MODEST for v in ratios)


def _direction(ratios: list[float]) -> str:
    if max(ratios) > 1 > min(ratios):
        return "changes direction between seeds"
    return "grows toward the input" if min(ratios) > 1 else "decays toward the input"


def _gmean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))
