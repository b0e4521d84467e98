"""C17 disulfide-staple: a long-range staple constrains a chain's conformations.

Metropolis Monte Carlo of a self-avoiding walk on the square lattice (an athermal polymer:
every self-avoiding conformation has the same weight), with and without a *staple* that holds
two distant residues in contact, as a disulfide bond does in a protein. Pivot moves (Madras &
Sokal 1988) decorrelate the free chain quickly; end, corner and crankshaft moves relax the loop
that the staple closes.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import clearly_greater, summarize

Site = tuple[int, int]
# The seven non-identity symmetries of the square lattice (rotations and reflections).
SYMMETRIES: tuple[tuple[int, int, int, int], ...] = (
    (0, -1, 1, 0), (-1, 0, 0, -1), (0, 1, -1, 0),  # rotations by 90, 180, 270 degrees
    (1, 0, 0, -1), (-1, 0, 0, 1), (0, 1, 1, 0), (0, -1, -1, 0),  # reflections
)  # fmt: skip
STEPS: tuple[Site, ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))
MU_SQUARE = 2.63815853  # connective constant of the square lattice (Jensen 2003)
GAMMA_2D = 43 / 32  # entropic exponent of 2-D self-avoiding walks (Nienhuis 1982)


def _adjacent(a: Site, b: Site) -> bool:
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1


def lattice_distance(a: Site, b: Site) -> int:
    """Manhattan (L1) distance of two lattice sites; 1 means in contact."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


class LatticeChain:
    """A self-avoiding chain of ``n`` residues on the square lattice, optionally restrained.

    Args:
        n: number of residues.
        restraint: ``(i, j, reach)`` keeps residues i and j within lattice (L1) distance
            ``reach``; ``reach = 1`` is the staple (i and j in contact); None: the free chain.
            On the bipartite square lattice the L1 distance of i and j has the parity of
            ``j - i``, so a staple needs ``j - i`` odd.
        rng: the random source of the moves.
        start: the initial conformation (default: a straight line); it must be self-avoiding
            and satisfy the restraint.
        pivot_fraction: share of pivot moves (default 0.3).
        segment_fraction: share of segment moves, which keep both ends of a stretch in place
            and so can relax a restrained loop (default 0.3); the rest are local moves.
    """

    def __init__(
        self,
        n: int,
        restraint: tuple[int, int, int] | None,
        rng: random.Random,
        start: list[Site] | None = None,
        pivot_fraction: float = 0.3,
        segment_fraction: float = 0.3,
    ) -> None:
        if n < 4:
            raise ValueError(f"a chain needs at least 4 residues, got {n}")
        if restraint is not None:
            i, j, reach = restraint
            i, j = min(i, j), max(i, j)
            if not (i >= 0 and j < n and j - i >= 3 and reach >= 1 and (j - i - reach) % 2 == 0):
                raise ValueError(
                    f"restraint {restraint} impossible on the square lattice for n={n}: need "
                    "0 <= i < j < n, j - i >= 3, reach >= 1 and reach of the parity of j - i "
                    "(the lattice is bipartite; a staple, reach 1, needs j - i odd)"
                )
            restraint = (i, j, reach)
        self.n, self.restraint, self.rng = n, restraint, rng
        self.pivot_fraction = pivot_fraction
        self.segment_fraction = segment_fraction
        self.pos: list[Site] = list(start) if start is not None else [(k, 0) for k in range(n)]
        if len(self.pos) != n or len(set(self.pos)) != n or not self.satisfied(self.pos):
            raise ValueError(
                f"start conformation must have {n} distinct sites and satisfy {restraint}"
            )
        self.occupied = set(self.pos)
        self.accepted = 0
        self.tried = 0

    def satisfied(self, pos: list[Site]) -> bool:
        if self.restraint is None:
            return True
        i, j, reach = self.restraint
        return lattice_distance(pos[i], pos[j]) <= reach

    def step(self) -> None:
        """One Metropolis move: propose symmetrically, accept if self-avoiding and restrained."""
        self.tried += 1
        u = self.rng.random()
        if u < self.pivot_fraction:
            new = self._pivot()
        elif u < self.pivot_fraction + self.segment_fraction:
            new = self._segment()
        else:
            new = self._local()
        if new is None:
            return
        moved, sites = new
        keep = self.occupied.difference(self.pos[k] for k in moved)
        if any(s in keep for s in sites) or len(set(sites)) != len(sites):
            return
        old = [self.pos[k] for k in moved]
        for k, s in zip(moved, sites):
            self.pos[k] = s
        if not self.satisfied(self.pos):
            for k, s in zip(moved, old):
                self.pos[k] = s
            return
        self.occupied = keep.union(sites)
        self.accepted += 1

    def _pivot(self) -> tuple[list[int], list[Site]] | None:
        k = self.rng.randrange(1, self.n - 1)
        a, b, c, d = self.rng.choice(SYMMETRIES)
        px, py = self.pos[k]
        moved = list(range(k + 1, self.n)) if self.rng.random() < 0.5 else list(range(k))
        sites = []
        for m in moved:
            dx, dy = self.pos[m][0] - px, self.pos[m][1] - py
            sites.append((px + a * dx + b * dy, py + c * dx + d * dy))
        return moved, sites

    def _segment(self) -> tuple[list[int], list[Site]] | None:
        """Move the stretch strictly between residues k1 and k2, keeping k1 and k2 in place:
        either a point reflection through their midpoint with the order reversed, or (when
        they lie on a lattice axis or diagonal) a mirror image in the line through them. Both
        are involutions, so the proposal is symmetric (cf. Madras, Orlitsky & Shepp 1990)."""
        k1 = self.rng.randrange(self.n - 2)
        k2 = self.rng.randrange(k1 + 2, self.n)
        (ax, ay), (bx, by) = self.pos[k1], self.pos[k2]
        inner = list(range(k1 + 1, k2))
        if self.rng.random() < 0.5:
            # r -> a + b - r, and residue k1 + m takes the image of residue k2 - m
            return inner, [(ax + bx - self.pos[k1 + k2 - m][0], ay + by - self.pos[k1 + k2 - m][1])
                           for m in inner]  # fmt: skip
        dx, dy = bx - ax, by - ay
        if dy == 0:  # mirror in the horizontal line y = ay
            return inner, [(self.pos[m][0], 2 * ay - self.pos[m][1]) for m in inner]
        if dx == 0:
            return inner, [(2 * ax - self.pos[m][0], self.pos[m][1]) for m in inner]
        if abs(dx) == abs(dy):  # a diagonal: swap the coordinates relative to a (and sign)
            sgn = 1 if dx == dy else -1
            return inner, [
                (ax + sgn * (self.pos[m][1] - ay), ay + sgn * (self.pos[m][0] - ax)) for m in inner
            ]
        return None

    def _local(self) -> tuple[list[int], list[Site]] | None:
        k = self.rng.randrange(self.n)
        pos = self.pos
        if k in (0, self.n - 1):  # end move: anywhere next to its bonded neighbour
            nb = pos[1] if k == 0 else pos[-2]
            sx, sy = self.rng.choice(STEPS)
            return [k], [(nb[0] + sx, nb[1] + sy)]
        a, c = pos[k - 1], pos[k + 1]
        if self.rng.random() < 0.5:  # corner flip across the diagonal a-c
            if abs(a[0] - c[0]) == 1 and abs(a[1] - c[1]) == 1:
                return [k], [(a[0] + c[0] - pos[k][0], a[1] + c[1] - pos[k][1])]
            return None
        if k + 2 >= self.n:  # crankshaft of the U-shaped k, k+1 between k-1 and k+2
            return None
        d = pos[k + 2]
        vx, vy = pos[k][0] - a[0], pos[k][1] - a[1]
        if _adjacent(a, d) and (c[0] - d[0], c[1] - d[1]) == (vx, vy):
            return [k, k + 1], [(a[0] - vx, a[1] - vy), (d[0] - vx, d[1] - vy)]
        return None


def observables(pos: list[Site], pair: tuple[int, int]) -> tuple[float, float, int]:
    """Radius of gyration, end-to-end distance, and the L1 distance of residues ``pair``."""
    n = len(pos)
    mx = sum(p[0] for p in pos) / n
    my = sum(p[1] for p in pos) / n
    rg2 = sum((p[0] - mx) ** 2 + (p[1] - my) ** 2 for p in pos) / n
    end = math.hypot(pos[0][0] - pos[-1][0], pos[0][1] - pos[-1][1])
    return math.sqrt(rg2), end, lattice_distance(pos[pair[0]], pos[pair[1]])


def run_chain(
    chain: LatticeChain, pair: tuple[int, int], sweeps: int, burn: int, target: int | None
) -> dict[str, Any]:
    """``burn`` then ``sweeps`` sweeps of ``n`` moves, measuring after each sweep.

    Returns the Rg, end-to-end and pair-distance series, the acceptance, the last
    conformation, and the last sampled conformation with pair distance ``<= target`` (the
    start of the next, tighter stage), if any.
    """
    n = chain.n
    for _ in range(burn * n):
        chain.step()
    rg, end, dist = [], [], []
    seed_conf = None
    for _ in range(sweeps):
        for _ in range(n):
            chain.step()
        r, e, d = observables(chain.pos, pair)
        rg.append(r)
        end.append(e)
        dist.append(d)
        if target is not None and d <= target:
            seed_conf = list(chain.pos)
    return {"rg": rg, "end": end, "dist": dist, "last": list(chain.pos), "next": seed_conf,
            "acceptance": chain.accepted / max(chain.tried, 1)}  # fmt: skip


def staged_stapling(
    n: int, pair: tuple[int, int], reaches: list[int], sweeps: int, burn: int, seed: int
) -> dict[str, Any]:
    """The free chain, then chains restrained to ``|r_i - r_j|_1 <= reach`` for each reach in
    turn (the last must be 1: the staple); each stage starts from a conformation the previous
    stage sampled inside the next restraint.

    ``ln P_free(contact) = sum_k ln P(d <= reach_{k+1} | d <= reach_k)``, each factor the
    fraction of stage k's samples inside the next restraint: a product of moderate
    probabilities instead of one tiny one. Returns the stages and ``delta_s`` (nats), or
    ``-inf`` if some stage never reached the next restraint.
    """
    if reaches[-1] != 1 or any(b >= a for a, b in itertools.pairwise(reaches)):
        raise ValueError(f"reaches must decrease to 1 (the staple), got {reaches}")
    rng = random.Random(seed)
    stages, start, delta_s = [], None, 0.0
    bounds: list[int | None] = [None, *reaches]
    for k, reach in enumerate(bounds):
        restraint = None if reach is None else (pair[0], pair[1], reach)
        target = bounds[k + 1] if k + 1 < len(bounds) else None
        out = run_chain(LatticeChain(n, restraint, rng, start), pair, sweeps, burn, target)
        out["reach"] = reach
        stages.append(out)
        if target is None:
            break
        frac = float(np.mean(np.asarray(out["dist"]) <= target))
        out["p_next"] = frac
        if out["next"] is None:
            return {"stages": stages, "delta_s": float("-inf")}
        delta_s += math.log(frac)
        start = out["next"]
    return {"stages": stages, "delta_s": delta_s}


def integrated_autocorrelation(x: list[float]) -> float:
    """Integrated autocorrelation time (in samples), summed until the autocorrelation first
    drops below 0 (a simple window; Sokal 1997)."""
    a = np.asarray(x, dtype=float) - np.mean(x)
    var = float(a @ a) / len(a)
    if var == 0:
        return 1.0
    tau = 1.0
    for lag in range(1, len(a) // 2):
        rho = float(a[:-lag] @ a[lag:]) / ((len(a) - lag) * var)
        if rho <= 0:
            break
        tau += 2 * rho
    return tau


@register_claim
class DisulfideStaple(Claim):
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
        "(each stage started inside the next). Radius of gyration (mean, standard deviation) and end-to-end distance in "
        "both ensembles, one independent chain per seed, with integrated autocorrelation times."
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
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        n = ctx.pick(tiny=32, quick=64, full=100)
        pair = ctx.pick(tiny=(4, 27), quick=(8, 55), full=(10, 89))
        # odd reaches (the parity of j - i), each stage keeping ~5-50% of the previous one
        reaches = ctx.pick(tiny=[9, 5, 3, 1], quick=[21, 13, 9, 5, 3, 1],
                           full=[31, 21, 15, 11, 9, 7, 5, 3, 1])  # fmt: skip
        sweeps = ctx.pick(tiny=600, quick=2000, full=40000)
        burn = ctx.pick(tiny=60, quick=200, full=4000)
        ev = Evidence(seeds=ctx.seeds)
        per_seed: dict[str, list[float]] = {}
        hists: dict[str, list[list[float]]] = {"free": [], "stapled": []}
        rows: list[list[Any]] = []
        stage_rows: list[list[Any]] = []
        last: dict[str, list[Site]] = {}

        def keep(key: str, value: float) -> None:
            per_seed.setdefault(key, []).append(float(value))

        for seed in ctx.seeds:
            cfg = {"n": n, "staple": list(pair), "reaches": reaches, "sweeps": sweeps,
                   "burn": burn}  # fmt: skip
            with ctx.run(f"C17 chain seed {seed}", cfg, seed=seed) as run_id:
                out = staged_stapling(n, pair, reaches, sweeps, burn, seed)
                results: dict[str, float] = {"delta_s": out["delta_s"]}
                stages = out["stages"]
                for ens, stage in (("free", stages[0]), ("stapled", stages[-1])):
                    if ens == "stapled" and stage["reach"] != 1:
                        break  # never got that far: no stapled ensemble for this seed
                    rg, end = np.asarray(stage["rg"]), np.asarray(stage["end"])
                    res = {
                        "rg_mean": float(rg.mean()), "rg_std": float(rg.std()),
                        "end_mean": float(end.mean()), "acceptance": stage["acceptance"],
                        "tau_rg": integrated_autocorrelation(stage["rg"]),
                    }  # fmt: skip
                    results.update({f"{ens}_{k}": v for k, v in res.items()})
                    for key, value in res.items():
                        keep(f"{ens}_{key}", value)
                    hists[ens].append(stage["rg"])
                    if seed == ctx.seeds[0]:
                        last[ens] = stage["last"]
                    rows.append([seed, ens, res["rg_mean"], res["rg_std"], res["end_mean"],
                                 res["acceptance"], res["tau_rg"]])  # fmt: skip
                for stage in stages[:-1]:
                    reach = stage["reach"]
                    stage_rows.append([seed, "free" if reach is None else f"<= {reach}",
                                       float(np.mean(stage["rg"])), stage.get("p_next", 0.0)])  # fmt: skip
                keep("delta_s", out["delta_s"])
                ctx.store.finish_run(run_id, "completed", results=results)
        s_free = (n - 1) * math.log(MU_SQUARE) + (GAMMA_2D - 1) * math.log(n - 1)
        ev.series.update(per_seed=per_seed, rg=hists, last=last, n=n, staple=list(pair))
        for key, values in per_seed.items():
            finite = [v for v in values if math.isfinite(v)]
            ev.numbers[key] = float(np.mean(finite)) if finite else float("nan")
        ev.numbers["s_free_approx"] = s_free
        ev.tables.append(
            Table(
                f"Square-lattice self-avoiding chain, n={n}, staple {pair[0]}-{pair[1]}, "
                f"{sweeps} sweeps after {burn} per ensemble",
                [
                    "seed",
                    "ensemble",
                    "mean Rg",
                    "std Rg",
                    "mean end-to-end",
                    "acceptance",
                    "tau(Rg), sweeps",
                ],
                rows,
                f"Delta S = ln P_free(contact) per seed: "
                f"{', '.join(f'{v:.2f}' for v in per_seed['delta_s'])} k_B, against "
                f"S_free ~ {s_free:.1f} k_B.",
            )
        )
        ev.tables.append(
            Table(
                "Staged restraints: each stage's chance of lying inside the next restraint",
                ["seed", f"|r_{pair[0]} - r_{pair[1]}|_1", "mean Rg", "P(inside next)"],
                stage_rows,
                "Delta S is the sum of the logs of the last column.",
            )
        )
        ev.notes.append(
            "Lattice, athermal and 2-D: a model of conformational freedom, not of a protein. "
            "Samples within a chain are correlated (tau in the table: the stapled loop relaxes "
            "tens of times more slowly than the free chain); the spread is over independent "
            "chains (seeds)."
        )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        s = evidence.series["per_seed"]
        ds = s["delta_s"]
        entropy_ok = all(math.isfinite(v) and v < -1 for v in ds)
        if len(s.get("stapled_rg_mean", [])) != len(ds):
            return Verdict(
                "fails",
                f"the staged restraints did not reach the staple for every seed (Delta S per "
                f"seed: {ds}); no stapled ensemble to compare.",
            )
        smaller = {
            key: clearly_greater(s[f"free_{key}"], s[f"stapled_{key}"])
            for key in ("rg_mean", "rg_std", "end_mean")
        }
        detail = (
            f"Delta S = {summarize([v for v in ds if math.isfinite(v)] or [float('nan')])} k_B "
            f"(of S_free ~ {evidence.numbers['s_free_approx']:.1f}); Rg free "
            f"{summarize(s['free_rg_mean'])} vs stapled {summarize(s['stapled_rg_mean'])}; std(Rg) "
            f"free {summarize(s['free_rg_std'])} vs stapled {summarize(s['stapled_rg_std'])}; "
            f"end-to-end free {summarize(s['free_end_mean'])} vs stapled "
            f"{summarize(s['stapled_end_mean'])}."
        )
        checks = [("entropy loss", entropy_ok), *((f"smaller {k}", v) for k, v in smaller.items())]
        return Verdict.from_checks(checks, detail)

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.2, height=4.0)
        colors = {"free": _plot.PLAIN, "stapled": _plot.RESIDUAL}
        i, j = evidence.series["staple"]
        for ax, ens in zip(axes[0][:2], ("free", "stapled")):
            pos = np.asarray(evidence.series["last"][ens], dtype=float)
            pos = pos - np.round(pos.mean(0))  # the chain wanders; centre it
            ax.plot(pos[:, 0], pos[:, 1], "-o", ms=2.5, color=colors[ens], label=f"{ens} chain")
            ax.plot(*pos[0], "s", color="black", ms=6, label="residue 0")
            ax.plot(pos[[i, j], 0], pos[[i, j], 1], "o", color="red", ms=7,
                    label=f"residues {i}, {j}")  # fmt: skip
            if ens == "stapled":
                ax.plot(pos[[i, j], 0], pos[[i, j], 1], "-", color="red", lw=3)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set(title=f"{ens}: last sampled conformation", xlabel="x - centre",
                   ylabel="y - centre")  # fmt: skip
            ax.legend(fontsize=7, loc="best")
        ax = axes[0][2]
        allrg = np.concatenate([np.concatenate(v) for v in evidence.series["rg"].values()])
        bins = np.linspace(allrg.min(), allrg.max(), 40)
        for ens in ("free", "stapled"):
            rg = np.concatenate(evidence.series["rg"][ens])
            ax.hist(rg, bins=bins, density=True, alpha=0.55, color=colors[ens],
                    label=f"{ens}: {rg.mean():.2f} ± {rg.std():.2f}")  # fmt: skip
        ax.set(title=f"radius of gyration, n={evidence.series['n']}", xlabel="Rg (lattice units)",
               ylabel="density")  # fmt: skip
        ax.legend()
        _plot.save(fig, outdir / "staple.png")
        return [
            Figure(
                "staple.png",
                "Left and middle: the last sampled conformation of the free and the stapled chain "
                "(seed 0; red: the stapled residues and the staple). Right: distribution of the radius of gyration over all seeds' samples (legend: "
                "mean ± standard deviation).",
            )
        ]
