"""The experiment runner: declared runs, their identity, the run handle, and reproduction.

A claim declares settings, conditions and a module-level ``measure``; :func:`reproduce` expands
conditions x seeds into :class:`RunSpec` s, reuses every stored run with the same identity,
hands the missing ones to an executor (:mod:`skiplab.claims._executors`), records each result
as it arrives and decides a claim as soon as its last run is in.

Identity. A run's key is a hash of (claim id, claim version, scale, settings, condition, seed):
changing a setting changes the key, so a stale result is never reused, and rerunning an
interrupted reproduction executes only the runs that are not stored.

One run, one process. Right before a run is dispatched the driver claims its key in the store
(:meth:`~skiplab.store.Store.claim_run`): a run stored meanwhile is reused, a run another live
process is executing is not started again (the driver waits for it and reuses its result, or
runs it itself if that process dies), so two reproductions of one store split the work.
``force`` ignores stored and running runs alike.

Workers measure, the driver writes. :func:`execute` runs one spec wherever the executor put it
(in process, a pool worker, a Ray task) and returns a :class:`RunOutcome` with the numbers and
the buffered per-step metrics; only the driver touches the store, so no shared filesystem is
needed and a run is stored whole or not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import random
import shutil
import socket
import time
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from skiplab.claims._base import SCALES, Claim, Evidence, _plain, catalogue
from skiplab.store import Store
from skiplab.train import DivergedError, History, TrainConfig, Trainer
from skiplab.train.tasks import Task

if TYPE_CHECKING:
    from skiplab.claims._executors import Executor

C = TypeVar("C")
M = TypeVar("M", bound=nn.Module)

#: Seconds between two looks at the runs another process is executing for this one.
WAIT_POLL_S = 0.5
#: ``run.fit`` checkpoints a training run this often, so a long run killed mid-way resumes
#: from its last checkpoint (short runs finish before the first one is due).
CHECKPOINT_EVERY_S = 60.0


def run_key(
    claim_id: str, version: int, scale: str, settings: Any, condition: Any, seed: int
) -> str:
    """The identity of one run: a hash of everything its result depends on."""
    payload = {
        "claim": claim_id,
        "version": version,
        "scale": scale,
        "settings": _plain(settings),
        "condition": _plain(condition),
        "seed": seed,
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class RunSpec:
    """One run to execute: picklable, so any executor can ship it to a worker.

    Attributes:
        claim: the claim id (a worker looks the claim up in the catalogue).
        module: the module that registers the claim (a worker imports it, so a claim defined
            outside skiplab runs on every executor too).
        scale, settings, condition, seed: what the run measures.
        key: its identity (:func:`run_key`).
        name: its name in the store, e.g. ``"C09 mnist1d plain56 seed 0"``.
        device: where it runs (``"cpu"``, ``"cuda"``).
        threads: torch intra-op threads for the run (1: one process per core is faster than
            threads fighting for busy cores, and the numbers are the same under every executor).
        workdir: scratch directory for checkpoints, created where the run executes.
        cost: relative cost, to dispatch the longest runs first.
    """

    claim: str
    module: str
    scale: str
    settings: Any
    condition: Any
    seed: int
    key: str
    name: str
    device: str = "cpu"
    threads: int = 1
    workdir: str = ""
    cost: float = 1.0


@dataclass
class RunOutcome:
    """What a worker sends back for one :class:`RunSpec`.

    Attributes:
        status: ``completed``, ``diverged`` (a training run's loss or gradient became
            non-finite: a measured outcome, stored and reused) or ``failed`` (an error).
        values: the numbers ``measure`` returned (empty when it failed).
        metrics: per-step rows ``(step, epoch, key, value)`` logged through the run handle.
        error: the divergence message or the traceback.
        started, wall_s: when and how long it ran; worker: host:pid that ran it.
        cpu_s: CPU seconds the run's process spent on it (one intra-op thread: its compute,
            which another process on the same cores does not inflate the way it inflates
            ``wall_s``).
    """

    key: str
    status: str
    values: dict[str, Any]
    metrics: list[tuple[int, int | None, str, float]]
    error: str | None
    started: float
    wall_s: float
    worker: str
    cpu_s: float = 0.0


@dataclass
class Fit:
    """What :meth:`Run.fit` returns.

    Attributes:
        history: per-epoch metrics (up to the divergence, if any).
        diverged: the divergence message (non-finite loss or gradient), else ``None``.
        steps: optimiser steps taken.
    """

    history: History
    diverged: str | None
    steps: int

    @property
    def last(self) -> dict[str, float]:
        return self.history.last


class Run:
    """The handle a claim's ``measure`` works through: device, seeding, training, logging.

    Attributes:
        device: where tensors and models go (``run.build``, ``run.put`` and ``run.fit`` place
            them; a claim never calls ``.to`` itself).
        seed: the run's seed (the runner has already seeded torch, numpy and random with it).
        scale: the scale being run.
        workdir: scratch space for this run's checkpoints.
    """

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.device = torch.device(spec.device)
        self.seed = spec.seed
        self.scale = spec.scale
        self.workdir = Path(spec.workdir) if spec.workdir else None
        self.diverged: str | None = None
        self._rows: dict[tuple[str, int], tuple[int | None, float]] = {}
        self._fits = 0

    # -- placement and seeding ----------------------------------------------------------
    def build(self, model: M | Callable[[], M], *, seed: int | None = None) -> M:
        """A model on the run's device; a factory is called right after seeding torch with
        the run's seed (or ``seed``), so every condition of one seed starts from the same init.
        """
        if not isinstance(model, nn.Module):
            torch.manual_seed(self.seed if seed is None else seed)
            model = model()
        return typing.cast(M, model.to(self.device))

    def put(self, *tensors: torch.Tensor) -> Any:
        """The tensors on the run's device (one tensor, or a tuple for several)."""
        moved = tuple(t.to(self.device) for t in tensors)
        return moved[0] if len(moved) == 1 else moved

    def generator(self, stream: int = 0) -> torch.Generator:
        """A CPU generator seeded from (seed, stream): independent draws per purpose."""
        return torch.Generator().manual_seed(_mix(self.seed, stream))

    # -- training and logging ----------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        task: Task,
        cfg: TrainConfig,
        *,
        prefix: str = "",
        until: Callable[[History], bool] | None = None,
    ) -> Fit:
        """Train ``model`` on ``task`` with the :class:`~skiplab.train.Trainer`.

        The shuffling is seeded with the run's seed; per-epoch metrics (and ``step_loss``
        every ``cfg.log_every`` steps) are logged as ``<prefix><metric>``. A divergence does
        not raise: it is returned in ``Fit.diverged`` and marks the whole run ``diverged``.
        A long fit checkpoints into the run's workdir and a rerun resumes from it.
        ``until(history)`` stops it early once true (e.g. ``EarlyStopping``; the task is
        evaluated then).
        """
        cfg = dataclasses.replace(cfg, seed=self.seed)
        checkpoint = None
        if self.workdir is not None:
            checkpoint = self.workdir / f"fit{self._fits}.pt"
        self._fits += 1

        def log(step: int, metrics: dict[str, float], epoch: int | None) -> None:
            self.log(step, epoch=epoch, **{f"{prefix}{k}": v for k, v in metrics.items()})

        trainer = Trainer(
            model, cfg, device=self.device, progress=False, checkpoint=checkpoint,
            checkpoint_every_s=CHECKPOINT_EVERY_S, tensorboard=False, log=log, until=until,
        )  # fmt: skip
        try:
            history = trainer.fit(task, resume=checkpoint is not None)
        except DivergedError as err:
            self.diverged = self.diverged or f"{prefix}{err}"
            return Fit(trainer.history, str(err), trainer.step)
        return Fit(history, None, trainer.step)

    def log(self, step: int, *, epoch: int | None = None, **metrics: float) -> None:
        """Record ``metrics`` at ``step`` (stored with the run; re-logging a step replaces it)."""
        for key, value in metrics.items():
            self._rows[(key, int(step))] = (epoch, float(value))

    def logged(self, key: str) -> list[tuple[int, float]]:
        """What this run has logged under ``key`` so far, ``[(step, value), ...]``."""
        return sorted((step, val) for (k, step), (_, val) in self._rows.items() if k == key)

    def rows(self) -> list[tuple[int, int | None, str, float]]:
        return [(step, ep, key, val) for (key, step), (ep, val) in sorted(self._rows.items())]


def _mix(seed: int, stream: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and random: a run starts from the same state anywhere."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def execute(spec: RunSpec) -> RunOutcome:
    """Run one spec: look the claim up, seed, measure, and return what it measured.

    Used by every executor, in process or in a worker; it never touches the store.
    """
    if spec.claim not in catalogue():
        importlib.import_module(spec.module)
    claim = catalogue()[spec.claim]()
    run = Run(spec)
    before = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    started = time.time()
    t0, c0 = time.perf_counter(), time.process_time()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        if run.workdir is not None:
            run.workdir.mkdir(parents=True, exist_ok=True)
        seed_everything(spec.seed)
        values = dict(claim.measure(run, spec.settings, spec.condition, spec.seed))
    except Exception:
        return RunOutcome(
            spec.key, "failed", {}, run.rows(), traceback.format_exc(limit=12), started,
            time.perf_counter() - t0, worker, time.process_time() - c0,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    if run.workdir is not None:
        shutil.rmtree(run.workdir, ignore_errors=True)
    status = "diverged" if run.diverged else "completed"
    return RunOutcome(
        spec.key, status, _jsonable(values), run.rows(), run.diverged, started,
        time.perf_counter() - t0, worker, time.process_time() - c0,
    )  # fmt: skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- the runs a summary sees ---------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord(Generic[C]):
    """One stored run of a claim, as its ``summarize`` sees it.

    Attributes:
        condition, seed: what was run.
        values: the numbers ``measure`` returned.
        status: ``completed`` or ``diverged``.
        error: the divergence message, if any.
        run_id: its id in the store; wall_s: seconds it took; cpu_s: CPU seconds.
        metrics: per-step rows by key: ``metrics["train_loss"] == [(step, value), ...]``.
    """

    condition: C
    seed: int
    values: Mapping[str, Any]
    status: str
    error: str | None
    run_id: int
    wall_s: float
    metrics: Mapping[str, list[tuple[int, float]]] = field(default_factory=dict)
    cpu_s: float = 0.0

    def get(self, key: str, default: Any = math.nan) -> Any:
        return self.values.get(key, default)

    def curve(self, key: str) -> list[float]:
        """The logged values of ``key`` in step order (empty when never logged)."""
        return [v for _, v in self.metrics.get(key, [])]

    def steps(self, key: str) -> list[int]:
        return [s for s, _ in self.metrics.get(key, [])]

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


class Runs(Generic[C]):
    """The stored runs of one claim, filtered by condition fields, in (plan, seed) order."""

    def __init__(self, records: Sequence[RunRecord[C]]) -> None:
        self.records = list(records)

    def __iter__(self) -> Iterator[RunRecord[C]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def where(self, **match: Any) -> Runs[C]:
        """Runs whose condition has every given field equal to the given value (a condition
        without such a field, of another kind, does not match)."""
        missing = object()
        return Runs(
            [
                r
                for r in self.records
                if all(getattr(r.condition, k, missing) == v for k, v in match.items())
            ]
        )

    def one(self, **match: Any) -> RunRecord[C]:
        found = self.where(**match).records
        if len(found) != 1:
            raise LookupError(f"expected one run with {match}, found {len(found)}")
        return found[0]

    def values(self, key: str, **match: Any) -> list[float]:
        """``key`` of every matching run (NaN where a run lacks it, e.g. it diverged)."""
        return [float(r.get(key)) for r in self.where(**match)]

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.records})

    @property
    def run_ids(self) -> list[int]:
        return sorted(r.run_id for r in self.records)


def load_runs(
    store: Store, plan: Sequence[tuple[Any, int, str]], ids: Mapping[str, int]
) -> Runs[Any]:
    """The stored runs of ``plan`` (``(condition, seed, key)``), with their metrics."""
    records = []
    for condition, seed, key in plan:
        run_id = ids[key]
        row = store.run(run_id)
        metrics: dict[str, list[tuple[int, float]]] = {}
        for step, _epoch, k, value in store.metrics(run_id):
            metrics.setdefault(k, []).append((step, value))
        records.append(
            RunRecord(
                condition,
                seed,
                store.results(run_id),
                row.status,
                row.error,
                run_id,
                row.wall_s or 0.0,
                metrics,
                row.cpu_s or 0.0,
            )
        )
    return Runs(records)


# -- reproduction --------------------------------------------------------------------------
@dataclass
class Outcome:
    """What ``reproduce`` did with one claim.

    Attributes:
        status: ``holds``, ``fails``, ``inconclusive`` or ``error``.
        wall_s: seconds of compute behind the verdict (the sum over its runs).
        cpu_s: CPU seconds behind it (the sum over its runs).
        executed, reused: how many of its runs ran now and how many came from the store.
        seedset: ``primary`` or ``replicate`` (the disjoint seed set of ``--replicate``).
        seeds: the seeds behind the verdict.
    """

    claim: Any
    status: str
    reason: str
    wall_s: float = 0.0
    executed: int = 0
    reused: int = 0
    seedset: str = "primary"
    seeds: list[int] = field(default_factory=list)
    cpu_s: float = 0.0


@dataclass
class _Job:
    """A claim being reproduced: its plan, the ids of its stored runs, what is missing."""

    claim: Claim[Any, Any, Any]
    settings: Any
    seeds: list[int]
    plan: list[tuple[Any, int, str]]
    ids: dict[str, int]
    missing: set[str]
    reused: int
    seedset: str = "primary"
    failed: list[str] = field(default_factory=list)


def seed_list(n: int, replicate: bool = False) -> list[int]:
    """The seeds of a reproduction: ``0..n-1``, or the disjoint ``1000..1000+n-1`` replicate."""
    start = 1000 if replicate else 0
    return list(range(start, start + n))


def reproduce(
    claims: Sequence[Claim[Any, Any, Any]],
    *,
    scale: str,
    store: Store,
    workdir: str | os.PathLike[str],
    seeds: int | None = None,
    replicate: bool = False,
    force: bool = False,
    data_path: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    threads: int = 1,
    executor: Executor | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Reproduce ``claims`` at ``scale``: run what is missing, store it, decide each claim.

    Every run of every claim goes to one executor at once (longest first), so a claim with
    few runs does not leave workers idle; a claim is decided and its verdict stored as soon
    as its last run is in. A run that raises marks its claim ``error`` and the others go on.

    Args:
        seeds: number of seeds (default: each claim's own default for the scale).
        replicate: also run every claim on the disjoint replicate seed set
            (:func:`seed_list`) and store that verdict beside the primary one.
        force: rerun every run, even those already stored.
        data_path: the user's dataset file, for the claims that take one
            (:meth:`Claim.with_data`); a claim that takes none raises ``ValueError``.
        device: torch device of every run.
        threads: torch intra-op threads per run.
        executor: where runs execute (default: in this process, one after another).
        log: called with one line of text per event (default: silent).

    Returns:
        one :class:`Outcome` per claim and seed set (primary first).
    """
    from skiplab.claims._executors import Progress, SerialExecutor

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    say = log or (lambda _msg: None)
    executor = executor or SerialExecutor()
    outcomes: dict[tuple[str, str], Outcome] = {}
    jobs: dict[tuple[str, str], _Job] = {}
    specs: list[RunSpec] = []
    seedsets = ("primary", "replicate") if replicate else ("primary",)
    settings = {c.id: c.settings(scale) for c in claims}
    if data_path is not None:  # every claim checked before anything runs
        settings = {c.id: c.with_data(settings[c.id], Path(data_path)) for c in claims}
    say(f"skiplab: {executor.describe()}, device {device}")
    for claim in claims:
        n = seeds if seeds is not None else claim.default_seeds[scale]
        for seedset in seedsets:
            chosen = seed_list(n, seedset == "replicate")
            job, todo = _plan(
                claim, settings[claim.id], scale, chosen, store, workdir, device, threads, force
            )
            job.seedset = seedset
            jobs[claim.id, seedset] = job
            specs.extend(todo)
            say(
                f"{claim.id} {claim.slug}: {len(job.plan)} runs at {scale} scale, {seedset} "
                f"seeds {chosen[0]}..{chosen[-1]}: {job.reused} stored, {len(todo)} to run"
            )
            if not todo:
                outcomes[claim.id, seedset] = _decide(job, store, scale, say)
    specs.sort(key=lambda s: -s.cost)
    totals: dict[str, int] = {}
    for (cid, _), job in jobs.items():
        totals[cid] = totals.get(cid, 0) + len(job.missing)
    meter = Progress(totals, say, interactive=progress, workers=executor.workers)
    meter.start(specs)
    by_key = {s.key: s for s in specs}
    job_of = {key: job for job in jobs.values() for key in job.missing}
    try:
        _Dispatch(store, job_of, by_key, outcomes, meter, scale, force, say).run(executor)
    finally:
        meter.close()
    for claim in claims:
        if (claim.id, "replicate") in outcomes:
            say(agreement(outcomes[claim.id, "primary"], outcomes[claim.id, "replicate"]))
    return [outcomes[c.id, s] for c in claims for s in seedsets if (c.id, s) in outcomes]


def agreement(primary: Outcome, replicate: Outcome) -> str:
    """One line saying whether a claim's verdict replicated on the disjoint seed set."""
    claim = primary.claim
    same = primary.status == replicate.status
    return (
        f"{claim.id} {claim.slug}: {'replicated' if same else 'NOT replicated'}: "
        f"{primary.status} on seeds {_span(primary.seeds)}, {replicate.status} on seeds "
        f"{_span(replicate.seeds)}"
    )


def _span(seeds: Sequence[int]) -> str:
    return f"{seeds[0]}..{seeds[-1]}" if seeds else "-"


def _plan(
    claim: Claim[Any, Any, Any],
    settings: Any,
    scale: str,
    seeds: list[int],
    store: Store,
    workdir: str | os.PathLike[str],
    device: str,
    threads: int,
    force: bool,
) -> tuple[_Job, list[RunSpec]]:
    plan = []
    specs = []
    for condition, seed in claim.plan(settings, seeds):
        key = run_key(claim.id, claim.version, scale, settings, condition, seed)
        plan.append((condition, seed, key))
    keys = [key for _, _, key in plan]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{claim.id}: its plan names the same (condition, seed) twice")
    ids = {} if force else store.reusable_runs(keys)
    seconds = store.mean_wall_by_condition(claim.id, scale)
    for condition, seed, key in plan:
        if key in ids:
            continue
        name = f"{claim.id} {claim.label(condition)} seed {seed}"
        cost = seconds.get(_condition_key(condition), claim.cost(settings, condition))
        specs.append(
            RunSpec(
                claim.id,
                type(claim).__module__,
                scale,
                settings,
                condition,
                seed,
                key,
                name,
                device,
                threads,
                str(Path(workdir) / claim.slug / key),
                cost,
            )
        )
    job = _Job(claim, settings, seeds, plan, ids, {s.key for s in specs}, len(plan) - len(specs))
    return job, specs


class _Dispatch:
    """Executes a reproduction's runs: claims each run's key in the store right before its
    dispatch, records what comes back, and waits for the runs other processes execute."""

    def __init__(
        self,
        store: Store,
        job_of: dict[str, _Job],
        by_key: dict[str, RunSpec],
        outcomes: dict[tuple[str, str], Outcome],
        meter: Any,
        scale: str,
        force: bool,
        say: Callable[[str], None],
    ) -> None:
        self.store, self.job_of, self.by_key, self.outcomes = store, job_of, by_key, outcomes
        self.meter, self.scale, self.force, self.say = meter, scale, force, say
        self.claimed: dict[str, int] = {}  # key -> this process's running row of it
        self.waiting: dict[str, int] = {}  # key -> the running row of another live process

    def run(self, executor: Executor) -> None:
        todo = list(self.by_key.values())  # longest first, as planned
        try:
            while todo:
                for result in executor.run(todo, start=self.start):
                    spec = self.by_key[result.key]
                    claimed = self.claimed.pop(spec.key, None)
                    run_id = _record(self.store, spec, result, claimed)
                    self.meter.done(spec, result)
                    failed = result.status == "failed"
                    self.settle(spec, run_id, _last_line(result.error) if failed else None)
                todo = self.await_others()
        finally:
            for run_id in self.claimed.values():  # the reproduction stopped (an error, ^C)
                self.store.finish_run(run_id, "interrupted", error="its reproduction stopped")

    def start(self, spec: RunSpec) -> bool:
        """Whether this process runs ``spec`` now (the executor asks right before dispatch)."""
        got = self.store.claim_run(
            spec.key, spec.name, "claim", _config(spec), claim=spec.claim, scale=spec.scale,
            seed=spec.seed, reuse=not self.force,
        )  # fmt: skip
        self.waiting.pop(spec.key, None)
        if got.state == "run":
            self.claimed[spec.key] = got.run_id
            return True
        if got.state == "busy":
            self.waiting[spec.key] = got.run_id
        else:  # stored by another process since this one planned
            self.job_of[spec.key].reused += 1
            self.meter.skip(spec)
            self.settle(spec, got.run_id)
        return False

    def settle(self, spec: RunSpec, run_id: int | None, failure: str | None = None) -> None:
        """Count ``spec`` in (stored as ``run_id``, or failed), and decide its claim when it
        was the claim's last run."""
        job = self.job_of[spec.key]
        job.missing.discard(spec.key)
        if failure is not None:
            job.failed.append(f"{spec.name}: {failure}")
        elif run_id is not None:
            job.ids[spec.key] = run_id
        if not job.missing:
            self.outcomes[spec.claim, job.seedset] = _decide(job, self.store, self.scale, self.say)

    def await_others(self) -> list[RunSpec]:
        """Wait for the runs other processes are executing.

        A run that completes there is reused (:meth:`start` finds it stored), one that fails
        there fails here too, and one whose process died is claimed here: those are returned,
        to run.
        """
        if self.waiting:
            self.say(f"waiting for {len(self.waiting)} run(s) being executed by another process")
        while self.waiting:
            time.sleep(WAIT_POLL_S)
            todo = []
            for key, run_id in list(self.waiting.items()):
                if self.store.is_live(run_id):
                    continue
                spec, row = self.by_key[key], self.store.run(run_id)
                if row.status == "failed":
                    del self.waiting[key]
                    self.meter.skip(spec)
                    self.settle(spec, None, f"failed in another process: {_last_line(row.error)}")
                elif self.start(spec):
                    self.say(f"{spec.name}: the process running it died; running it here")
                    todo.append(spec)
            if todo:
                return todo
        return []


def _condition_key(condition: Any) -> str:
    """A condition as the JSON text the store keeps in a run's config."""
    return json.dumps(_plain(condition), sort_keys=True, default=repr)


def _config(spec: RunSpec) -> dict[str, Any]:
    """A claim run's config as the store keeps it."""
    return {
        "claim": spec.claim,
        "scale": spec.scale,
        "settings": _plain(spec.settings),
        "condition": _plain(spec.condition),
        "seed": spec.seed,
        "device": spec.device,
        "threads": spec.threads,
    }


def _record(store: Store, spec: RunSpec, result: RunOutcome, claimed: int | None) -> int:
    """Store a finished run whole, into the row ``claimed`` for it when there is one."""
    config = {**_config(spec), "worker": result.worker}
    return store.record_run(
        spec.name, "claim", config, status=result.status, started=result.started,
        wall_s=result.wall_s, cpu_s=result.cpu_s, claim=spec.claim, scale=spec.scale,
        seed=spec.seed, key=spec.key, metrics=result.metrics, results=result.values,
        error=result.error, claimed=claimed,
    )  # fmt: skip


def _decide(job: _Job, store: Store, scale: str, say: Callable[[str], None]) -> Outcome:
    claim = job.claim
    executed = len(job.plan) - job.reused
    if job.failed:
        msg = f"{len(job.failed)} run(s) failed; first: {job.failed[0]}"
        say(f"{claim.id} {claim.slug}: ERROR {msg}")
        return Outcome(claim, "error", msg, 0.0, executed, job.reused, job.seedset, job.seeds)
    try:
        runs = load_runs(store, job.plan, job.ids)
        summary = claim.summarize(job.settings, runs)
        checks = list(claim.checks(summary))
        verdict = claim.decide(summary)
        evidence = Evidence(
            numbers=claim.numbers(summary),
            tables=claim.tables(summary),
            notes=claim.notes(summary),
            checks=[c.as_dict() for c in checks],
            literature=[c.as_dict() for c in claim.literature(summary)],
            summary=summary.to_json(),
            settings=_plain(job.settings),
            seeds=job.seeds,
            run_ids=runs.run_ids,
        )
    except Exception as err:  # a broken summary must not lose the other claims
        msg = f"{type(err).__name__}: {err}"
        say(f"{claim.id} {claim.slug}: ERROR {msg}")
        _record_error(store, claim.id, scale, traceback.format_exc(limit=12))
        return Outcome(claim, "error", msg, 0.0, executed, job.reused, job.seedset, job.seeds)
    wall = float(sum(r.wall_s for r in runs))
    cpu = evidence.cpu_s = float(sum(r.cpu_s for r in runs))
    store.save_verdict(
        claim.id, claim.slug, scale, verdict.status, verdict.reason, evidence.as_dict(),
        job.seeds, evidence.run_ids, wall, job.seedset,
    )  # fmt: skip
    which = "" if job.seedset == "primary" else " (replicate seeds)"
    say(
        f"{claim.id} {claim.slug}{which}: {verdict.status} ({wall:.1f} s of runs, {cpu:.1f} "
        f"CPU-s): {verdict.reason}"
    )
    return Outcome(
        claim,
        verdict.status,
        verdict.reason,
        wall,
        executed,
        job.reused,
        job.seedset,
        job.seeds,
        cpu,
    )


def _record_error(store: Store, claim_id: str, scale: str, error: str) -> None:
    """Keep the traceback of a claim that could not be decided (``skiplab runs`` shows it)."""
    store.record_run(
        f"{claim_id} error", "claim", {}, status="failed", started=time.time(), wall_s=0.0,
        claim=claim_id, scale=scale, error=error,
    )  # fmt: skip


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
