"""What a claim is: the article's statement, an experiment, its evidence and a computed verdict.

A claim module defines one :class:`Claim` subclass decorated with :func:`register_claim`. Its
``run`` does the experiment through a :class:`Context` (which records every training run in the
store) and returns :class:`Evidence`; ``decide`` turns the evidence into a :class:`Verdict` by a
criterion written in ``criterion``; ``figures`` draws the evidence. The report is rebuilt from
the stored evidence alone, so every figure comes from a stored run.
"""

from __future__ import annotations

import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from skiplab.store import Store

SCALES = ("tiny", "quick", "full")
T = TypeVar("T")


@dataclass
class Table:
    """A table for the report: ``rows`` are lists of cells matching ``columns``."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "note": self.note}


@dataclass
class Evidence:
    """What an experiment measured.

    Args:
        numbers: the key figures, flat ``name -> number`` (they go to ``claims.json``).
        tables: tables for the report.
        series: raw data for the figures (JSON-able lists and dicts).
        seeds: seeds the numbers rest on.
        run_ids: store ids of the runs behind them.
        notes: caveats worth printing beside the verdict (e.g. what quick scale cannot show).
    """

    numbers: dict[str, float] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "numbers": self.numbers,
            "tables": [t.as_dict() for t in self.tables],
            "series": self.series,
            "seeds": self.seeds,
            "run_ids": self.run_ids,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        return cls(
            numbers=dict(d.get("numbers", {})),
            tables=[Table(**t) for t in d.get("tables", [])],
            series=dict(d.get("series", {})),
            seeds=list(d.get("seeds", [])),
            run_ids=list(d.get("run_ids", [])),
            notes=list(d.get("notes", [])),
        )


@dataclass(frozen=True)
class Verdict:
    """``holds``, ``fails`` or ``inconclusive`` and the measured reason."""

    status: str
    reason: str

    def __post_init__(self) -> None:
        if self.status not in ("holds", "fails", "inconclusive"):
            raise ValueError(f"verdict must be holds, fails or inconclusive; got {self.status!r}")

    @classmethod
    def from_checks(
        cls, checks: Sequence[tuple[str, bool]], detail: str, otherwise: str = "fails"
    ) -> Verdict:
        """``holds`` when every named check passed, else ``otherwise`` naming the ones that did not.

        Args:
            checks: ``(what was expected, whether it was observed)`` pairs.
            detail: the measured numbers behind the checks, appended to the reason.
            otherwise: the verdict when a check failed (default ``"fails"``).
        """
        missing = [name for name, ok in checks if not ok]
        if not missing:
            return cls("holds", detail)
        return cls(otherwise, f"not observed: {', '.join(missing)}. {detail}")


@dataclass(frozen=True)
class Figure:
    """A figure file (relative to the report directory) and its caption."""

    path: str
    caption: str


class Context:
    """What an experiment needs: scale, seeds, the store, a work directory, the device.

    Args:
        claim: the claim being run (its id tags every run).
        scale: ``"tiny"`` (tests), ``"quick"`` (a 2-core CPU in minutes) or ``"full"`` (GPU).
        seeds: the seeds to use.
        store: where runs are recorded.
        workdir: scratch space for checkpoints.
        device: torch device (default CPU).
        progress: show progress bars.
    """

    def __init__(
        self,
        claim: Claim,
        scale: str,
        seeds: Sequence[int],
        store: Store,
        workdir: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        progress: bool = False,
    ) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.claim = claim
        self.scale = scale
        self.seeds = list(seeds)
        self.store = store
        self.workdir = Path(workdir)
        self.device = torch.device(device)
        self.progress = progress
        self.run_ids: list[int] = []

    def pick(self, *, tiny: T, quick: T, full: T) -> T:
        """The value for the current scale."""
        return {"tiny": tiny, "quick": quick, "full": full}[self.scale]

    @contextmanager
    def run(self, name: str, config: dict[str, Any], seed: int | None = None) -> Iterator[int]:
        """Record a run of this claim in the store; yields its id.

        The run is marked completed when the block ends, failed (with the traceback) if it
        raises; results are stored with :meth:`Store.finish_run` by the caller if needed.
        """
        run_id = self.store.start_run(
            name, "claim", config, claim=self.claim.id, scale=self.scale, seed=seed
        )
        self.run_ids.append(run_id)
        try:
            yield run_id
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            self.store.finish_run(run_id, status, error=traceback.format_exc(limit=8))
            raise
        if self.store.run(run_id).status == "running":
            self.store.finish_run(run_id, "completed")

    def seed_everything(self, seed: int) -> None:
        """Seed torch (and numpy) so that an experiment repeats exactly on CPU."""
        import numpy as np

        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)


class Claim(ABC):
    """One measurable statement about skip connections.

    Class attributes:
        id: stable ID, e.g. ``"C01"``; slug: e.g. ``"residual-toy"``.
        title: a short title; statement: what the article says.
        method: how skiplab measures it; criterion: the decision rule, in words.
        math: derivations shown in the report (plain text).
        references: papers, as short citations.
        default_seeds: seeds per scale when the user does not say.
        single_threaded: ``reproduce`` runs the experiment on one intra-op thread, for claims
            made of many tiny sequential steps where a thread pool only costs time.
    """

    id: ClassVar[str]
    slug: ClassVar[str]
    title: ClassVar[str]
    statement: ClassVar[str]
    method: ClassVar[str]
    criterion: ClassVar[str]
    math: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()
    default_seeds: ClassVar[dict[str, int]] = {"tiny": 1, "quick": 3, "full": 5}
    single_threaded: ClassVar[bool] = False  # run on one intra-op thread (small sequential work)

    @abstractmethod
    def run(self, ctx: Context) -> Evidence:
        """Do the experiment at ``ctx.scale`` and return what was measured."""

    @abstractmethod
    def decide(self, evidence: Evidence) -> Verdict:
        """Apply ``criterion`` to the measured numbers."""

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        """Draw the evidence into ``outdir`` (PNG); paths are returned relative to it."""
        return []

    def command(self, scale: str) -> str:
        """The exact command that re-runs this claim."""
        return f"skiplab reproduce --claims {self.id} --scale {scale} --force"


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, then restore the previous count.

    Claims that step small cells one time step at a time gain nothing from a thread pool on
    (64, 64) matmuls, and on a shared CPU its spin-waits made a tiny seq2seq run 30x slower
    (33 s vs 1 s measured with 8 busy processes on 2 cores).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_CLAIMS: dict[str, type[Claim]] = {}
C = TypeVar("C", bound=type[Claim])


def register_claim(cls: C) -> C:
    """Add a claim class to the catalogue (IDs and slugs must be unique)."""
    for other in _CLAIMS.values():
        if other.slug == cls.slug and other.id != cls.id:
            raise ValueError(f"claim slug {cls.slug!r} used by both {other.id} and {cls.id}")
    if cls.id in _CLAIMS and _CLAIMS[cls.id] is not cls:
        raise ValueError(f"claim id {cls.id} registered twice")
    _CLAIMS[cls.id] = cls
    return cls


def catalogue() -> dict[str, type[Claim]]:
    """Every registered claim class by id, in id order."""
    return dict(sorted(_CLAIMS.items()))


def select_claims(spec: str | Sequence[str] = "all") -> list[Claim]:
    """Claims named by ``"all"``, IDs (``"C01,C09"``, case-insensitive) or slugs.

    Raises:
        ValueError: an unknown name; the message lists the known IDs and slugs.
    """
    known = catalogue()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError("no claims selected; use 'all' or IDs such as C01,C09")
    if any(n.lower() == "all" for n in names):
        return [cls() for cls in known.values()]
    by_slug = {cls.slug: cls for cls in known.values()}
    chosen: list[Claim] = []
    for name in names:
        cls = known.get(name.upper()) or by_slug.get(name.lower())
        if cls is None:
            listing = ", ".join(f"{c.id} ({c.slug})" for c in known.values())
            raise ValueError(f"unknown claim {name!r}; known claims: {listing}")
        if all(type(c) is not cls for c in chosen):
            chosen.append(cls())
    return chosen


@dataclass
class Outcome:
    """What ``reproduce`` did with one claim."""

    claim: Claim
    status: str  # holds | fails | inconclusive | error | skipped
    reason: str
    wall_s: float = 0.0


def reproduce(
    claims: Sequence[Claim],
    *,
    scale: str,
    store: Store,
    workdir: str | os.PathLike[str],
    seeds: int | None = None,
    force: bool = False,
    device: str = "cpu",
    progress: bool = False,
    log: Any = None,
) -> list[Outcome]:
    """Run each claim not already complete at ``scale`` and store its verdict.

    A claim that raises is recorded as an error (its run marked failed) and the others go on.

    Args:
        seeds: number of seeds (default: each claim's own default for the scale).
        force: re-run claims that already have a verdict at this scale.
        log: called with one line of text per event (default: silent).
    """
    say = log or (lambda _msg: None)
    outcomes: list[Outcome] = []
    for claim in claims:
        n_seeds = seeds if seeds is not None else claim.default_seeds[scale]
        seed_list = list(range(n_seeds))
        done = store.latest_verdict(claim.id, scale)
        if done is not None and not force and done.seeds == seed_list:
            say(f"{claim.id} {claim.slug}: already {done.verdict} at {scale} scale (use --force)")
            outcomes.append(Outcome(claim, "skipped", done.reason, done.wall_s or 0.0))
            continue
        say(f"{claim.id} {claim.slug}: running at {scale} scale, seeds {seed_list}")
        ctx = Context(claim, scale, seed_list, store, Path(workdir) / claim.slug, device, progress)
        t0 = time.perf_counter()
        try:
            with single_thread() if claim.single_threaded else nullcontext():
                evidence = claim.run(ctx)
            evidence.run_ids = sorted(set(evidence.run_ids) | set(ctx.run_ids))
            if not evidence.seeds:
                evidence.seeds = seed_list
            verdict = claim.decide(evidence)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one broken claim must not lose the others
            wall = time.perf_counter() - t0
            msg = f"{type(err).__name__}: {err}"
            say(f"{claim.id} {claim.slug}: ERROR {msg}")
            run_id = store.start_run(f"{claim.id} error", "claim", {}, claim=claim.id, scale=scale)
            store.finish_run(run_id, "failed", error=traceback.format_exc(limit=12))
            outcomes.append(Outcome(claim, "error", msg, wall))
            continue
        wall = time.perf_counter() - t0
        store.save_verdict(
            claim.id, claim.slug, scale, verdict.status, verdict.reason, evidence.as_dict(),
            seed_list, evidence.run_ids, wall,
        )  # fmt: skip
        say(f"{claim.id} {claim.slug}: {verdict.status} ({wall:.1f} s): {verdict.reason}")
        outcomes.append(Outcome(claim, verdict.status, verdict.reason, wall))
    return outcomes
