"""C17 disulfide-staple: a long-range staple constrains a chain's conformations.

Metropolis Monte Carlo of a self-avoiding walk on the square lattice (an athermal polymer:
every self-avoiding conformation has the same weight), with and without a *staple* that holds
two distant residues in contact, as a disulfide bond does in a protein. The chain itself is
:mod:`skiplab.data.lattice_chain`; this module runs one staged chain per seed and compares the
free and the stapled ensembles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, RunRecord, Runs
from skiplab.claims._stats import clearly_greater, describe, fmt_values
from skiplab.data.lattice_chain import free_entropy, staged_stapling

ENSEMBLES = ("free", "stapled")
STATISTICS = ("rg_mean", "rg_std", "end_mean", "acceptance", "tau_rg")


@dataclass(frozen=True)
class Settings:
    n: int = 64  # residues
    staple: tuple[int, int] = (8, 55)  # a 47-bond loop; j - i odd, so a contact is possible
    reaches: tuple[int, ...] = (21, 13, 9, 5, 3, 1)  # odd; each stage keeps 5-58% (measured)
    sweeps: int = 2000  # per stage: ~35 tau(Rg) of the stapled loop (tau ~56 sweeps measured)
    burn: int = 200  # sweeps discarded at the start of each stage (~3.5 tau of the loop)


SCALES = {
    "tiny": Settings(n=32, staple=(4, 27), reaches=(9, 5, 3, 1), sweeps=600, burn=60),
    "quick": Settings(),
    "full": Settings(n=100, staple=(10, 89), reaches=(31, 21, 15, 11, 9, 7, 5, 3, 1),
                     sweeps=40000, burn=4000),
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    protocol: str = "staged"  # the free chain, then restraints tightened stage by stage


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """One chain through every stage; the free and the stapled ensemble's statistics."""

    def log(stage: int, sweep: int, obs: tuple[float, float, int]) -> None:
        rg, end, dist = obs
        run.log(stage * s.sweeps + sweep, rg=rg, end=end, dist=dist)

    # per sweep: Rg, end-to-end and pair distance, at step stage * sweeps + sweep
    out = staged_stapling(s.n, s.staple, s.reaches, s.sweeps, s.burn, seed, on_sweep=log)
    ensembles = {"free": out.stages[0], "stapled": out.stapled}
    return {
        "delta_s": out.delta_s,
        "ensembles": {k: {**st.statistics(), "last": st.last} for k, st in ensembles.items() if st},
        "stages": [[st.reach, float(np.mean(st.rg)), st.p_next] for st in out.stages[:-1]],
    }


@dataclass
class Ensemble:
    """One ensemble over the seeds that sampled it: per-seed statistics and the pooled Rg."""

    seeds: list[int]
    rg_mean: list[float]
    rg_std: list[float]
    end_mean: list[float]
    acceptance: list[float]
    tau_rg: list[float]
    rg_density: list[float]  # histogram of every seed's Rg samples over Result.rg_bins
    rg_pooled: tuple[float, float]  # mean and standard deviation of those samples
    last: list[tuple[int, int]]  # the first seed's last conformation (empty if it has none)


@dataclass
class Result(Summary):
    settings: Settings
    seeds: list[int]
    delta_s: list[float]  # per seed, nats; -inf where a stage never reached the next one
    s_free: float  # asymptotic S_free = ln c_{n-1}
    free: Ensemble
    stapled: Ensemble
    rg_bins: list[float]
    stages: list[tuple[int, int | None, float, float]]  # seed, reach, mean Rg, P(inside next)

    def ensembles(self) -> dict[str, Ensemble]:
        return {"free": self.free, "stapled": self.stapled}


@register_claim
class DisulfideStaple(Claim[Settings, Condition, Result]):
    id = "C17"
    slug = "disulfide-staple"
    title = "A long-range staple constrains a chain (a disulfide bond, a skip)"
    statement = (
        "A long-range staple in a chain constrains its conformations and stabilises its "
        "structure, as a skip stabilises a deep network."
    )
    method = (
        "Metropolis Monte Carlo (pivot, end, corner and crankshaft moves) of a self-avoiding "
        "walk of n residues on the square lattice, athermal (all self-avoiding conformations "
        "equally likely), free vs with a staple holding residues i and j in contact. "
        "Conformational entropy change from the free chain: Delta S = ln P_free(i, j in "
        "contact), estimated through staged restraints |r_i - r_j|_1 <= R_1 > R_2 > ... > 1 "
        "(each stage started inside the next). Radius of gyration (mean, standard deviation) "
        "and end-to-end distance in both ensembles, one independent chain per seed, with "
        "integrated autocorrelation times."
    )
    criterion = (
        "Holds when the staple constrains the ensemble for every seed: Delta S < -1 k_B (the "
        "staple removes more than 1 - 1/e of the conformations; every stage must reach the "
        "next restraint, else no estimate exists and the claim fails), and the stapled chain's "
        "mean radius of gyration, its standard deviation (the fluctuation) and its mean "
        "end-to-end distance are all smaller than the free chain's, with the per-seed ranges "
        "separated. Fails otherwise."
    )
    math = (
        "Ensemble: all self-avoiding conformations w of n residues, equally weighted (an "
        "athermal chain). Entropy S = ln Omega (k_B = 1), Omega the number of conformations.\n"
        "Stapled ensemble: the subset with |r_i - r_j| = 1, so Omega_staple = Omega_free * "
        "P_free(contact) and\n"
        "  Delta S = S_staple - S_free = ln P_free(|r_i - r_j| = 1)  <= 0,\n"
        "estimated in stages (the contact probability is ~1e-4, too rare to count directly): "
        "with restraints d = |r_i - r_j|_1 <= R_k, R_0 = inf > R_1 > ... > R_K = 1,\n"
        "  P_free(d = 1) = prod_k P(d <= R_{k+1} | d <= R_k),\n"
        "each factor the fraction of the stage-k chain's samples inside the next restraint. For reference S_free = ln c_{n-1} "
        "~ (n-1) ln mu + (gamma - 1) ln(n-1), mu = 2.638 (Jensen 2003), gamma = 43/32.\n"
        "Metropolis with symmetric proposals (a pivot by one of the 7 lattice symmetries about "
        "a random residue; end, corner and crankshaft moves) and acceptance min(1, pi'/pi) = 1 "
        "if the new conformation is self-avoiding (and stapled), else 0, samples the uniform "
        "distribution over the ensemble.\n"
        "R_g^2 = 1/n sum_k |r_k - r_cm|^2; fluctuation = std(R_g) over the ensemble; R_ee = "
        "|r_0 - r_{n-1}|.\n"
        "What the analogy shows: one long-range link removes most conformations (Delta S << 0), "
        "shrinks the chain and its fluctuations, and ties the two ends of the loop together "
        "whatever happens between them, as a skip ties a block's output to its input whatever "
        "the branch does. In a protein the lost unfolded-state entropy raises the folding free "
        "energy gap, Delta G = Delta H - T Delta S, which is the sense in which it stabilises.\n"
        "What it does not show: a skip is not a constraint. It adds a path (the identity) and "
        "removes no function the network could compute; a residual network can represent "
        "everything its plain twin can. The Monte Carlo says nothing about gradients, training "
        "or generalisation; those are measured in C02, C09 and C18. The likeness is one of "
        "topology (a long-range edge in a chain), not of mechanism."
    )
    references = (
        "Madras & Sokal 1988, The pivot algorithm",
        "Jensen 2003, A parallel algorithm for the enumeration of self-avoiding polygons",
        "Pace et al. 1988, Conformational stability and activity of ribonuclease T1 with zero, "
        "one, and two intact disulfide bonds",
        "Sokal 1997, Monte Carlo methods in statistical mechanics",
        "Zavodszky et al. 2001, Disulfide bond effects on protein stability: designed variants "
        "of Cucurbita maxima trypsin inhibitor-V",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition()]

    def cost(self, s: Settings, c: Condition) -> float:
        return s.n * (s.sweeps + s.burn) * (len(s.reaches) + 1) / 1e6  # millions of moves

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        stage = {"free": 0, "stapled": len(s.reaches)}
        have = {ens: [r for r in runs if ens in r.get("ensembles")] for ens in ENSEMBLES}
        rg = {ens: [_stage_rg(r, s.sweeps, stage[ens]) for r in have[ens]] for ens in ENSEMBLES}
        pooled = np.concatenate([x for v in rg.values() for x in v])
        bins = np.linspace(pooled.min(), pooled.max(), 40)
        free, stapled = (_ensemble(ens, have[ens], rg[ens], bins) for ens in ENSEMBLES)
        stages = [(r.seed, *row) for r in runs for row in r.get("stages")]
        return Result(
            s, runs.seeds, runs.values("delta_s"),
            free_entropy(s.n), free, stapled, bins.tolist(), stages,
        )  # fmt: skip

    def checks(self, r: Result) -> list[Check]:
        if len(r.stapled.seeds) != len(r.delta_s):
            text = f"Delta S per seed {fmt_values(r.delta_s)}: no stapled ensemble to compare"
            return [Check("the staged restraints reach the staple for every seed", False, text)]
        entropy = all(math.isfinite(v) and v < -1 for v in r.delta_s)
        checks = [Check("Delta S < -1 k_B for every seed", entropy, fmt_values(r.delta_s))]
        for key in ("rg_mean", "rg_std", "end_mean"):
            free, stapled = getattr(r.free, key), getattr(r.stapled, key)
            checks.append(
                Check(f"smaller {key} with the staple, per-seed ranges separate",
                      clearly_greater(free, stapled), f"free {fmt_values(free)}; stapled {fmt_values(stapled)}")
            )  # fmt: skip
        return checks

    def detail(self, r: Result) -> str:
        f, st = r.free, r.stapled
        if not st.seeds:
            return ""
        ds = [v for v in r.delta_s if math.isfinite(v)] or [math.nan]
        return (
            f"Delta S = {describe(ds)} k_B (of S_free ~ {r.s_free:.1f}); Rg free "
            f"{describe(f.rg_mean)} vs stapled {describe(st.rg_mean)}; std(Rg) free "
            f"{describe(f.rg_std)} vs stapled {describe(st.rg_std)}; end-to-end free "
            f"{describe(f.end_mean)} vs stapled {describe(st.end_mean)}."
        )

    def literature(self, r: Result) -> list[Comparison]:
        ds = [v for v in r.delta_s if math.isfinite(v)]
        kt = 1.987e-3 * 323.15  # k_B T in kcal/mol at 50 C, the temperature of the comparison
        text = (
            f"Delta S = {describe(ds).interval()} k_B for one staple, -T Delta S = "
            f"{-kt * describe(ds).mean:.2f} kcal/mol at 50 C"
            if ds
            else "no estimate"
        )
        return [
            Comparison(
                "Zavodszky et al. 2001 (Protein Science), abstract: CMTI-V, 7 kDa",
                "cross-links enhance stability mainly through denatured-state effects (the "
                "current models); removing the disulfide (C3S/C48S) costs Delta Delta G_d = "
                "-4 kcal/mol at 50 C and Delta T_m = -22 C, and there the native state is "
                "destabilized more than the denatured state",
                f"{text}: an athermal 2-D lattice chain of {r.settings.n} residues, whose only "
                "effect is the denatured-state entropy; same sign, but a protein's stability "
                "is not on this scale",
                None,
            )
        ]

    def numbers(self, r: Result) -> dict[str, float]:
        out = {"delta_s": _finite_mean(r.delta_s), "s_free_approx": r.s_free}
        for ens, e in r.ensembles().items():
            out.update({f"{ens}_{k}": _finite_mean(getattr(e, k)) for k in STATISTICS if e.seeds})
        return out

    def tables(self, r: Result) -> list[Table]:
        rows = [
            [seed, ens, *(getattr(e, key)[e.seeds.index(seed)] for key in STATISTICS)]
            for seed in r.seeds
            for ens, e in r.ensembles().items()
            if seed in e.seeds
        ]
        s, ds = r.settings, fmt_values(r.delta_s, ".2f")
        i, j = s.staple
        stages = [[seed, "free" if reach is None else f"<= {reach}", rg, p]
                  for seed, reach, rg, p in r.stages]  # fmt: skip
        return [
            Table(
                f"Square-lattice self-avoiding chain, n={s.n}, staple {i}-{j}, {s.sweeps} sweeps "
                f"after {s.burn} per ensemble",
                ["seed", "ensemble", "mean Rg", "std Rg", "mean end-to-end", "acceptance",
                 "tau(Rg), sweeps"], rows,
                f"Delta S = ln P_free(contact) per seed: {ds} k_B, against S_free ~ "
                f"{r.s_free:.1f} k_B.",
            ),
            Table(
                "Staged restraints: each stage's chance of lying inside the next restraint",
                ["seed", f"|r_{i} - r_{j}|_1", "mean Rg", "P(inside next)"], stages,
                "Delta S is the sum of the logs of the last column.",
            ),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        return [
            "Lattice, athermal and 2-D: a model of conformational freedom, not of a protein. "
            "Samples within a chain are correlated (tau in the table: the stapled loop relaxes "
            "tens of times more slowly than the free chain); the spread is over independent "
            "chains (seeds)."
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.2, height=4.0)
        colors = {"free": _plot.PLAIN, "stapled": _plot.RESIDUAL}
        ax = axes[0][2]
        for panel, (ens, e) in zip(axes[0][:2], r.ensembles().items()):
            _conformation_panel(panel, ens, e.last, r.settings.staple, colors[ens])
            if e.rg_density:
                mean, std = e.rg_pooled
                ax.hist(r.rg_bins[:-1], bins=r.rg_bins, weights=e.rg_density, alpha=0.55,
                        color=colors[ens], label=f"{ens}: {mean:.2f} ± {std:.2f}")  # fmt: skip
        ax.set(
            title=f"radius of gyration, n={r.settings.n}",
            xlabel="Rg (lattice units)",
            ylabel="density",
        )
        ax.legend()
        _plot.save(fig, outdir / "staple.png")
        caption = (
            "Left and middle: the last sampled conformation of the free and the stapled chain "
            f"(seed {r.seeds[0]}; red: the stapled residues and the staple). Right: "
            "distribution of the radius of gyration over all seeds' samples (legend: mean ± "
            "standard deviation)."
        )
        return [Figure("staple.png", caption)]


def _stage_rg(r: RunRecord[Condition], sweeps: int, stage: int) -> np.ndarray:
    """The Rg series of one stage of a run, from its per-sweep metrics."""
    return np.asarray([v for step, v in r.metrics["rg"] if step // sweeps == stage])


def _ensemble(ens: str, have: list[RunRecord[Condition]], rg: list[np.ndarray],
              bins: np.ndarray) -> Ensemble:  # fmt: skip
    """The runs that sampled ``ens``: their statistics, and the histogram of their Rg samples."""
    stats = {key: [float(r.get("ensembles")[ens][key]) for r in have] for key in STATISTICS}
    pooled = np.concatenate(rg) if rg else np.full(1, math.nan)
    density = np.histogram(pooled, bins=bins, density=True)[0].tolist() if rg else []
    last = have[0].get("ensembles")[ens]["last"] if have else []
    return Ensemble([r.seed for r in have], **stats, rg_density=density,
                    rg_pooled=(float(pooled.mean()), float(pooled.std())),
                    last=[(int(x), int(y)) for x, y in last])  # fmt: skip


def _conformation_panel(ax: Any, ens: str, last: list[tuple[int, int]], staple: tuple[int, int],
                        color: str) -> None:  # fmt: skip
    ax.set(title=f"{ens}: last sampled conformation", xlabel="x - centre", ylabel="y - centre")
    if not last:
        ax.text(0.5, 0.5, "never stapled", ha="center", transform=ax.transAxes)
        return
    i, j = staple
    pos = np.asarray(last, dtype=float)
    pos = pos - np.round(pos.mean(0))  # the chain wanders; centre it
    ax.plot(pos[:, 0], pos[:, 1], "-o", ms=2.5, color=color, label=f"{ens} chain")
    ax.plot(*pos[0], "s", color="black", ms=6, label="residue 0")
    ax.plot(pos[[i, j], 0], pos[[i, j], 1], "o", color="red", ms=7, label=f"residues {i}, {j}")
    if ens == "stapled":
        ax.plot(pos[[i, j], 0], pos[[i, j], 1], "-", color="red", lw=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7, loc="best")


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
