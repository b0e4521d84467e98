"""C10 gan-stability: a residual discriminator keeps its gradient between (1-c)^L and (1+c)^L.

For a stack of L residual blocks ``h_{l+1} = h_l + F_l(h_l)`` with ``||dF_l/dh||_2 <= c`` the
backward gain ``||g^T J|| / ||g||`` of ``J = prod (I + dF_l/dh)`` lies in ``[(1-c)^L, (1+c)^L]``
for every vector ``g`` (each factor's singular values lie in ``[1 - c, 1 + c]``). The plain twin
``h_{l+1} = F_l(h_l)`` has only the upper bound ``prod c_l``. The discriminator's input gradient
is what the generator learns from; the probe is :mod:`skiplab.diagnostics.gain`. The training
half compares GANs that differ only in the discriminator's skips (one seed: the same generator
init and the same data and noise), paired over seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, astuple, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference
from skiplab.data.gaussians import GaussianMixture, grid_of_gaussians, ring_of_gaussians
from skiplab.diagnostics.gain import GainSummary, gain_summary
from skiplab.models.gan import Discriminator, GANConfig, Generator

INIT = "init"  # the stack at initialisation, on samples of the ring
MIXTURES = {"ring8": ring_of_gaussians, "grid25": grid_of_gaussians}  # GAN training
ARMS = ("residual", "plain")
LATE = 0.75  # the mode statistics of a run: the mean of its evaluations from 75% of training on


@dataclass(frozen=True)
class Settings:
    depths: tuple[int, ...] = (2, 4, 8, 16)  # blocks L of the stacks probed at init
    mixtures: tuple[str, ...] = ("ring8",)  # trained on (the 25-grid needs longer: full scale)
    train_blocks: int = 4  # discriminator blocks in GAN training: plain gain ~1e-4 at init
    steps: int = 3000  # GAN steps (one D step, one G step each): the ring's 8 modes by ~2500
    hidden: int = 32  # width of every discriminator block (a step's cost is per layer)
    g_hidden: int = 64  # width of the generator's 2 residual blocks
    batch_size: int = 128  # real and fake samples per step
    lr: float = 2e-3  # Adam for both networks (1e-3 covered the ring later, 5e-3 collapsed)
    betas: tuple[float, float] = (0.5, 0.9)  # beta1 = 0.5 as in DCGAN (Radford et al. 2016)
    decay: bool = True  # lr linearly to 0 (Gulrajani et al.'s ResNet GAN): ends on 8 modes, not 4
    init_samples: int = 128  # ring samples the stack is probed at, at init
    probe_samples: int = 64  # samples per probe during training
    probes: int = 5  # probes spread over training (plus the last step)
    evals: int = 12  # mode statistics this many times over training (and at step 0)
    samples: int = 2500  # generator samples per evaluation (VEEGAN's 2500)


SCALES = {
    "tiny": Settings(depths=(2, 8), train_blocks=4, steps=60, evals=4, samples=1000),
    "quick": Settings(),
    "full": Settings(depths=(2, 4, 8, 16, 32), mixtures=("ring8", "grid25"), train_blocks=16,
                     steps=20000, hidden=128, g_hidden=128, lr=1e-3, batch_size=256),
}  # fmt: skip


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


def _modes(
    run: Run, g: Generator, mixture: GaussianMixture, n: int, gen: torch.Generator
) -> tuple[dict[str, Any], torch.Tensor]:
    """Mode statistics of ``n`` generator samples (and the samples)."""
    with torch.no_grad():
        samples = g(run.put(torch.randn(n, g.cfg.latent_dim, generator=gen))).cpu()
    stats = mixture.mode_stats(samples)
    # VEEGAN's count: a mode is captured by a single high-quality sample nearest to it
    stats["modes_any"] = mixture.mode_stats(samples, min_share=0.5 / n)["modes"]
    return stats, samples


def _decay(s: Settings, step: int) -> float:
    return max(0.0, 1 - step / s.steps) if s.decay else 1.0


def _train(run: Run, s: Settings, mixture: GaussianMixture, skip: bool) -> dict[str, Any]:
    """Non-saturating GAN (Goodfellow et al. 2014) with Adam, probing D's gradients
    ``s.probes`` times and the generator's modes ``s.evals`` times; its last 1,000 samples."""
    cfg = GANConfig(d_blocks=s.train_blocks, hidden=s.hidden, skip=skip)
    d = run.build(lambda: Discriminator(cfg))
    g = run.build(Generator(replace(cfg, skip=True, hidden=s.g_hidden)))  # after D, not reseeded
    opt_d = torch.optim.Adam(d.parameters(), lr=s.lr, betas=s.betas)
    opt_g = torch.optim.Adam(g.parameters(), lr=s.lr, betas=s.betas)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, partial(_decay, s)) for o in (opt_d, opt_g)]
    gen, evalgen, latent = run.generator(0), run.generator(1), cfg.latent_dim
    every, every_eval = max(s.steps // s.probes, 1), max(s.steps // s.evals, 1)
    evals: list[tuple[int, dict[str, Any]]] = []
    for step in range(s.steps + 1):
        if step % every == 0 or step == s.steps:
            run.log(step, **asdict(gain_summary(d, run.put(mixture.sample(s.probe_samples, gen)))))
        if step % every_eval == 0 or step == s.steps:
            stats, samples = _modes(run, g, mixture, s.samples, evalgen)
            run.log(step, **stats)
            evals.append((step, stats))
        if step == s.steps:
            break
        real = run.put(mixture.sample(s.batch_size, gen))
        fake = g(run.put(torch.randn(s.batch_size, latent, generator=gen)))
        logits = d(torch.cat([real, fake.detach()]))  # one pass: one spectral-norm update
        loss_d = F.softplus(-logits[: len(real)]).mean() + F.softplus(logits[len(real) :]).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(fake)).mean()  # non-saturating generator loss
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for schedule in schedules:
            schedule.step()
        run.log(step, loss_d=loss_d.item(), loss_g=loss_g.item())
    first, late = evals[0][1], [e for step, e in evals if step >= LATE * s.steps]
    ends = {k: float(np.mean([e[k] for e in late])) for k in ("modes", "modes_any", "hq_frac")}
    return {**ends, "init_modes": first["modes"], "init_hq_frac": first["hq_frac"],
            "samples": samples[:1000].tolist()}  # fmt: skip


@dataclass
class Training:
    """One mixture and discriminator over seeds (in seed order, so the arms pair up)."""

    modes: list[float]  # modes covered, mean of the evaluations in the last quarter
    modes_any: list[float]  # modes with at least one high-quality sample (VEEGAN's count)
    hq_frac: list[float]
    init_modes: list[float]  # the generator at step 0: what chance gives
    init_hq: list[float]
    probes: list[dict[str, list[float]]]  # per seed: step, gain, c, input_grad, in_bounds
    evals: list[dict[str, list[float]]]  # per seed: step, modes, hq_frac
    samples: list[list[float]]  # the first seed's final generator samples, (1000, 2)


@dataclass
class Result(Summary):
    init: dict[str, list[GainSummary]]  # arm -> per L: the stack at init, mean over seeds
    log_ratio: list[float]  # per seed: log10(residual gain / plain gain) at the largest L
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

    def effect(self, mixture: str, key: str = "modes") -> Stat:
        """Residual minus plain of ``key``, paired over seeds (t-interval)."""
        arms = self.train[mixture]
        return difference(getattr(arms["residual"], key), getattr(arms["plain"], key), paired=True)

    def num_modes(self, mixture: str) -> int:
        return len(self.centers[mixture])


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
        "and prod_l c_l. Then non-saturating GAN training on the ring of 8 Gaussians (and the "
        "grid of 25 at full scale; Adam, learning rate decayed linearly to 0) with the same "
        "residual generator and a residual or plain discriminator, paired by seed (same "
        "generator init, data and noise): the gain, c and the input-gradient norm during "
        "training; modes covered (>= 20% of a fair share of "
        "2,500 samples within 3 std, mean of the evaluations in the last quarter of training) "
        "and the high-quality fraction, against the untrained generator."
    )
    criterion = (
        "Fails when (1) fewer than 99% of the residual discriminator's samples lie within "
        "[(1-c)^L, (1+c)^L] at init or in training, or (2) at init the plain stack's median "
        "gain at the largest L is not 10x below the residual one's or does not fall with L, or "
        "(3) the residual discriminator covers fewer modes than the plain one with a paired 95% "
        "interval below 0. Inconclusive when the positive control fails (the residual GAN "
        "covers at most half of a mixture's modes: too short to train) or when the interval of "
        "the mode difference does not lie above 0 (training does not separate the arms). Holds "
        "otherwise."
    )
    math = (
        "J = prod_l (I + J_l), ||J_l||_2 <= c:  sigma_min(I + J_l) >= 1 - c, "
        "sigma_max(I + J_l) <= 1 + c,\n"
        "so (1 - c)^L ||g|| <= ||g^T J|| <= (1 + c)^L ||g|| for every g.\n"
        "Plain: J = prod_l J_l,  ||g^T J|| <= prod_l c_l ||g|| <= c^L ||g||.\n"
        "Spectral norm (Miyato et al. 2018) keeps every weight's norm <= 1 and LeakyReLU's slope "
        "is <= 1, so c <= 1 per layer: the plain stack can only shrink the gradient.\n"
        "Training effect: mean_i (modes_res,i - modes_plain,i) over seeds i, paired t-interval."
    )
    references = (
        "Goodfellow et al. 2014, Generative Adversarial Nets",
        "Gulrajani et al. 2017, Improved Training of Wasserstein GANs (residual discriminators)",
        "Miyato et al. 2018, Spectral Normalization for Generative Adversarial Networks",
        "Metz et al. 2017, Unrolled GANs (ring of 8); Srivastava et al. 2017, VEEGAN (grid of 25)",
    )
    version = 2  # ring8 at quick, 3000 steps of a 4-block D, lr decay, late mode statistics
    default_seeds = {"tiny": 2, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(t, arm) for t in (INIT, *s.mixtures) for arm in ARMS]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.task == INIT:  # about 1 CPU-s for L = 2..16
            return sum(s.depths) / 30
        return s.steps * (2 * s.train_blocks + 5) / 3000  # per-layer overhead dominates a step

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        init = {arm: [[GainSummary(**r.get("by_depth")[str(d)]) for d in s.depths]
                      for r in runs.where(task=INIT, arm=arm)] for arm in ARMS}  # fmt: skip
        train = {m: {arm: _training(runs.where(task=m, arm=arm)) for arm in ARMS}
                 for m in s.mixtures}  # fmt: skip
        return Result(
            init={arm: [_mean(seeds) for seeds in zip(*init[arm])] for arm in ARMS},
            log_ratio=[math.log10(res[-1].gain / max(pl[-1].gain, 1e-300))
                       for res, pl in zip(init["residual"], init["plain"])],
            train=train,
            centers={m: MIXTURES[m]().centers.tolist() for m in s.mixtures},
            in_bounds_init=min(p.in_bounds for probes in init["residual"] for p in probes),
            in_bounds_train=min(v for arms in train.values() for pr in arms["residual"].probes
                                for v in pr["in_bounds"]),
            modes={m: {arm: float(np.mean(train[m][arm].modes)) for arm in ARMS} for m in train},
            seeds=runs.seeds, scale=next((k for k, v in SCALES.items() if v == s), "custom"),
            settings=s,
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        res, plain = r.gain("residual"), r.gain("plain")
        effects = {m: r.effect(m) for m in r.train}
        ratio = describe(r.log_ratio)
        control = {m: r.modes[m]["residual"] for m in r.train}
        control_ok = all(v > r.num_modes(m) / 2 for m, v in control.items())
        shown = "; ".join(f"{m}: residual - plain {e.interval()}" for m, e in effects.items())
        return [
            Check("residual gain within [(1-c)^L, (1+c)^L] for >= 99% of samples, at init and "
                  "in training", r.in_bounds_init >= 0.99 and r.in_bounds_train >= 0.99,
                  f"{100 * r.in_bounds_init:.1f}% at init, {100 * r.in_bounds_train:.1f}% worst "
                  "probe in training"),
            Check(f"plain gain at L={r.settings.depths[-1]} >= 10x below the residual one and "
                  "falling with L", plain[-1] * 10 <= res[-1] and plain[-1] < plain[0],
                  f"log10(residual / plain) {ratio.interval()} over seeds"),
            Check("the residual-D GAN covers most modes of every mixture (mean over seeds)",
                  control_ok, ", ".join(f"{m}: {v:.1f} of {r.num_modes(m)}"
                                        for m, v in control.items()), "control"),
            Check("the residual D covers no fewer modes (the paired interval is not below 0)",
                  all(not e.hi < 0 for e in effects.values()), shown),
            Check("the residual D covers more modes: the paired 95% interval lies above 0 on "
                  "every mixture", all(e.lo > 0 for e in effects.values()), shown, "evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        depths = r.settings.depths
        res, plain = r.gain("residual"), r.gain("plain")
        return (
            f"residual samples within [(1-c)^L, (1+c)^L]: {100 * r.in_bounds_init:.1f}% at init, "
            f"{100 * r.in_bounds_train:.1f}% during training (worst probe); at L={depths[-1]} "
            f"median gain residual {res[-1]:.3g} vs plain {plain[-1]:.3g} (plain at "
            f"L={depths[0]}: {plain[0]:.3g}); modes covered after {r.settings.steps} steps "
            + ", ".join(f"{m}: residual {r.modes[m]['residual']:.1f} vs plain "
                        f"{r.modes[m]['plain']:.1f} of {r.num_modes(m)} (untrained generator "
                        f"{np.mean(r.train[m]['residual'].init_modes):.1f}), residual - plain "
                        f"{r.effect(m).interval()}" for m in r.train)
            + f" (paired over {len(r.seeds)} seeds)."
        )  # fmt: skip

    def numbers(self, r: Result) -> dict[str, float]:
        out = {f"init_{arm}_gain_Lmax": r.init[arm][-1].gain for arm in ARMS}
        for m, arms in r.train.items():
            for arm, t in arms.items():
                out[f"{m}_{arm}_modes"] = describe(t.modes).mean
                out[f"{m}_{arm}_modes_any"] = describe(t.modes_any).mean
                out[f"{m}_{arm}_hq"] = describe(t.hq_frac).mean
                out[f"{m}_{arm}_init_modes"] = describe(t.init_modes).mean
            e = r.effect(m)
            out[f"{m}_modes_diff"], out[f"{m}_modes_diff_lo"], out[f"{m}_modes_diff_hi"] = (
                e.mean, e.lo, e.hi)  # fmt: skip
        return out

    def tables(self, r: Result) -> list[Table]:
        s = r.settings
        effects = [[m, key, r.effect(m, key).interval()] for m in r.train
                   for key in ("modes", "modes_any", "hq_frac")]  # fmt: skip
        return [
            Table("Backward gain through the discriminator's block stack at initialisation "
                  "(medians over samples, mean over seeds)",
                  ["L", "c (residual)", "(1-c)^L", "(1+c)^L", "residual gain", "within bounds",
                   "c (plain)", "prod c_l (plain)", "plain gain"],
                  [_init_row(d, *(r.init[arm][i] for arm in ARMS)) for i, d in enumerate(s.depths)],
                  f"hidden {s.hidden}, spectral norm on every layer, {s.init_samples} samples of "
                  "the ring; c is the largest branch-Jacobian spectral norm of a sample's blocks."),
            Table("GAN training on the Gaussian mixtures (mean ± std over seeds)",
                  ["mixture / discriminator", "modes covered", "modes (VEEGAN count)",
                   "high-quality samples (%)", "untrained G: modes / HQ (%)", "final gain",
                   "final c", "final ||dD/dx||", "min within bounds"],
                  [_train_row(f"{m}/{arm}", r.train[m][arm]) for m in r.train for arm in ARMS],
                  f"{s.train_blocks} discriminator blocks of width {s.hidden}, generator of "
                  f"width {s.g_hidden} (2 residual blocks, the same in both arms), {s.steps} "
                  f"steps, batch {s.batch_size}, Adam {s.lr:g} {s.betas}. Modes and HQ: mean of "
                  f"the evaluations from {LATE:.0%} of training on, {s.samples} samples each. "
                  "'min within bounds' is over every probe during training."),
            Table("Training effect: residual minus plain discriminator, paired over seeds",
                  ["mixture", "measure", "difference [95% CI]"], effects),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        out = [] if r.scale == "full" else [
            f"{r.scale} scale: {r.settings.steps} GAN steps with {len(r.seeds)} seed(s) on "
            f"{', '.join(r.train)} (the grid of 25 is trained at full scale). Gulrajani et "
            "al.'s toy runs take 100,000 generator steps: a few thousand are early training. "
            "MNIST is not trained at any scale here (the MNIST discriminator/generator are in "
            "the zoo, gan_*_mnist)."
        ]  # fmt: skip
        for m, arms in r.train.items():
            res, plain = (np.mean([pr["input_grad"][-1] for pr in t.probes]) for t in arms.values())
            out.append(
                f"{m}: the plain discriminator's input gradient ends {res / plain:.3g}x smaller "
                f"(median ||dD/dx|| {plain:.3g} vs {res:.3g}); Adam's update (up to its eps) "
                "does not change when every gradient is scaled by one factor, so a uniformly "
                "smaller gradient alone does not slow the generator."
            )
            if min(r.modes[m].values()) >= r.num_modes(m) - 1:
                out.append(
                    f"{m}: both arms cover at least {r.num_modes(m) - 1} of {r.num_modes(m)} "
                    "modes: the count is at its ceiling and cannot separate them here."
                )
        return out

    def literature(self, r: Result) -> list[Comparison]:
        ring = r.train.get("ring8")
        plain = r.modes.get("ring8", {}).get("plain", math.nan)
        res, pl = r.gain("residual"), r.gain("plain")
        bounded = all(p.gain <= p.prod_c * 1.0001 for p in r.init["plain"])
        return [
            Comparison(
                "Gulrajani et al. 2017, official code gan_toy.py (8 and 25 Gaussians)",
                "the toy mixtures are learned with a plain critic: 3 ReLU layers of width 512 "
                "(WGAN-GP, 100,000 generator steps of 5 critic steps, batch 256)",
                f"plain SN discriminator of {r.settings.train_blocks} blocks after "
                f"{r.settings.steps} steps: {plain:.1f} of 8 ring modes (residual "
                f"{r.modes.get('ring8', {}).get('residual', math.nan):.1f})",
                None if ring is None else bool(plain > 4),
            ),
            Comparison(
                "Gulrajani et al. 2017, official code gan_cifar_resnet.py (ResNet critic)",
                "pre-activation residual blocks, x + conv(relu(conv(relu(x)))), with identity "
                "shortcuts and no normalisation in the critic",
                "the same block on vectors, with spectral norm in place of the gradient "
                f"penalty: residual gain {res[-1]:.3g} at L={r.settings.depths[-1]}, inside "
                f"[(1-c)^L, (1+c)^L] for {100 * r.in_bounds_init:.1f}% of samples",
                None,  # an architecture, not a measurement
            ),
            Comparison(
                "Miyato et al. 2018 (spectral normalisation, every D layer 1-Lipschitz)",
                "each normalised weight has spectral norm 1, so a plain stack's Jacobian norm "
                "is at most prod_l c_l <= 1",
                f"plain gain {pl[-1]:.3g} at L={r.settings.depths[-1]} (L={r.settings.depths[0]}:"
                f" {pl[0]:.3g}), at most prod c_l at every L: {bounded}",
                bounded,
            ),
            Comparison(
                "Srivastava et al. 2017, VEEGAN (project page: metric definitions)",
                "a sample is high quality within 3 std of its nearest mode; a mode is captured "
                "when it is nearest to at least one high-quality sample (2,500 samples, 5 runs)",
                "skiplab's count asks for >= 20% of a fair share (stricter); VEEGAN's count: "
                + ", ".join(f"{m} residual {describe(a['residual'].modes_any).mean:.1f}, plain "
                            f"{describe(a['plain'].modes_any).mean:.1f}"
                            for m, a in r.train.items()),
                None,  # a definition, not a result
            ),
        ]  # fmt: skip

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=5.0, height=3.8)
        _gain_panel(axes[0][0], r)
        _training_panel(axes[0][1], r, "probes", "input_grad", "median ||dD/dx||")
        _modes_panel(axes[0][2], r)
        axes[0][1].set(title="discriminator input-gradient norm in training", yscale="log")
        _plot.save(fig, outdir / "gan_gradients.png")
        _samples_figure(r, outdir / "gan_samples.png")
        return [
            Figure(
                "gan_gradients.png",
                "Left: median backward gain through L discriminator blocks at initialisation, "
                "residual (blue) inside [(1-c)^L, (1+c)^L] (grey, c measured), plain (orange) "
                "below prod c_l. Middle: the discriminator's input-gradient norm during "
                "training; right: modes covered by the generator during training (solid: ring, "
                "dashed: grid; one line per seed; dotted: half of the modes, the positive "
                "control's bar).",
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
    evals = [{"step": [float(v) for v in r.steps("modes")], "modes": r.curve("modes"),
              "hq_frac": r.curve("hq_frac")} for r in runs]  # fmt: skip
    first = runs.records[0].get("samples")
    return Training(
        runs.values("modes"), runs.values("modes_any"), runs.values("hq_frac"),
        runs.values("init_modes"), runs.values("init_hq_frac"), probes, evals, first,
    )  # fmt: skip


def _mean(probes: tuple[GainSummary, ...]) -> GainSummary:
    return GainSummary(*np.mean([astuple(p) for p in probes], axis=0).tolist())


def _init_row(depth: int, res: GainSummary, plain: GainSummary) -> list[Any]:
    return [
        depth, round(res.c, 3), f"{max(1 - res.c, 0) ** depth:.3g}", f"{(1 + res.c) ** depth:.3g}",
        f"{res.gain:.3g}", f"{100 * res.in_bounds:.1f}%", f"{plain.c:.3f}", f"{plain.prod_c:.3g}",
        f"{plain.gain:.3g}",
    ]  # fmt: skip


def _train_row(key: str, t: Training) -> list[Any]:
    modes, anym, hq = describe(t.modes), describe(t.modes_any), describe(t.hq_frac)
    last = {k: np.mean([pr[k][-1] for pr in t.probes]) for k in ("gain", "c", "input_grad")}
    worst = min(v for pr in t.probes for v in pr["in_bounds"])
    return [
        key, f"{modes.mean:.1f} ± {modes.std:.1f}", f"{anym.mean:.1f} ± {anym.std:.1f}",
        f"{100 * hq.mean:.1f} ± {100 * hq.std:.1f}",
        f"{np.mean(t.init_modes):.1f} / {100 * np.mean(t.init_hq):.1f}",
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


def _training_panel(ax: Any, r: Result, field: str, key: str, ylabel: str) -> None:
    for m, arms in r.train.items():
        for arm, t in arms.items():
            for j, pr in enumerate(getattr(t, field)):
                ax.plot(pr["step"], pr[key], "-" if m.startswith("ring") else "--",
                        color=_plot.RESIDUAL if arm == "residual" else _plot.PLAIN,
                        alpha=0.6, label=f"{m}/{arm}" if j == 0 else None)  # fmt: skip
    ax.set(xlabel="step", ylabel=ylabel)
    ax.legend(fontsize=8)


def _modes_panel(ax: Any, r: Result) -> None:
    _training_panel(ax, r, "evals", "modes", "modes covered")
    top = max(r.num_modes(m) for m in r.train)
    ax.set(title="modes covered in training (step 0: untrained G)", ylim=(-0.3, top + 0.5))
    for m in r.train:  # the positive control asks for more than half of them
        ax.axhline(r.num_modes(m) / 2, color=_plot.REFERENCE, lw=0.8, ls=":")
    if not any(v for arms in r.train.values() for t in arms.values() for e in t.evals
               for v in e["modes"]):  # fmt: skip
        ax.text(0.5, 0.5, "no mode covered: too few steps", transform=ax.transAxes, ha="center")


def _samples_figure(r: Result, path: Path) -> None:
    keys = [(m, arm) for m in r.train for arm in ARMS]
    fig, axes = _plot.subplots(1, len(keys), width=3.2, height=3.2)
    for ax, (m, arm) in zip(axes[0], keys):
        pts, centers = np.asarray(r.train[m][arm].samples), np.asarray(r.centers[m])
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4,
                   color=_plot.RESIDUAL if arm == "residual" else _plot.PLAIN)  # fmt: skip
        ax.scatter(centers[:, 0], centers[:, 1], marker="x", color="black", s=20)
        lim = float(np.abs(centers).max()) + 1.5
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=f"{m}/{arm} D", aspect="equal")
    _plot.save(fig, path)
