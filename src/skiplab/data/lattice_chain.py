"""Monte Carlo of a self-avoiding chain on the square lattice, free or held by a restraint.

An athermal polymer: every self-avoiding conformation of ``n`` residues has the same weight.
Metropolis with symmetric proposals samples that uniform distribution: a move is accepted when
the new conformation is self-avoiding (and satisfies the restraint), rejected otherwise.
Pivot moves (Madras & Sokal 1988) decorrelate the free chain quickly; segment, end, corner and
crankshaft moves relax a loop that a restraint closes.

A *staple* holds two distant residues ``i, j`` in contact, as a disulfide bond does in a
protein. The entropy it costs, ``Delta S = ln P_free(|r_i - r_j|_1 = 1)``, is too rare an event
to count directly; :func:`staged_stapling` reaches it through a ladder of ever tighter
restraints ``|r_i - r_j|_1 <= R_1 > R_2 > ... > 1``, a product of moderate probabilities.

Everything draws from one ``random.Random``, so a seed gives the same chain on every machine.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GAMMA_2D",
    "MU_SQUARE",
    "LatticeChain",
    "Stage",
    "Stapling",
    "free_entropy",
    "integrated_autocorrelation",
    "lattice_distance",
    "observables",
    "run_chain",
    "staged_stapling",
]

Site = tuple[int, int]
#: ``on_sweep(stage, sweep, (rg, end_to_end, pair_distance))`` after every measured sweep.
OnSweep = Callable[[int, int, tuple[float, float, int]], None]
# The seven non-identity symmetries of the square lattice (rotations and reflections).
SYMMETRIES: tuple[tuple[int, int, int, int], ...] = (
    (0, -1, 1, 0), (-1, 0, 0, -1), (0, 1, -1, 0),  # rotations by 90, 180, 270 degrees
    (1, 0, 0, -1), (-1, 0, 0, 1), (0, 1, 1, 0), (0, -1, -1, 0),  # reflections
)  # fmt: skip
STEPS: tuple[Site, ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))
MU_SQUARE = 2.63815853  # connective constant of the square lattice (Jensen 2003)
GAMMA_2D = 43 / 32  # entropic exponent of 2-D self-avoiding walks (Nienhuis 1982)


def lattice_distance(a: Site, b: Site) -> int:
    """Manhattan (L1) distance of two lattice sites; 1 means in contact."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def free_entropy(n: int) -> float:
    """``S_free = ln c_{n-1} ~ (n-1) ln mu + (gamma - 1) ln(n-1)``: the asymptotic count of
    self-avoiding walks of ``n - 1`` steps (k_B = 1)."""
    return (n - 1) * math.log(MU_SQUARE) + (GAMMA_2D - 1) * math.log(n - 1)


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
        start: Sequence[Site] | None = None,
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

    def __repr__(self) -> str:
        return f"LatticeChain(n={self.n}, restraint={self.restraint})"

    def satisfied(self, pos: Sequence[Site]) -> bool:
        if self.restraint is None:
            return True
        i, j, reach = self.restraint
        return lattice_distance(pos[i], pos[j]) <= reach

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.tried, 1)

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
        if lattice_distance(a, d) == 1 and (c[0] - d[0], c[1] - d[1]) == (vx, vy):
            return [k, k + 1], [(a[0] - vx, a[1] - vy), (d[0] - vx, d[1] - vy)]
        return None


def observables(pos: Sequence[Site], pair: tuple[int, int]) -> tuple[float, float, int]:
    """Radius of gyration, end-to-end distance, and the L1 distance of residues ``pair``.

    ``R_g^2 = 1/n sum_k |r_k - r_cm|^2``; ``R_ee = |r_0 - r_{n-1}|``.
    """
    n = len(pos)
    mx = sum(p[0] for p in pos) / n
    my = sum(p[1] for p in pos) / n
    rg2 = sum((p[0] - mx) ** 2 + (p[1] - my) ** 2 for p in pos) / n
    end = math.hypot(pos[0][0] - pos[-1][0], pos[0][1] - pos[-1][1])
    return math.sqrt(rg2), end, lattice_distance(pos[pair[0]], pos[pair[1]])


@dataclass
class Stage:
    """What one chain sampled: one value per sweep, and where it ended.

    Attributes:
        reach: the restraint ``|r_i - r_j|_1 <= reach`` (None: the free chain).
        rg, end, dist: radius of gyration, end-to-end and pair distance after each sweep.
        acceptance: the fraction of accepted moves (burn-in included).
        last: the final conformation.
        next: the last sampled conformation inside the next restraint, if one was asked for.
        p_next: the fraction of samples inside the next restraint (NaN if none was asked for).
    """

    reach: int | None
    rg: list[float]
    end: list[float]
    dist: list[int]
    acceptance: float
    last: list[Site]
    next: list[Site] | None = None
    p_next: float = math.nan

    def statistics(self) -> dict[str, float]:
        """Mean and standard deviation of Rg, mean end-to-end distance, acceptance, tau(Rg)."""
        rg = np.asarray(self.rg)
        return {
            "rg_mean": float(rg.mean()),
            "rg_std": float(rg.std()),
            "end_mean": float(np.mean(self.end)),
            "acceptance": self.acceptance,
            "tau_rg": integrated_autocorrelation(self.rg),
        }


def run_chain(
    chain: LatticeChain,
    pair: tuple[int, int],
    sweeps: int,
    burn: int,
    target: int | None = None,
    on_sweep: Callable[[int, tuple[float, float, int]], None] | None = None,
) -> Stage:
    """``burn`` then ``sweeps`` sweeps of ``n`` moves, measuring after each sweep.

    Args:
        target: also keep the last sampled conformation with pair distance ``<= target`` (the
            start of the next, tighter stage) and the fraction of samples that satisfy it.
        on_sweep: called as ``on_sweep(sweep, (rg, end, dist))`` after each measured sweep.
    """
    n = chain.n
    for _ in range(burn * n):
        chain.step()
    rg, end, dist = [], [], []
    start_next = None
    for sweep in range(sweeps):
        for _ in range(n):
            chain.step()
        obs = observables(chain.pos, pair)
        rg.append(obs[0])
        end.append(obs[1])
        dist.append(obs[2])
        if target is not None and obs[2] <= target:
            start_next = list(chain.pos)
        if on_sweep is not None:
            on_sweep(sweep, obs)
    p_next = math.nan if target is None else float(np.mean(np.asarray(dist) <= target))
    reach = None if chain.restraint is None else chain.restraint[2]
    return Stage(reach, rg, end, dist, chain.acceptance, list(chain.pos), start_next, p_next)


@dataclass
class Stapling:
    """The stages of :func:`staged_stapling` and the entropy the staple costs.

    Attributes:
        stages: the free chain first, then one per restraint (fewer if a stage never reached
            the next restraint).
        delta_s: ``ln P_free(contact)`` in nats (k_B = 1), ``-inf`` when some stage never
            reached the next restraint.
    """

    stages: list[Stage]
    delta_s: float

    @property
    def stapled(self) -> Stage | None:
        """The last stage if it is the staple (reach 1), else None."""
        last = self.stages[-1]
        return last if last.reach == 1 else None


def staged_stapling(
    n: int,
    pair: tuple[int, int],
    reaches: Sequence[int],
    sweeps: int,
    burn: int,
    seed: int,
    on_sweep: OnSweep | None = None,
) -> Stapling:
    """The free chain, then chains restrained to ``|r_i - r_j|_1 <= reach`` for each reach in
    turn (the last must be 1: the staple); each stage starts from a conformation the previous
    stage sampled inside the next restraint.

    ``ln P_free(contact) = sum_k ln P(d <= reach_{k+1} | d <= reach_k)``, each factor the
    fraction of stage k's samples inside the next restraint: a product of moderate
    probabilities instead of one tiny one.

    Args:
        reaches: decreasing, ending at 1; odd when ``j - i`` is odd (the lattice's parity).
        seed: seeds the one ``random.Random`` every stage draws from.
        on_sweep: called as ``on_sweep(stage, sweep, (rg, end, dist))`` after each sweep.
    """
    if not reaches or reaches[-1] != 1 or any(b >= a for a, b in itertools.pairwise(reaches)):
        raise ValueError(f"reaches must decrease to 1 (the staple), got {list(reaches)}")
    rng = random.Random(seed)
    stages: list[Stage] = []
    start: list[Site] | None = None
    delta_s = 0.0
    bounds: list[int | None] = [None, *reaches]
    for k, reach in enumerate(bounds):
        restraint = None if reach is None else (pair[0], pair[1], reach)
        target = bounds[k + 1] if k + 1 < len(bounds) else None
        hook = None if on_sweep is None else _stage_hook(on_sweep, k)
        stage = run_chain(LatticeChain(n, restraint, rng, start), pair, sweeps, burn, target, hook)
        stages.append(stage)
        if target is None:
            break
        if stage.next is None:
            return Stapling(stages, -math.inf)
        delta_s += math.log(stage.p_next)
        start = stage.next
    return Stapling(stages, delta_s)


def _stage_hook(on_sweep: OnSweep, k: int) -> Callable[[int, tuple[float, float, int]], None]:
    return lambda sweep, obs: on_sweep(k, sweep, obs)


def integrated_autocorrelation(x: Sequence[float]) -> float:
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
