"""The pre-runner claim API, kept while claims move to the experiment runner.

A ``ScriptClaim`` writes its whole experiment in ``run(ctx)`` and decides in ``decide``; the
runner executes it in process, as before, without run-level caching. Claims move to
:class:`skiplab.claims.Claim` one by one; this module goes when the last one has moved.
"""

from __future__ import annotations

import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from skiplab.claims._base import (
    SCALES,
    Evidence,
    Figure,
    Table,
    Verdict,
    register_claim,
    single_thread,
)
from skiplab.store import Store

T = TypeVar("T")


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
        claim: ScriptClaim,
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


class ScriptClaim(ABC):
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

    def report_figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        return self.figures(evidence, outdir)

    def command(self, scale: str) -> str:
        """The exact command that re-runs this claim."""
        return f"skiplab reproduce --claims {self.id} --scale {scale} --force"


def run_script_claim(
    claim: ScriptClaim,
    scale: str,
    seeds: Sequence[int],
    store: Store,
    workdir: str | os.PathLike[str],
    device: str = "cpu",
    progress: bool = False,
) -> tuple[Verdict, Evidence]:
    """Run a script claim in process (one intra-op thread if it asks) and decide it."""
    ctx = Context(claim, scale, seeds, store, Path(workdir) / claim.slug, device, progress)
    with single_thread() if claim.single_threaded else nullcontext():
        evidence = claim.run(ctx)
    evidence.run_ids = sorted(set(evidence.run_ids) | set(ctx.run_ids))
    if not evidence.seeds:
        evidence.seeds = list(seeds)
    return claim.decide(evidence), evidence


Claim = ScriptClaim  # legacy claim modules import it under its old name

__all__ = [
    "SCALES",
    "Claim",
    "Context",
    "Evidence",
    "Figure",
    "ScriptClaim",
    "Table",
    "Verdict",
    "register_claim",
]
