"""SQLite results store: runs, their metrics, and claim verdicts with their evidence.

One file (default ``./skiplab-runs/skiplab.sqlite``) in WAL mode so a reader (``skiplab runs``,
the report) never blocks a writer. Every write is a short ``BEGIN IMMEDIATE`` transaction, so
several processes (two ``skiplab reproduce`` at once, the ranks of a torchrun job) can share
one store without losing or duplicating rows.

A run is all or nothing. :meth:`Store.log_metrics` buffers a run's metrics in this process and
:meth:`Store.finish_run` commits them together with the final status and results in one
transaction; the ``runs`` row inserted by :meth:`Store.start_run` holds no data but the config.
If the process dies (SIGKILL, power loss) the buffer dies with it, and the next
:class:`Store` opened on the file marks the dead process's ``running`` runs ``interrupted``:
a run in the store is either complete with all its rows, or marked unfinished with none.
Reads in the writing process see its own buffered metrics.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("skiplab-runs") / "skiplab.sqlite"
RUN_STATUSES = ("running", "completed", "failed", "diverged", "interrupted")
VERDICTS = ("holds", "fails", "inconclusive")
SEEDSETS = ("primary", "replicate")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,              -- train | claim | diagnose | experiment
    claim TEXT,                      -- claim id when the run belongs to a claim
    scale TEXT,
    seed INTEGER,
    config TEXT NOT NULL,            -- JSON
    status TEXT NOT NULL,
    error TEXT,
    started REAL NOT NULL,
    finished REAL,
    wall_s REAL,
    owner TEXT,                      -- host:pid of the process that is running it
    key TEXT,                        -- a claim run's identity (see skiplab.claims._runner)
    cpu_s REAL                       -- CPU seconds of the process that ran it
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, key, step)
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,             -- JSON
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    claim TEXT NOT NULL,
    slug TEXT NOT NULL,
    scale TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,          -- JSON
    seeds TEXT NOT NULL,             -- JSON list
    run_ids TEXT NOT NULL,           -- JSON list
    wall_s REAL,
    created REAL NOT NULL,
    seedset TEXT NOT NULL DEFAULT 'primary'  -- primary, or replicate (a disjoint seed set)
);
CREATE INDEX IF NOT EXISTS verdicts_claim ON verdicts(claim, scale, created);
CREATE INDEX IF NOT EXISTS runs_claim ON runs(claim, scale);
"""
# Created after the migration that adds runs.key to a store written before it existed.
_INDEXES = "CREATE INDEX IF NOT EXISTS runs_key ON runs(key, status);"
#: Final statuses of a run whose outcome is a result (a divergence is a measured outcome).
REUSABLE = ("completed", "diverged")


class StoreError(RuntimeError):
    """The store file cannot be used (not SQLite, locked beyond the timeout, wrong schema)."""


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    kind: str
    claim: str | None
    scale: str | None
    seed: int | None
    config: dict[str, Any]
    status: str
    error: str | None
    started: float
    finished: float | None
    wall_s: float | None
    key: str | None = None
    cpu_s: float | None = None


@dataclass(frozen=True)
class VerdictRow:
    id: int
    claim: str
    slug: str
    scale: str
    verdict: str
    reason: str
    evidence: dict[str, Any]
    seeds: list[int]
    run_ids: list[int]
    wall_s: float | None
    created: float
    seedset: str = "primary"


def _json(value: Any, sort_keys: bool = True) -> str:
    """JSON text; configs sort their keys (one text per config), measured results and
    evidence keep their order (a claim's tables and figures list things in its order)."""
    return json.dumps(value, sort_keys=sort_keys, default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays and torch tensors reach the store from experiments.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


class Store:
    """The results store.

    Args:
        path: the SQLite file; its directory is created (default ``./skiplab-runs/skiplab.sqlite``).
        timeout: seconds to wait for another writer's lock (default 60).
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
            if "owner" not in columns:  # a store written before runs had owners
                self._conn.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
            if "key" not in columns:  # a store written before runs had identities
                self._conn.execute("ALTER TABLE runs ADD COLUMN key TEXT")
            if "cpu_s" not in columns:
                self._conn.execute("ALTER TABLE runs ADD COLUMN cpu_s REAL")
            verdict_columns = {row[1] for row in self._conn.execute("PRAGMA table_info(verdicts)")}
            if "seedset" not in verdict_columns:  # a store written before replication
                self._conn.execute(
                    "ALTER TABLE verdicts ADD COLUMN seedset TEXT NOT NULL DEFAULT 'primary'"
                )
            self._conn.executescript(_INDEXES)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"cannot open results store {self.path}: {err}") from err
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        # run id -> {(key, step): (epoch, value)} not yet committed (see the module docstring).
        self._pending: dict[int, dict[tuple[str, int], tuple[int | None, float]]] = {}
        self.recover()

    def recover(self) -> list[int]:
        """Mark ``running`` runs of dead processes on this host ``interrupted``; their ids.

        A killed process never committed the run's metrics, so such a run holds its config
        only; marking it keeps ``skiplab runs`` honest. Runs owned by live processes or other
        hosts are left alone.
        """
        host = socket.gethostname()
        dead: list[int] = []
        rows = self._conn.execute("SELECT id, owner FROM runs WHERE status = 'running'")
        for run_id, owner in rows.fetchall():
            if not owner or ":" not in owner:
                continue
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not _alive(int(pid)):
                dead.append(run_id)
        if dead:
            now = time.time()
            with self.transaction() as c:
                for run_id in dead:
                    c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
                    c.execute(
                        "UPDATE runs SET status = 'interrupted', finished = ?, "
                        "error = 'the process running it died before finishing' "
                        "WHERE id = ? AND status = 'running'",
                        (now, run_id),
                    )
        return dead

    def close(self) -> None:
        """Close the file; runs this process left ``running`` are finished ``interrupted``."""
        for run_id in list(self._pending):
            self.finish_run(run_id, "interrupted", error="the store was closed before it finished")
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- runs ---------------------------------------------------------------------------
    def start_run(
        self,
        name: str,
        kind: str,
        config: Mapping[str, Any],
        *,
        claim: str | None = None,
        scale: str | None = None,
        seed: int | None = None,
    ) -> int:
        """Insert a run with status ``running`` and return its id (names are stored verbatim)."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (name, kind, claim, scale, seed, config, status, started, "
                "owner) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (name, kind, claim, scale, seed, _json(dict(config)), time.time(), self._owner),
            )
            assert cur.lastrowid is not None
            self._pending[cur.lastrowid] = {}
            return cur.lastrowid

    def finish_run(
        self,
        run_id: int,
        status: str = "completed",
        error: str | None = None,
        results: Mapping[str, Any] | None = None,
    ) -> None:
        """Commit the buffered metrics, ``results`` and the final status in one transaction.

        The first final status wins: finishing a run that is already finished (a trainer
        marked it ``diverged``, then its caller reports ``failed``) changes nothing but adds
        any new metrics and results.
        """
        if status not in RUN_STATUSES or status == "running":
            allowed = tuple(s for s in RUN_STATUSES if s != "running")
            raise ValueError(f"run status must be one of {allowed}, got {status!r}")
        now = time.time()
        pending = self._pending.get(run_id, {})
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, epoch, key, value) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, ep, key, val) for (key, step), (ep, val) in pending.items()],
            )
            for key, value in (results or {}).items():
                c.execute(
                    "INSERT OR REPLACE INTO results (run_id, key, value) VALUES (?, ?, ?)",
                    (run_id, key, _json(value, sort_keys=False)),
                )
            c.execute(
                "UPDATE runs SET status = ?, error = ?, finished = ?, wall_s = ? - started "
                "WHERE id = ? AND status = 'running'",
                (status, error, now, now, run_id),
            )
        self._pending.pop(run_id, None)

    def record_run(
        self,
        name: str,
        kind: str,
        config: Mapping[str, Any],
        *,
        status: str,
        started: float,
        wall_s: float,
        cpu_s: float | None = None,
        claim: str | None = None,
        scale: str | None = None,
        seed: int | None = None,
        key: str | None = None,
        metrics: Sequence[tuple[int, int | None, str, float]] = (),
        results: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> int:
        """Insert a run that finished elsewhere, whole, in one transaction; returns its id.

        The experiment runner's workers measure and return; the driver alone writes, so a
        run is in the store with all its ``metrics`` rows ``(step, epoch, key, value)`` and
        ``results``, or not at all.
        """
        if status not in RUN_STATUSES or status == "running":
            allowed = tuple(s for s in RUN_STATUSES if s != "running")
            raise ValueError(f"run status must be one of {allowed}, got {status!r}")
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (name, kind, claim, scale, seed, config, status, error, "
                "started, finished, wall_s, owner, key, cpu_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name, kind, claim, scale, seed, _json(dict(config)), status, error,
                    started, started + wall_s, wall_s, self._owner, key, cpu_s,
                ),
            )  # fmt: skip
            run_id = cur.lastrowid
            assert run_id is not None
            c.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, epoch, key, value) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(st), ep, k, float(v)) for st, ep, k, v in metrics],
            )
            c.executemany(
                "INSERT OR REPLACE INTO results (run_id, key, value) VALUES (?, ?, ?)",
                [(run_id, k, _json(v, sort_keys=False)) for k, v in (results or {}).items()],
            )
        return run_id

    def reusable_runs(self, keys: Iterable[str]) -> dict[str, int]:
        """The newest completed (or diverged) run of each identity ``key`` that has one."""
        found: dict[str, int] = {}
        wanted = list(dict.fromkeys(keys))
        for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, MAX(id) FROM runs WHERE key IN ({marks}) "
                f"AND status IN {REUSABLE!r} GROUP BY key",
                chunk,
            )
            found.update({k: int(run_id) for k, run_id in rows})
        return found

    def mean_wall_by_condition(self, claim: str, scale: str) -> dict[str, float]:
        """Mean seconds of a claim's finished runs per condition (any seed, any version),
        keyed by the condition's JSON text: how long such a run took before."""
        rows = self._conn.execute(
            "SELECT json_extract(config, '$.condition'), AVG(wall_s) FROM runs WHERE claim = ? "
            f"AND scale = ? AND status IN {REUSABLE!r} AND key IS NOT NULL GROUP BY 1",
            (claim, scale),
        )
        return {
            json.dumps(json.loads(cond), sort_keys=True): float(wall)
            for cond, wall in rows
            if cond is not None and wall is not None
        }

    def log_metrics(
        self, run_id: int, step: int, values: Mapping[str, float], epoch: int | None = None
    ) -> None:
        """Record ``values`` at ``step`` (re-logging a step replaces it, so resume is idempotent).

        The values are buffered in this process and committed by :meth:`finish_run` (for a
        run this process did not start, e.g. one finished earlier, they are written at once).
        """
        rows = {(k, int(step)): (epoch, float(v)) for k, v in values.items()}
        if run_id in self._pending:
            self._pending[run_id].update(rows)
            return
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, epoch, key, value) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, ep, k, val) for (k, step), (ep, val) in rows.items()],
            )

    def metrics(
        self, run_id: int, key: str | None = None
    ) -> list[tuple[int, int | None, str, float]]:
        """Rows ``(step, epoch, key, value)`` of a run ordered by key and step.

        Includes this process's not yet committed metrics of the run.
        """
        sql = "SELECT step, epoch, key, value FROM metrics WHERE run_id = ?"
        args: tuple[Any, ...] = (run_id,)
        if key is not None:
            sql += " AND key = ?"
            args += (key,)
        rows = {(r[2], r[0]): r for r in self._conn.execute(sql, args)}
        for (k, step), (ep, val) in self._pending.get(run_id, {}).items():
            if key is None or k == key:
                rows[(k, step)] = (step, ep, k, val)
        return [rows[k] for k in sorted(rows)]

    def results(self, run_id: int) -> dict[str, Any]:
        rows = self._conn.execute("SELECT key, value FROM results WHERE run_id = ?", (run_id,))
        return {k: json.loads(v) for k, v in rows}

    def run(self, run_id: int) -> Run:
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run with id {run_id} in {self.path}")
        return _run(row)

    def runs(
        self,
        *,
        kind: str | None = None,
        claim: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Runs, newest first, filtered by kind, claim and status."""
        where, args = [], []
        for col, val in (("kind", kind), ("claim", claim), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [_run(r) for r in self._conn.execute(sql, args)]

    # -- verdicts -----------------------------------------------------------------------
    def save_verdict(
        self,
        claim: str,
        slug: str,
        scale: str,
        verdict: str,
        reason: str,
        evidence: Mapping[str, Any],
        seeds: list[int],
        run_ids: list[int],
        wall_s: float | None = None,
        seedset: str = "primary",
    ) -> int:
        """Store a claim's verdict; ``seedset`` is ``primary`` or ``replicate`` (the verdict
        of the same experiment on a disjoint seed set)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        if seedset not in SEEDSETS:
            raise ValueError(f"seedset must be one of {SEEDSETS}, got {seedset!r}")
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO verdicts (claim, slug, scale, verdict, reason, evidence, seeds, "
                "run_ids, wall_s, created, seedset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claim, slug, scale, verdict, reason, _json(dict(evidence), sort_keys=False),
                    _json(list(seeds)), _json(list(run_ids)), wall_s, time.time(), seedset,
                ),
            )  # fmt: skip
            assert cur.lastrowid is not None
            return cur.lastrowid

    def latest_verdict(
        self, claim: str, scale: str | None = None, seedset: str = "primary"
    ) -> VerdictRow | None:
        sql = "SELECT * FROM verdicts WHERE claim = ? AND seedset = ?"
        args: tuple[Any, ...] = (claim, seedset)
        if scale is not None:
            sql += " AND scale = ?"
            args += (scale,)
        row = self._conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _verdict(row) if row else None

    def latest_verdicts(
        self, scale: str | None = None, seedset: str = "primary"
    ) -> dict[str, VerdictRow]:
        """The newest verdict of every claim (at ``scale`` if given), keyed by claim id."""
        out: dict[str, VerdictRow] = {}
        sql = "SELECT * FROM verdicts WHERE seedset = ?" + (" AND scale = ?" if scale else "")
        args = (seedset, scale) if scale else (seedset,)
        for row in self._conn.execute(sql + " ORDER BY id", args):
            v = _verdict(row)
            out[v.claim] = v
        return out

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _run(row: tuple[Any, ...]) -> Run:
    return Run(
        id=row[0], name=row[1], kind=row[2], claim=row[3], scale=row[4], seed=row[5],
        config=json.loads(row[6]), status=row[7], error=row[8], started=row[9],
        finished=row[10], wall_s=row[11], key=row[13] if len(row) > 13 else None,
        cpu_s=row[14] if len(row) > 14 else None,
    )  # fmt: skip


def _verdict(row: tuple[Any, ...]) -> VerdictRow:
    return VerdictRow(
        id=row[0], claim=row[1], slug=row[2], scale=row[3], verdict=row[4], reason=row[5],
        evidence=json.loads(row[6]), seeds=json.loads(row[7]), run_ids=json.loads(row[8]),
        wall_s=row[9], created=row[10], seedset=row[11] if len(row) > 11 else "primary",
    )  # fmt: skip
