"""C10 gan-stability: a residual discriminator keeps its gradient between (1-c)^L and (1+c)^L.

For a stack of L residual blocks ``h_{l+1} = h_l + F_l(h_l)`` with ``||dF_l/dh||_2 <= c`` the
backward gain ``||g^T J|| / ||g||`` of ``J = prod (I + dF_l/dh)`` lies in ``[(1-c)^L, (1+c)^L]``
for every vector ``g`` (each factor's singular values lie in ``[1 - c, 1 + c]``). The plain twin
``h_{l+1} = F_l(h_l)`` has only the upper bound ``prod c_l``. The discriminator's input gradient
is what the generator learns from; the probe is :mod:`skiplab.diagnostics.gain`.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import describe
from skiplab.data.gaussians import GaussianMixture, grid_of_gaussians, ring_of_gaussians
from skiplab.diagnostics.gain import GainSummary, gain_summary
from skiplab.models.gan import Discriminator, GANConfig, Generator

INIT = "init"  # the stack at initialisation, on samples of the ring
MIXTURES = {"ring8": ring_of_gaussians, "grid25": grid_of_gaussians}  # GAN training
ARMS = ("residual", "plain")


@dataclass(frozen=True)
class Settings:
    depths: tuple[int, ...] = (2, 4, 8, 16)  # blocks L of the stacks probed at init
    train_blocks: int = 6  # discriminator blocks in GAN training
    steps: int = 1000  # GAN steps (one D step, one G step each)
    hidden: int = 64  # width of every block
    batch_size: int = 256  # real and fake samples per step
    lr: float = 1e-3  # Adam for both networks
    betas: tuple[float, float] = (0.5, 0.9)  # beta1 = 0.5 as in DCGAN (Radford et al. 2016)
    init_samples: int = 128  # ring samples the stack is probed at, at init
    probe_samples: int = 64  # samples per probe during training
    probes: int = 5  # probes spread over training (plus the last step)
    samples: int = 2000  # generator samples for the mode statistics


SCALES = {
    "tiny": Settings(depths=(2, 8), train_blocks=4, steps=60, hidden=32),
    "quick": Settings(),
    "full": Settings(depths=(2, 4, 8, 16, 32), train_blocks=16, steps=10000, hidden=256),
}


@dataclass(frozen=True)
class Condition:
    task: str  # "init" (the gain at initialisation over depths) or a mixture trained on
    arm: str  # the discriminator: "residual" or "plain" (the generator is residual in both)


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """At init: probe a fresh stack of every depth; else train a GAN on the mixture."""
    skip = c.arm == "residual"
    if c.task != INIT:
        return _train(run, s, MIXTURES[c.task](), skip)
    x = run.put(ring_of_gaussians().sample(s.init_samples, run.generator(0)))
    by_depth = {}
    for depth in s.depths:
        cfg = GANConfig(d_blocks=depth, hidden=s.hidden, skip=skip)
        by_depth[depth] = asdict(gain_summary(run.build(partial(Discriminator, cfg)), x))
        run.log(depth, **by_depth[depth])
    return {"by_depth": by_depth}


def _train(run: Run, s: Settings, mixture: GaussianMixture, skip: bool) -> dict[str, Any]:
    """Non-saturating GAN (Goodfellow et al. 2014) with Adam, probing D's gradients
    ``s.probes`` times; the generator's mode statistics and its first 1,000 samples."""
    cfg = GANConfig(d_blocks=s.train_blocks, hidden=s.hidden, skip=skip)
    d = run.build(lambda: Discriminator(cfg))
    g = run.build(Generator(replace(cfg, skip=True)))  # built right after D, not reseeded
    opt_d = torch.optim.Adam(d.parameters(), lr=s.lr, betas=s.betas)
    opt_g = torch.optim.Adam(g.parameters(), lr=s.lr, betas=s.betas)
    gen, latent, every = run.generator(0), cfg.latent_dim, max(s.steps // s.probes, 1)
    for step in range(s.steps + 1):
        if step % every == 0 or step == s.steps:
            probe = gain_summary(d, run.put(mixture.sample(s.probe_samples, gen)))
            run.log(step, **asdict(probe))
        if step == s.steps:
            break
        real = run.put(mixture.sample(s.batch_size, gen))
        fake = g(run.put(torch.randn(s.batch_size, latent, generator=gen)))
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(fake)).mean()  # non-saturating generator loss
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        run.log(step, loss_d=loss_d.item(), loss_g=loss_g.item())
    with torch.no_grad():
        samples = g(run.put(torch.randn(s.samples, latent, generator=gen))).cpu()
    return {**mixture.mode_stats(samples), "samples": samples[:1000].tolist()}


@dataclass
class Training:
    """One mixture and discriminator over seeds."""

    modes: list[float]
    hq_frac: list[float]
    probes: list[dict[str, list[float]]]  # per seed: step, gain, c, input_grad, in_bounds
    samples: list[list[float]]  # the first seed's generator samples, (1000, 2)


@dataclass
class Result(Summary):
    init: dict[str, list[GainSummary]]  # arm -> per L: the stack at init, mean over seeds
    train: dict[str, dict[str, Training]]  # mixture -> arm
    centers: dict[str, list[list[float]]]  # mixture -> its mode centres
    in_bounds_init: float  # the worst residual stack at init (any L, any seed)
    in_bounds_train: float  # the worst residual probe during training
    modes: dict[str, dict[str, float]]  # mixture -> arm -> modes covered, mean over seeds
    seeds: list[int]
    scale: str
    settings: Settings

    def gain(self, arm: str) -> list[float]:
        """The median gain at init of the ``arm`` stacks, per L (mean over seeds)."""
        return [p.gain for p in self.init[arm]]


@register_claim
class GANStability(Claim[Settings, Condition, Result]):
    id = "C10"
    slug = "gan-stability"
    title = "Residual discriminators keep their gradient; plain ones let it shrink"
    statement = (
        "A residual discriminator keeps its gradient norm between (1-c)^L and (1+c)^L, where c "
        "bounds each block's branch Jacobian; a plain one shrinks like c^L; this makes GAN "
        "training more stable."
    )
    method = (
        "MLP discriminators of L spectrally normalised pre-activation blocks (LeakyReLU 0.2) "
        "and their plain twins, at initialisation for several L: per sample, the backward gain "
        "||dD/dh_0|| / ||dD/dh_L|| through the stack, and c = the largest spectral norm of a "
        "block's branch Jacobian at that sample (exact, by autograd), against (1-c)^L, (1+c)^L "
        "and prod_l c_l. Then non-saturating GAN training on the ring of 8 and the grid of 25 "
        "Gaussians with the same residual generator and a residual or plain discriminator: the "
        "gain, c and the input-gradient norm during training; modes covered (>= 20% of a fair "
        "share of samples within 3 std) and the high-quality fraction, over seeds."
    )
    criterion = (
        "Holds when (1) at init and during training at least 99% of samples of the residual "
        "discriminator lie within [(1-c)^L, (1+c)^L]; (2) at init the plain stack's median "
        "gain at the largest L is at least 10x below the residual one's and falls with L; and "
        "(3) on both mixtures the residual discriminator covers at least as many modes as the "
        "plain one, and at least one, on average over seeds. Fails when (1) or (2) is false; "
        "inconclusive when only (3) misses (the gradient statement holds but training does not "
        "show it)."
    )
    math = (
        "J = prod_l (I + J_l), ||J_l||_2 <= c:  sigma_min(I + J_l) >= 1 - c, "
        "sigma_max(I + J_l) <= 1 + c,\n"
        "so (1 - c)^L ||g|| <= ||g^T J|| <= (1 + c)^L ||g|| for every g.\n"
        "Plain: J = prod_l J_l,  ||g^T J|| <= prod_l c_l ||g|| <= c^L ||g||.\n"
        "Spectral norm (Miyato et al. 2018) keeps every weight's norm <= 1 and LeakyReLU's slope "
        "is <= 1, so c <= 1 per layer: the plain stack can only shrink the gradient."
    )
    references = (
        "Goodfellow et al. 2014, Generative Adversarial Nets",
        "Gulrajani et al. 2017, Improved Training of Wasserstein GANs (residual discriminators)",
        "Miyato et al. 2018, Spectral Normalization for Generative Adversarial Networks",
        "Metz et al. 2017, Unrolled GANs (ring of 8); Srivastava et al. 2017, VEEGAN (grid of 25)",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(t, arm) for t in (INIT, *MIXTURES) for arm in ARMS]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.task == INIT:  # one exact H x H Jacobian per block and sample
            return s.init_samples * sum(s.depths) * s.hidden**3 / 1e8
        probes = (s.probes + 1) * s.probe_samples * s.train_blocks * s.hidden**3
        return (s.steps * 6 * s.batch_size * s.train_blocks * s.hidden**2 + probes) / 1e8

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        init = {arm: [[GainSummary(**r.get("by_depth")[str(d)]) for d in s.depths]
                      for r in runs.where(task=INIT, arm=arm)] for arm in ARMS}  # fmt: skip
        train = {m: {arm: _training(runs.where(task=m, arm=arm)) for arm in ARMS} for m in MIXTURES}
        return Result(
            init={arm: [_mean(seeds) for seeds in zip(*init[arm])] for arm in ARMS},
            train=train,
            centers={m: make().centers.tolist() for m, make in MIXTURES.items()},
            in_bounds_init=min(p.in_bounds for probes in init["residual"] for p in probes),
            in_bounds_train=min(v for arms in train.values() for pr in arms["residual"].probes
                                for v in pr["in_bounds"]),
            modes={m: {arm: float(np.mean(train[m][arm].modes)) for arm in ARMS} for m in MIXTURES},
            seeds=runs.seeds, scale=next((k for k, v in SCALES.items() if v == s), "custom"),
            settings=s,
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        res, plain = r.gain("residual"), r.gain("plain")
        return [
            Check("residual gain within [(1-c)^L, (1+c)^L] for >= 99% of samples, at init and "
                  "in training", r.in_bounds_init >= 0.99 and r.in_bounds_train >= 0.99),
            Check(f"plain gain at L={r.settings.depths[-1]} >= 10x below the residual one and "
                  "falling with L", plain[-1] * 10 <= res[-1] and plain[-1] < plain[0]),
            # equal coverage counts only when the residual arm learned something (0 vs 0 is no test)
            Check("residual D covers at least as many modes as the plain one, and at least one, "
                  "on every mixture",
                  all(v["residual"] >= v["plain"] and v["residual"] > 0 for v in r.modes.values()),
                  kind="evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        depths = r.settings.depths
        res, plain = r.gain("residual"), r.gain("plain")
        return (
            f"residual samples within [(1-c)^L, (1+c)^L]: {100 * r.in_bounds_init:.1f}% at init, "
            f"{100 * r.in_bounds_train:.1f}% during training (worst probe); at L={depths[-1]} "
            f"median gain residual {res[-1]:.3g} vs plain {plain[-1]:.3g} (plain at "
            f"L={depths[0]}: {plain[0]:.3g}); modes covered "
            + ", ".join(f"{m}: residual {r.modes[m]['residual']:.1f} vs plain "
                        f"{r.modes[m]['plain']:.1f}" for m in MIXTURES)
            + f" (mean over {len(r.seeds)} seed(s))."
        )  # fmt: skip

    def numbers(self, r: Result) -> dict[str, float]:
        out = {f"init_{arm}_gain_Lmax": r.init[arm][-1].gain for arm in ARMS}
        for m in MIXTURES:
            for arm in ARMS:
                out[f"{m}_{arm}_modes"] = describe(r.train[m][arm].modes).mean
                out[f"{m}_{arm}_hq"] = describe(r.train[m][arm].hq_frac).mean
        return out

    def tables(self, r: Result) -> list[Table]:
        s = r.settings
        return [
            Table("Backward gain through the discriminator's block stack at initialisation "
                  "(medians over samples, mean over seeds)",
                  ["L", "c (residual)", "(1-c)^L", "(1+c)^L", "residual gain", "within bounds",
                   "c (plain)", "prod c_l (plain)", "plain gain"],
                  [_init_row(d, *(r.init[arm][i] for arm in ARMS)) for i, d in enumerate(s.depths)],
                  f"hidden {s.hidden}, spectral norm on every layer, {s.init_samples} samples of "
                  "the ring; c is the largest branch-Jacobian spectral norm of a sample's blocks."),
            Table("GAN training on the Gaussian mixtures (mean ± std over seeds)",
                  ["mixture / discriminator", "modes covered", "high-quality samples (%)",
                   "final gain", "final c", "final ||dD/dx||", "min within bounds"],
                  [_train_row(f"{m}/{arm}", r.train[m][arm]) for m in MIXTURES for arm in ARMS],
                  f"{s.train_blocks} discriminator blocks, hidden {s.hidden}, {s.steps} steps, "
                  f"batch {s.batch_size}, Adam {s.lr:g} {s.betas}; the generator (2 residual "
                  "blocks) is the same in both arms. 'min within bounds' is over every probe "
                  "during training."),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        if r.scale == "full":
            return []
        return [
            f"{r.scale} scale: {r.settings.steps} GAN steps with {len(r.seeds)} seed(s); mode "
            "statistics of short runs are noisy. MNIST is not trained at any scale here "
            "(the MNIST discriminator/generator are in the zoo, gan_*_mnist)."
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 2, width=5.0, height=3.8)
        _gain_panel(axes[0][0], r)
        ax = axes[0][1]
        for m in MIXTURES:
            for arm in ARMS:
                for j, pr in enumerate(r.train[m][arm].probes):
                    ax.semilogy(pr["step"], pr["input_grad"], "-" if m.startswith("ring") else "--",
                                color=_plot.RESIDUAL if arm == "residual" else _plot.PLAIN,
                                alpha=0.6, label=f"{m}/{arm}" if j == 0 else None)  # fmt: skip
        ax.set(title="discriminator input-gradient norm in training", xlabel="step",
               ylabel="median ||dD/dx||")  # fmt: skip
        ax.legend(fontsize=8)
        _plot.save(fig, outdir / "gan_gradients.png")
        _samples_figure(r, outdir / "gan_samples.png")
        return [
            Figure(
                "gan_gradients.png",
                "Left: median backward gain through L discriminator blocks at initialisation, "
                "residual (blue) inside [(1-c)^L, (1+c)^L] (grey, c measured), plain (orange) "
                "below prod c_l. Right: the discriminator's input-gradient norm during training "
                "(solid: ring, dashed: grid; one line per seed).",
            ),
            Figure(
                "gan_samples.png",
                "Generator samples after training (first seed; black x: mode centres), with a "
                "residual or plain discriminator.",
            ),
        ]


def _training(runs: Runs[Condition]) -> Training:
    keys = ("gain", "c", "input_grad", "in_bounds")
    probes = [{"step": [float(v) for v in r.steps("gain")], **{k: r.curve(k) for k in keys}}
              for r in runs]  # fmt: skip
    first = runs.records[0].get("samples")
    return Training(runs.values("modes"), runs.values("hq_frac"), probes, first)


def _mean(probes: tuple[GainSummary, ...]) -> GainSummary:
    return GainSummary(*np.mean([astuple(p) for p in probes], axis=0).tolist())


def _init_row(depth: int, res: GainSummary, plain: GainSummary) -> list[Any]:
    return [
        depth, round(res.c, 3), f"{max(1 - res.c, 0) ** depth:.3g}", f"{(1 + res.c) ** depth:.3g}",
        f"{res.gain:.3g}", f"{100 * res.in_bounds:.1f}%", f"{plain.c:.3f}", f"{plain.prod_c:.3g}",
        f"{plain.gain:.3g}",
    ]  # fmt: skip


def _train_row(key: str, t: Training) -> list[Any]:
    modes, hq = describe(t.modes), describe(t.hq_frac)
    last = {k: np.mean([pr[k][-1] for pr in t.probes]) for k in ("gain", "c", "input_grad")}
    worst = min(v for pr in t.probes for v in pr["in_bounds"])
    return [
        key, f"{modes.mean:.1f} ± {modes.std:.1f}", f"{100 * hq.mean:.1f} ± {100 * hq.std:.1f}",
        f"{last['gain']:.3g}", f"{last['c']:.3g}", f"{last['input_grad']:.3g}",
        f"{100 * worst:.1f}%" if key.endswith("/residual") else "n/a",  # no bound for plain
    ]  # fmt: skip


def _gain_panel(ax: Any, r: Result) -> None:
    depths, res, plain = list(r.settings.depths), r.init["residual"], r.init["plain"]
    ax.semilogy(depths, r.gain("residual"), "o-", color=_plot.RESIDUAL, label="residual gain")
    ax.semilogy(depths, r.gain("plain"), "o-", color=_plot.PLAIN, label="plain gain")
    ax.semilogy(depths, [(1 + p.c) ** d for p, d in zip(res, depths)], "--",
                color=_plot.REFERENCE, label="(1+c)^L")  # fmt: skip
    ax.semilogy(depths, [max(1 - p.c, 1e-30) ** d for p, d in zip(res, depths)], ":",
                color=_plot.REFERENCE, label="(1-c)^L")  # fmt: skip
    ax.semilogy(depths, [p.prod_c for p in plain], "x--", color=_plot.PLAIN, alpha=0.6,
                label="prod c_l (plain)")  # fmt: skip
    ax.set(title="backward gain through L blocks at init", xlabel="blocks L",
           ylabel="||dD/dh_0|| / ||dD/dh_L||")  # fmt: skip
    ax.legend(fontsize=8)


def _samples_figure(r: Result, path: Path) -> None:
    keys = [(m, arm) for m in MIXTURES for arm in ARMS]
    fig, axes = _plot.subplots(1, len(keys), width=3.2, height=3.2)
    for ax, (m, arm) in zip(axes[0], keys):
        pts, centers = np.asarray(r.train[m][arm].samples), np.asarray(r.centers[m])
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4,
                   color=_plot.RESIDUAL if arm == "residual" else _plot.PLAIN)  # fmt: skip
        ax.scatter(centers[:, 0], centers[:, 1], marker="x", color="black", s=20)
        lim = float(np.abs(centers).max()) + 1.5
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=f"{m}/{arm} D", aspect="equal")
    _plot.save(fig, path)
