"""C10 gan-stability: a residual discriminator keeps its gradient between (1-c)^L and (1+c)^L.

For a stack of L residual blocks ``h_{l+1} = h_l + F_l(h_l)`` with ``||dF_l/dh||_2 <= c`` the
backward gain ``||g^T J|| / ||g||`` of ``J = prod (I + dF_l/dh)`` lies in ``[(1-c)^L, (1+c)^L]``
for every vector ``g`` (each factor's singular values lie in ``[1 - c, 1 + c]``). The plain twin
``h_{l+1} = F_l(h_l)`` has only the upper bound ``prod c_l``. The discriminator's input gradient
is what the generator learns from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import jacrev, vmap
from torch.nn.utils import parametrize

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import summarize
from skiplab.data.gaussians import GaussianMixture, grid_of_gaussians, ring_of_gaussians
from skiplab.models.gan import Discriminator, GANConfig, Generator


def stack_gain(d: Discriminator, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample backward gain through the block stack, branch Jacobian norms and input grads.

    Returns:
        ``gain`` ``(B,)``: ``||dD/dh_0|| / ||dD/dh_L||``; ``c`` ``(B, L)``: spectral norm of
        each block's branch Jacobian at that sample; ``input_grad`` ``(B,)``: ``||dD/dx||``.
    """
    was_training = d.training
    d.eval()  # spectral norm: use the current estimate, no power-iteration update per call
    try:
        with parametrize.cached():  # each normalised weight computed once for all samples
            x = x.detach().requires_grad_(True)
            h0 = d.stem(x)  # (B, H)
            hs, h = [h0], h0
            for block in d.blocks:
                h = block(h)  # residual: h + F(h); plain: F(h)
                hs.append(h)
            h0.retain_grad()
            h.retain_grad()
            d.head(d.final(h)).sum().backward()
            assert h0.grad is not None and h.grad is not None and x.grad is not None
            gain = (h0.grad.norm(dim=1) / h.grad.norm(dim=1).clamp_min(1e-30)).detach()
            cs = []
            for block, hin in zip(d.blocks, hs[:-1]):
                branch: Any = block.branch
                jac = vmap(jacrev(branch))(hin.detach())  # (B, H, H): dF/dh per sample
                # sigma_max(J) = sqrt(lambda_max(J^T J)); eigvalsh is cheaper than an SVD.
                top = torch.linalg.eigvalsh(jac.mT @ jac)[:, -1]
                cs.append(top.clamp_min(0).sqrt())
    finally:
        d.train(was_training)
    return {
        "gain": gain.numpy(),
        "c": torch.stack(cs, dim=1).detach().numpy(),
        "input_grad": x.grad.norm(dim=1).detach().numpy(),
    }


def bounds_hold(gain: np.ndarray, c: np.ndarray, tol: float = 1e-4) -> float:
    """Fraction of samples with ``(1-c)^L <= gain <= (1+c)^L``, ``c`` the sample's largest."""
    cmax, n_blocks = c.max(axis=1), c.shape[1]
    lo = np.clip(1 - cmax, 0, None) ** n_blocks
    hi = (1 + cmax) ** n_blocks
    return float(np.mean((gain >= lo * (1 - tol)) & (gain <= hi * (1 + tol))))


@register_claim
class GANStability(Claim):
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
        "plain one, and at least one, on average over seeds. Fails when (1) or (2) is false; inconclusive when "
        "only (3) misses (the gradient statement holds but training does not show it)."
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

    def run(self, ctx: Context) -> Evidence:
        depths = ctx.pick(tiny=(2, 8), quick=(2, 4, 8, 16), full=(2, 4, 8, 16, 32))
        train_blocks = ctx.pick(tiny=4, quick=6, full=16)
        steps = ctx.pick(tiny=60, quick=1000, full=10000)
        hidden = ctx.pick(tiny=32, quick=64, full=256)
        ev = Evidence(seeds=ctx.seeds)
        init: dict[str, dict[str, list[dict[str, float]]]] = {"residual": {}, "plain": {}}
        for seed in ctx.seeds:
            with ctx.run(f"C10 gradient at init seed {seed}", {"depths": list(depths)}, seed=seed):
                x = ring_of_gaussians().sample(128, torch.Generator().manual_seed(seed))
                for depth in depths:
                    for arm, skip in (("residual", True), ("plain", False)):
                        torch.manual_seed(seed)
                        d = Discriminator(GANConfig(d_blocks=depth, hidden=hidden, skip=skip))
                        p = stack_gain(d, x)
                        c = p["c"]
                        init[arm].setdefault(str(depth), []).append({
                            "gain": float(np.median(p["gain"])),
                            "c": float(np.median(c.max(1))),
                            "c_mean": float(c.mean()),
                            "prod_c": float(np.median(np.prod(c, axis=1))),
                            "in_bounds": bounds_hold(p["gain"], c),
                            "input_grad": float(np.median(p["input_grad"])),
                        })  # fmt: skip
        ev.series["init"] = init
        ev.series["depths"] = list(depths)

        mixtures = (ring_of_gaussians(), grid_of_gaussians())
        train: dict[str, dict[str, list[Any]]] = {}
        for mixture in mixtures:
            for arm, skip in (("residual", True), ("plain", False)):
                key = f"{mixture.name}/{arm}"
                train[key] = {"probes": [], "stats": []}
                for seed in ctx.seeds:
                    cfg = GANConfig(d_blocks=train_blocks, hidden=hidden, skip=skip)
                    gen_cfg = GANConfig(d_blocks=train_blocks, hidden=hidden, skip=True)
                    run_cfg = {"mixture": mixture.name, "arm": arm, "blocks": train_blocks,
                               "hidden": hidden, "steps": steps}  # fmt: skip
                    with ctx.run(f"C10 {key} seed {seed}", run_cfg, seed=seed) as run_id:
                        torch.manual_seed(seed)
                        d, g = Discriminator(cfg), Generator(gen_cfg)
                        out = train_gan(mixture, d, g, steps, seed, max(steps // 5, 1))
                        ctx.store.finish_run(run_id, "completed", results=out["stats"])
                    train[key]["probes"].append(out["probes"])
                    train[key]["stats"].append(out["stats"])
                    if seed == ctx.seeds[0]:
                        ev.series.setdefault("samples", {})[key] = out["samples"][:1000].tolist()
        ev.series["train"] = train
        ev.series["centers"] = {m.name: m.centers.tolist() for m in mixtures}

        rows = []
        for depth in depths:
            res_init, plain_init = init["residual"][str(depth)], init["plain"][str(depth)]
            c_res = float(np.mean([e["c"] for e in res_init]))
            rows.append([
                depth, round(c_res, 3), f"{max(1 - c_res, 0) ** depth:.3g}",
                f"{(1 + c_res) ** depth:.3g}",
                f"{np.mean([e['gain'] for e in res_init]):.3g}",
                f"{100 * np.mean([e['in_bounds'] for e in res_init]):.1f}%",
                f"{np.mean([e['c'] for e in plain_init]):.3f}",
                f"{np.mean([e['prod_c'] for e in plain_init]):.3g}",
                f"{np.mean([e['gain'] for e in plain_init]):.3g}",
            ])  # fmt: skip
        ev.tables.append(
            Table(
                "Backward gain through the discriminator's block stack at initialisation "
                "(medians over samples, mean over seeds)",
                [
                    "L",
                    "c (residual)",
                    "(1-c)^L",
                    "(1+c)^L",
                    "residual gain",
                    "within bounds",
                    "c (plain)",
                    "prod c_l (plain)",
                    "plain gain",
                ],
                rows,
                f"hidden {hidden}, spectral norm on every layer, 128 samples of the ring; c is "
                "the largest branch-Jacobian spectral norm of a sample's blocks.",
            )
        )
        trows = []
        for key, val in train.items():
            stats = val["stats"]
            modes = summarize([s["modes"] for s in stats])
            hq = summarize([s["hq_frac"] for s in stats])
            last = [pr[-1] for pr in val["probes"]]
            trows.append([
                key, f"{modes.mean:.1f} ± {modes.std:.1f}", f"{100 * hq.mean:.1f} ± {100 * hq.std:.1f}",
                f"{np.mean([q['gain'] for q in last]):.3g}", f"{np.mean([q['c'] for q in last]):.3g}",
                f"{np.mean([q['input_grad'] for q in last]):.3g}",
                # the residual bounds say nothing about a plain stack
                f"{100 * min(q['in_bounds'] for pr in val['probes'] for q in pr):.1f}%"
                if key.endswith("/residual") else "n/a",
            ])  # fmt: skip
            name = key.replace("/", "_")
            ev.numbers[f"{name}_modes"] = modes.mean
            ev.numbers[f"{name}_hq"] = hq.mean
        ev.tables.append(
            Table(
                "GAN training on the Gaussian mixtures (mean ± std over seeds)",
                [
                    "mixture / discriminator",
                    "modes covered",
                    "high-quality samples (%)",
                    "final gain",
                    "final c",
                    "final ||dD/dx||",
                    "min within bounds",
                ],
                trows,
                f"{train_blocks} discriminator blocks, hidden {hidden}, {steps} steps, batch "
                "256, Adam 1e-3 (0.5, 0.9); the generator (2 residual blocks) is the same in "
                "both arms. 'min within bounds' is over every probe during training.",
            )
        )
        deepest = str(depths[-1])
        ev.numbers["init_residual_gain_Lmax"] = float(
            np.mean([e["gain"] for e in init["residual"][deepest]])
        )
        ev.numbers["init_plain_gain_Lmax"] = float(
            np.mean([e["gain"] for e in init["plain"][deepest]])
        )
        if ctx.scale != "full":
            ev.notes.append(
                f"{ctx.scale} scale: {steps} GAN steps with {len(ctx.seeds)} seed(s); mode "
                "statistics of short runs are noisy. MNIST is not trained at any scale here "
                "(the MNIST discriminator/generator are in the zoo, gan_*_mnist)."
            )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        init, train = evidence.series["init"], evidence.series["train"]
        depths = [str(d) for d in evidence.series["depths"]]
        in_init = min(e["in_bounds"] for d in depths for e in init["residual"][d])
        in_train = min(
            q["in_bounds"]
            for k, v in train.items()
            if k.endswith("/residual")
            for pr in v["probes"]
            for q in pr
        )
        bounded = in_init >= 0.99 and in_train >= 0.99
        res_deep = float(np.mean([e["gain"] for e in init["residual"][depths[-1]]]))
        plain_gains = [float(np.mean([e["gain"] for e in init["plain"][d]])) for d in depths]
        shrinks = plain_gains[-1] * 10 <= res_deep and plain_gains[-1] < plain_gains[0]
        coverage: dict[str, dict[str, float]] = {}
        for key in train:
            mixture, arm = key.split("/")
            coverage.setdefault(mixture, {})[arm] = float(
                np.mean([s["modes"] for s in train[key]["stats"]])
            )
        # Equal coverage counts only when the residual arm learned something (0 vs 0 is no test).
        covers = all(v["residual"] >= v["plain"] and v["residual"] > 0 for v in coverage.values())
        detail = (
            f"residual samples within [(1-c)^L, (1+c)^L]: {100 * in_init:.1f}% at init, "
            f"{100 * in_train:.1f}% during training (worst probe); at L={depths[-1]} median "
            f"gain residual {res_deep:.3g} vs plain {plain_gains[-1]:.3g} (plain at "
            f"L={depths[0]}: {plain_gains[0]:.3g}); modes covered "
            + ", ".join(
                f"{m}: residual {v['residual']:.1f} vs plain {v['plain']:.1f}"
                for m, v in coverage.items()
            )
            + f" (mean over {len(evidence.seeds)} seed(s))."
        )
        if not bounded or not shrinks:
            missing = [n for n, ok in (("bounds", bounded), ("plain shrinks", shrinks)) if not ok]
            return Verdict("fails", f"not observed: {', '.join(missing)}. {detail}")
        if not covers:
            return Verdict(
                "inconclusive",
                "gradient bounds hold, but the residual discriminator does not cover at least "
                f"as many modes (and at least one) on every mixture. {detail}",
            )
        return Verdict("holds", detail)

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        init, depths = evidence.series["init"], evidence.series["depths"]
        fig, axes = _plot.subplots(1, 2, width=5.0, height=3.8)
        ax = axes[0][0]
        res_gain = [np.mean([e["gain"] for e in init["residual"][str(d)]]) for d in depths]
        plain_gain = [np.mean([e["gain"] for e in init["plain"][str(d)]]) for d in depths]
        c = [np.mean([e["c"] for e in init["residual"][str(d)]]) for d in depths]
        prod_c = [np.mean([e["prod_c"] for e in init["plain"][str(d)]]) for d in depths]
        ax.semilogy(depths, res_gain, "o-", color=_plot.RESIDUAL, label="residual gain")
        ax.semilogy(depths, plain_gain, "o-", color=_plot.PLAIN, label="plain gain")
        ax.semilogy(depths, [(1 + ci) ** d for ci, d in zip(c, depths)], "--",
                    color=_plot.REFERENCE, label="(1+c)^L")  # fmt: skip
        ax.semilogy(depths, [max(1 - ci, 1e-30) ** d for ci, d in zip(c, depths)], ":",
                    color=_plot.REFERENCE, label="(1-c)^L")  # fmt: skip
        ax.semilogy(depths, prod_c, "x--", color=_plot.PLAIN, alpha=0.6, label="prod c_l (plain)")
        ax.set(title="backward gain through L blocks at init", xlabel="blocks L",
               ylabel="||dD/dh_0|| / ||dD/dh_L||")  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][1]
        for key, val in evidence.series["train"].items():
            arm = key.split("/")[1]
            style = "-" if key.startswith("ring") else "--"
            for j, pr in enumerate(val["probes"]):
                ax.semilogy([q["step"] for q in pr], [q["input_grad"] for q in pr], style,
                            color=_plot.RESIDUAL if arm == "residual" else _plot.PLAIN, alpha=0.6,
                            label=key if j == 0 else None)  # fmt: skip
        ax.set(title="discriminator input-gradient norm in training", xlabel="step",
               ylabel="median ||dD/dx||")  # fmt: skip
        ax.legend(fontsize=8)
        _plot.save(fig, outdir / "gan_gradients.png")

        samples = evidence.series["samples"]
        keys = list(samples)
        fig, axes = _plot.subplots(1, len(keys), width=3.2, height=3.2)
        for ax, key in zip(axes[0], keys):
            pts = np.asarray(samples[key])
            centers = np.asarray(evidence.series["centers"][key.split("/")[0]])
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4,
                       color=_plot.RESIDUAL if key.endswith("residual") else _plot.PLAIN)  # fmt: skip
            ax.scatter(centers[:, 0], centers[:, 1], marker="x", color="black", s=20)
            lim = float(np.abs(centers).max()) + 1.5
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=f"{key} D", aspect="equal")
        _plot.save(fig, outdir / "gan_samples.png")
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


def train_gan(
    mixture: GaussianMixture, d: Discriminator, g: Generator, steps: int, seed: int, every: int
) -> dict[str, Any]:
    """Non-saturating GAN (Goodfellow et al. 2014) with Adam, probing D's gradients every
    ``every`` steps; returns the probes, 2,000 samples and their mode statistics."""
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.9))
    gen = torch.Generator().manual_seed(seed)
    batch, latent = 256, g.cfg.latent_dim
    probes = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            p = stack_gain(d, mixture.sample(64, gen))
            d.zero_grad()
            probes.append({
                "step": step, "gain": float(np.median(p["gain"])),
                "c": float(np.median(p["c"].max(1))),
                "input_grad": float(np.median(p["input_grad"])),
                "in_bounds": bounds_hold(p["gain"], p["c"]),
            })  # fmt: skip
        if step == steps:
            break
        real = mixture.sample(batch, gen)
        fake = g(torch.randn(batch, latent, generator=gen))
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(fake)).mean()  # non-saturating generator loss
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    with torch.no_grad():
        samples = g(torch.randn(2000, latent, generator=gen))
    return {"probes": probes, "samples": samples, "stats": mixture.mode_stats(samples)}
