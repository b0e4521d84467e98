"""SQLite results store: runs, their metrics, and claim verdicts with their evidence.

One file (default ``./skiplab-runs/skiplab.sqlite``) in WAL mode, so a reader never blocks a
writer. Every write is a short ``BEGIN IMMEDIATE`` transaction, so several processes (two
``skiplab reproduce`` at once, the ranks of a torchrun job) can share one store without losing
or duplicating rows.

Schema. The store's schema number is ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`). Opening
a file checks it before anything is written: a file with tables skiplab does not write, a
skiplab table that lacks a column or has an extra ``NOT NULL`` column without a default, a
file with some of skiplab's tables but not all, a schema number this skiplab does not know, or
a file that is not SQLite is refused with a :class:`StoreError` that names the file, and the
file is left byte for byte as it was. A store written before the schema had a number
(``user_version`` 0, columns added since missing) is migrated in one transaction; a database
with no tables at all (a new or 0-byte file) is initialised.

Readers. ``Store(path, readonly=True)`` (``skiplab runs``, ``skiplab report``) never writes:
no schema script, no migration, no recovery (a dead run still reads ``running`` until a writer
opens the store), no lock file. While no writer has the file open (no ``-wal`` beside it) it
reads the file as an immutable snapshot and creates nothing, so it works on a read-only
mount; once a writer appears it rereads through SQLite's read-only path, which uses that
writer's ``-wal``/``-shm`` (SQLite leaves them in place if this reader outlives the writer).
An unmigrated store reads as if migrated (missing columns read as their defaults).

A run is all or nothing. :meth:`Store.log_metrics` buffers a run's metrics in this process and
:meth:`Store.finish_run` commits them together with the final status and results in one
transaction; the ``runs`` row inserted by :meth:`Store.start_run` (or :meth:`Store.claim_run`)
holds no data but the config.

Liveness. Every writing :class:`Store` holds an exclusive ``flock`` on its own lock file,
``<dir>/.<store name>.owners/<token>.lock``, and stores the token as ``runs.owner`` of the
runs it starts. The kernel drops the lock when the process dies (SIGKILL included); it is not
a PID, so processes in other PID namespaces or containers on the same host cannot mistake a
live run for a dead one. Opening a writer marks ``running`` runs ``interrupted`` (and deletes
their rows) only when their owner's lock file exists and is not locked; a run whose lock file
is not there (another file-system view, an owner written by an older skiplab as host:pid) is
left alone. A run marked ``interrupted`` while its process still ran is corrected when that
process finishes it. Lock files of owners that are gone are removed (the ``.owners``
directory stays).

Claim runs. :meth:`Store.claim_run` gives one run identity (``key``) to one live process at a
time: it answers with a reusable stored run, with the running row of another live process
(the caller waits for it), or with a new ``running`` row of this process, which
:meth:`Store.record_run` fills when the result arrives. A running row whose owner cannot be
checked does not hold its key back (its end could never be seen).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiplab._files import FileLock, is_locked

DEFAULT_PATH = Path("skiplab-runs") / "skiplab.sqlite"
RUN_STATUSES = ("running", "completed", "failed", "diverged", "interrupted")
VERDICTS = ("holds", "fails", "inconclusive")
SEEDSETS = ("primary", "replicate")
#: The schema number this skiplab writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
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
    owner TEXT,                      -- token of the Store holding the run's owner lock
    key TEXT,                        -- a claim run's identity (see skiplab.claims._runner)
    cpu_s REAL                       -- CPU seconds of the process that ran it
)""",
    """CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, key, step)
)""",
    """CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,             -- JSON
    PRIMARY KEY (run_id, key)
)""",
    """CREATE TABLE IF NOT EXISTS verdicts (
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
)""",
)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS verdicts_claim ON verdicts(claim, scale, created)",
    "CREATE INDEX IF NOT EXISTS runs_claim ON runs(claim, scale)",
    "CREATE INDEX IF NOT EXISTS runs_key ON runs(key, status)",
)
_TABLES = ("runs", "metrics", "results", "verdicts")
#: Columns added to stores before the schema had a number: migration 1 adds what is missing.
_ADDED_BEFORE_1 = {
    "runs": {"owner": "TEXT", "key": "TEXT", "cpu_s": "REAL"},
    "verdicts": {"seedset": "TEXT NOT NULL DEFAULT 'primary'"},
}
_RUN_COLUMNS = (
    "id, name, kind, claim, scale, seed, config, status, error, started, finished, wall_s, key, "
    "cpu_s"
)
_VERDICT_COLUMNS = (
    "id, claim, slug, scale, verdict, reason, evidence, seeds, run_ids, wall_s, created, seedset"
)
_TOKEN = re.compile(r"[0-9a-f]{32}")
#: Final statuses of a run whose outcome is a result (a divergence is a measured outcome).
REUSABLE = ("completed", "diverged")


class StoreError(RuntimeError):
    """The store file cannot be used (not SQLite, locked beyond the timeout, wrong schema,
    opened read-only and written to)."""


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


@dataclass(frozen=True)
class Claimed:
    """What :meth:`Store.claim_run` found for a run identity.

    Attributes:
        state: ``run`` (this process runs it: ``run_id`` is its ``running`` row), ``stored``
            (``run_id`` is a completed or diverged run to reuse) or ``busy`` (``run_id`` is the
            ``running`` row of another live process).
    """

    state: str
    run_id: int


@dataclass(frozen=True)
class _Shape:
    """What :func:`_check_schema` found: the schema number, whether the database holds no
    tables yet, and the columns (by table) the migrations still have to add."""

    version: int
    empty: bool
    missing: dict[str, tuple[str, ...]]


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
        path: the SQLite file; a writer creates its directory (default
            ``./skiplab-runs/skiplab.sqlite``).
        timeout: seconds to wait for another writer's lock (default 60).
        readonly: read without writing anything (see the module docstring); the file must
            exist and every write raises :class:`StoreError`.

    Raises:
        StoreError: the file is not a skiplab store (see the module docstring); nothing was
            written to it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        timeout: float = 60.0,
        *,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._timeout = timeout
        self._wal = self.path.with_name(self.path.name + "-wal")
        self._immutable = False
        self._token = uuid.uuid4().hex
        self._lock: FileLock | None = None
        # run id -> {(key, step): (epoch, value)} not yet committed (see the module docstring).
        self._pending: dict[int, dict[tuple[str, int], tuple[int | None, float]]] = {}
        if readonly:
            self._conn = self._open_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            shape = _check_schema(self._conn, self.path)  # reads only
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            if shape.empty or shape.version < SCHEMA_VERSION:
                with self.transaction() as c:  # another process may have done it meanwhile
                    _upgrade(c, _check_schema(c, self.path))
        except (sqlite3.DatabaseError, StoreError) as err:
            self._conn.close()
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"cannot open results store {self.path}: {err}") from err
        self._lock = _hold_owner_lock(self._owners_dir(), self._token)
        self.recover()

    # -- opening ------------------------------------------------------------------------
    def _open_readonly(self) -> sqlite3.Connection:
        """A connection that cannot write; an immutable snapshot while no writer is open."""
        if not self.path.is_file():
            raise StoreError(f"no results store at {self.path}")
        # Without a -wal no connection has the file open; SQLite's read-only path would create
        # -wal/-shm (and fail on a read-only mount), so read the file as it is, and reopen
        # once a writer appears (see _read).
        self._immutable = not self._wal.exists()
        mode = "immutable=1" if self._immutable else "mode=ro"
        uri = f"{self.path.resolve().as_uri()}?{mode}"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None)
            shape = _check_schema(conn, self.path)
            if shape.empty:
                raise StoreError(f"results store {self.path} is empty: it holds no runs yet")
            for table, columns in shape.missing.items():  # read an unmigrated store as migrated
                conn.execute(_defaults_view(conn, table, columns))
        except sqlite3.DatabaseError as err:
            raise StoreError(f"cannot read results store {self.path}: {err}") from err
        return conn

    def _stale(self) -> bool:
        """Whether this reader reads a snapshot and a writer has opened the file since."""
        return self._immutable and self._wal.exists()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            rows = self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError:
            if not self._stale():
                raise
            rows = []
        if self._stale():
            self._conn.close()
            self._conn = self._open_readonly()
            rows = self._conn.execute(sql, args).fetchall()
        return rows

    # -- liveness -----------------------------------------------------------------------
    def _owners_dir(self) -> Path:
        return self.path.parent / f".{self.path.name}.owners"

    def _owner_alive(self, owner: str | None) -> bool | None:
        """Whether the process owning a run lives: True, False, or None (cannot tell)."""
        if owner == self._token:
            return True
        if owner is None or not _TOKEN.fullmatch(owner):
            return None  # none, or host:pid from an older skiplab: a PID proves nothing
        lock = self._owners_dir() / f"{owner}.lock"
        if not os.access(lock, os.R_OK):
            return None  # another view of the file system; its owner may well live
        return is_locked(lock)

    def is_live(self, run_id: int) -> bool:
        """Whether run ``run_id`` is ``running`` in a process that is alive."""
        row = self._read("SELECT status, owner FROM runs WHERE id = ?", (run_id,))
        return bool(row) and row[0][0] == "running" and self._owner_alive(row[0][1]) is True

    def recover(self) -> list[int]:
        """Mark ``running`` runs of dead owners ``interrupted``; their ids.

        A killed process never committed the run's metrics, so such a run holds its config
        only; marking it keeps ``skiplab runs`` honest. Runs of live owners, and runs whose
        owner cannot be checked, are left alone (see the module docstring). A read-only store
        marks nothing.
        """
        if self.readonly:
            return []
        rows = self._read("SELECT id, owner FROM runs WHERE status = 'running'")
        dead = [run_id for run_id, owner in rows if self._owner_alive(owner) is False]
        if dead:
            with self.transaction() as c:
                dead = _interrupt(c, dead, "the process running it died before finishing")
        self._sweep_owner_locks()
        return dead

    def _sweep_owner_locks(self) -> None:
        """Remove the lock files of owners that are gone and own no ``running`` run."""
        try:
            names = os.listdir(self._owners_dir())
        except OSError:
            return
        running = {o for (o,) in self._read("SELECT owner FROM runs WHERE status = 'running'")}
        for name in names:
            token = name.removesuffix(".lock")
            if token == name or token == self._token or token in running:
                continue
            lock = self._owners_dir() / name
            if not is_locked(lock):  # a token is never taken again: nobody can lock it later
                with contextlib.suppress(OSError):
                    os.unlink(lock)

    def close(self) -> None:
        """Close the file; runs this process left ``running`` are finished ``interrupted``."""
        for run_id in list(self._pending):
            self.finish_run(run_id, "interrupted", error="the store was closed before it finished")
        if self._lock is not None:
            mine = self._read(
                "SELECT 1 FROM runs WHERE owner = ? AND status = 'running' LIMIT 1", (self._token,)
            )
            self._lock.release()
            if not mine:  # else the next opener finds it unlocked and marks those runs
                with contextlib.suppress(OSError):
                    os.unlink(self._lock.path)
            self._lock = None
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception."""
        if self.readonly:
            raise StoreError(f"results store {self.path} is open read-only; nothing is written")
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
        key: str | None = None,
    ) -> int:
        """Insert a run with status ``running`` and return its id (names are stored verbatim)."""
        with self.transaction() as c:
            return self._insert_running(c, name, kind, config, claim, scale, seed, key)

    def _insert_running(
        self,
        c: sqlite3.Connection,
        name: str,
        kind: str,
        config: Mapping[str, Any],
        claim: str | None,
        scale: str | None,
        seed: int | None,
        key: str | None,
    ) -> int:
        cur = c.execute(
            "INSERT INTO runs (name, kind, claim, scale, seed, config, status, started, owner, "
            "key) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (name, kind, claim, scale, seed, _json(dict(config)), time.time(), self._token, key),
        )
        assert cur.lastrowid is not None
        self._pending[cur.lastrowid] = {}
        return cur.lastrowid

    def claim_run(
        self,
        key: str,
        name: str,
        kind: str,
        config: Mapping[str, Any],
        *,
        claim: str | None = None,
        scale: str | None = None,
        seed: int | None = None,
        reuse: bool = True,
    ) -> Claimed:
        """Give the run identity ``key`` to this process unless it is stored or running.

        In one transaction: the newest completed or diverged run of ``key`` (``stored``), else
        the ``running`` row of another live process (``busy``), else this process's own
        ``running`` row of ``key`` or a new one (``run``, filled later by :meth:`record_run`
        with ``claimed=``). Running rows of dead owners are marked ``interrupted`` on the way.
        With ``reuse=False`` (``--force``) stored and busy runs are ignored.
        """
        with self.transaction() as c:
            if reuse:
                (stored,) = c.execute(
                    f"SELECT MAX(id) FROM runs WHERE key = ? AND status IN {REUSABLE!r}", (key,)
                ).fetchone()
                if stored is not None:
                    return Claimed("stored", int(stored))
            running = c.execute(
                "SELECT id, owner FROM runs WHERE key = ? AND status = 'running' ORDER BY id DESC",
                (key,),
            ).fetchall()
            dead = []
            for run_id, owner in running:
                if owner == self._token:  # a retry of its own run
                    return Claimed("run", int(run_id))
                alive = self._owner_alive(owner)
                if alive and reuse:
                    return Claimed("busy", int(run_id))
                if alive is False:
                    dead.append(run_id)
            _interrupt(c, dead, "the process running it died before finishing")
            run_id = self._insert_running(c, name, kind, config, claim, scale, seed, key)
            return Claimed("run", run_id)

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
        any new metrics and results. A run this process started and has not finished is the
        exception: if another process marked it ``interrupted`` meanwhile, this finish
        corrects it.
        """
        if status not in RUN_STATUSES or status == "running":
            allowed = tuple(s for s in RUN_STATUSES if s != "running")
            raise ValueError(f"run status must be one of {allowed}, got {status!r}")
        now = time.time()
        mine = run_id in self._pending
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
                "WHERE id = ? AND (status = 'running' OR (? AND owner = ?))",
                (status, error, now, now, run_id, mine, self._token),
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
        claimed: int | None = None,
    ) -> int:
        """Store a run that finished elsewhere, whole, in one transaction; returns its id.

        The experiment runner's workers measure and return; the driver alone writes, so a
        run is in the store with all its ``metrics`` rows ``(step, epoch, key, value)`` and
        ``results``, or not at all. ``claimed``: the ``running`` row :meth:`claim_run` gave
        this process for it, which is filled (a new row is inserted if it is not there).
        """
        if status not in RUN_STATUSES or status == "running":
            allowed = tuple(s for s in RUN_STATUSES if s != "running")
            raise ValueError(f"run status must be one of {allowed}, got {status!r}")
        values = (
            name, kind, claim, scale, seed, _json(dict(config)), status, error, started,
            started + wall_s, wall_s, self._token, key, cpu_s,
        )  # fmt: skip
        with self.transaction() as c:
            run_id = None
            if claimed is not None:
                cur = c.execute(
                    "UPDATE runs SET name = ?, kind = ?, claim = ?, scale = ?, seed = ?, "
                    "config = ?, status = ?, error = ?, started = ?, finished = ?, wall_s = ?, "
                    "owner = ?, key = ?, cpu_s = ? WHERE id = ? AND owner = ? "
                    "AND status IN ('running', 'interrupted')",
                    (*values, claimed, self._token),
                )
                if cur.rowcount == 1:
                    run_id = claimed
                    c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
                    c.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
            if run_id is None:
                cur = c.execute(
                    "INSERT INTO runs (name, kind, claim, scale, seed, config, status, error, "
                    "started, finished, wall_s, owner, key, cpu_s) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
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
        if claimed is not None:
            self._pending.pop(claimed, None)
        return run_id

    def reusable_runs(self, keys: Iterable[str]) -> dict[str, int]:
        """The newest completed (or diverged) run of each identity ``key`` that has one."""
        found: dict[str, int] = {}
        wanted = list(dict.fromkeys(keys))
        for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                f"SELECT key, MAX(id) FROM runs WHERE key IN ({marks}) "
                f"AND status IN {REUSABLE!r} GROUP BY key",
                chunk,
            )
            found.update({k: int(run_id) for k, run_id in rows})
        return found

    def mean_wall_by_condition(self, claim: str, scale: str) -> dict[str, float]:
        """Mean seconds of a claim's finished runs per condition (any seed, any version),
        keyed by the condition's JSON text: how long such a run took before."""
        rows = self._read(
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
        rows = {(r[2], r[0]): tuple(r) for r in self._read(sql, args)}
        for (k, step), (ep, val) in self._pending.get(run_id, {}).items():
            if key is None or k == key:
                rows[(k, step)] = (step, ep, k, val)
        return [rows[k] for k in sorted(rows)]

    def results(self, run_id: int) -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM results WHERE run_id = ?", (run_id,))
        return {k: json.loads(v) for k, v in rows}

    def run(self, run_id: int) -> Run:
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"no run with id {run_id} in {self.path}")
        return _run(rows[0])

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
        sql = f"SELECT {_RUN_COLUMNS} FROM runs" + (
            " WHERE " + " AND ".join(where) if where else ""
        )
        sql += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [_run(r) for r in self._read(sql, args)]

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
        sql = f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE claim = ? AND seedset = ?"
        args: tuple[Any, ...] = (claim, seedset)
        if scale is not None:
            sql += " AND scale = ?"
            args += (scale,)
        rows = self._read(sql + " ORDER BY id DESC LIMIT 1", args)
        return _verdict(rows[0]) if rows else None

    def latest_verdicts(
        self, scale: str | None = None, seedset: str = "primary"
    ) -> dict[str, VerdictRow]:
        """The newest verdict of every claim (at ``scale`` if given), keyed by claim id."""
        out: dict[str, VerdictRow] = {}
        sql = f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE seedset = ?"
        sql += " AND scale = ?" if scale else ""
        args = (seedset, scale) if scale else (seedset,)
        for row in self._read(sql + " ORDER BY id", args):
            v = _verdict(row)
            out[v.claim] = v
        return out

    def integrity_ok(self) -> bool:
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")


# -- schema ---------------------------------------------------------------------------------
@functools.cache
def _expected_columns() -> dict[str, dict[str, tuple[Any, ...]]]:
    """Table -> column -> ``PRAGMA table_info`` row of the schema this skiplab writes."""
    conn = sqlite3.connect(":memory:")
    try:
        for sql in _SCHEMA:
            conn.execute(sql)
        return {t: {r[1]: r for r in conn.execute(f"PRAGMA table_info({t})")} for t in _TABLES}
    finally:
        conn.close()


def _check_schema(conn: sqlite3.Connection, path: Path) -> _Shape:
    """Check the store's tables and schema number, reading only; raise what is wrong."""
    where = f"results store {path}"
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    tables = {
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not name.startswith("sqlite_")
    }
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} has schema {version}, newer than this skiplab's {SCHEMA_VERSION}; "
            "upgrade skiplab to use it"
        )
    if not tables:
        if version == 0:
            return _Shape(0, True, {})
        raise StoreError(
            f"{where} has schema {version} but no tables (runs, metrics, results, verdicts); "
            "it is not recreated: restore the file or choose another --store"
        )
    missing: dict[str, tuple[str, ...]] = {}
    for table in [t for t in _TABLES if t in tables]:
        expected = _expected_columns()[table]
        info = {r[1]: r for r in conn.execute(f"PRAGMA table_info({table})")}
        added = _ADDED_BEFORE_1.get(table, {}) if version < 1 else {}
        lacks = [c for c in expected if c not in info]
        if unknown := [c for c in lacks if c not in added]:
            raise StoreError(
                f"{where}: table {table} lacks column(s) {', '.join(unknown)}; "
                "it is not a skiplab results store (choose another --store)"
            )
        for name, (_, _, _, notnull, default, pk) in info.items():
            if name not in expected and notnull and default is None and not pk:
                raise StoreError(
                    f"{where}: table {table} has a column skiplab does not write, {name} NOT "
                    "NULL without a default, so no row could be stored; drop the column or "
                    "choose another --store"
                )
        if lacks:
            missing[table] = tuple(lacks)
    if foreign := sorted(tables - set(_TABLES)):
        raise StoreError(
            f"{where} holds table(s) skiplab does not write ({', '.join(foreign)}); "
            "it is not a skiplab results store (choose another --store)"
        )
    if absent := [t for t in _TABLES if t not in tables]:
        raise StoreError(
            f"{where} lacks table(s) {', '.join(absent)}; they are not recreated next to the "
            "rows it holds: restore the file or choose another --store"
        )
    return _Shape(version, False, missing)


def _upgrade(c: sqlite3.Connection, shape: _Shape) -> None:
    """Create the tables of an empty store, or migrate an older one, inside a transaction."""
    if shape.empty:
        for sql in _SCHEMA:
            c.execute(sql)
    elif shape.version < 1:  # migration 1: columns added before the schema had a number
        for table, columns in shape.missing.items():
            for column in columns:
                c.execute(
                    f"ALTER TABLE {table} ADD COLUMN {column} {_ADDED_BEFORE_1[table][column]}"
                )
    for sql in _INDEXES:
        c.execute(sql)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _defaults_view(conn: sqlite3.Connection, table: str, missing: Sequence[str]) -> str:
    """A TEMP view that shows ``table`` with its ``missing`` columns at their defaults (a
    read-only store written before those columns existed reads like a migrated one)."""
    present = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
    extra = [f"{_expected_columns()[table][c][4] or 'NULL'} AS {c}" for c in missing]
    return f"CREATE TEMP VIEW {table} AS SELECT {', '.join(present + extra)} FROM main.{table}"


# -- liveness -------------------------------------------------------------------------------
def _hold_owner_lock(directory: Path, token: str) -> FileLock:
    """Lock ``directory/<token>.lock`` for this process's lifetime.

    The file is locked under a temporary name and renamed into place, so the name is locked
    from the moment it exists (a sweep by another process cannot take it for a dead owner's).
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{token}.tmp"
    tmp.write_text(f"{socket.gethostname()} pid {os.getpid()} since {time.time():.0f}\n")
    lock = FileLock(tmp, what=f"owner lock {token}").acquire()
    final = directory / f"{token}.lock"
    os.replace(tmp, final)
    lock.path = final
    return lock


def _interrupt(c: sqlite3.Connection, run_ids: Iterable[int], error: str) -> list[int]:
    """Mark the still ``running`` runs among ``run_ids`` interrupted, with no rows; their ids."""
    now, done = time.time(), []
    for run_id in run_ids:
        cur = c.execute(
            "UPDATE runs SET status = 'interrupted', finished = ?, error = ? "
            "WHERE id = ? AND status = 'running'",
            (now, error, run_id),
        )
        if cur.rowcount:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
            done.append(run_id)
    return done


def _run(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0], name=row[1], kind=row[2], claim=row[3], scale=row[4], seed=row[5],
        config=json.loads(row[6]), status=row[7], error=row[8], started=row[9],
        finished=row[10], wall_s=row[11], key=row[12], cpu_s=row[13],
    )  # fmt: skip


def _verdict(row: Sequence[Any]) -> VerdictRow:
    return VerdictRow(
        id=row[0], claim=row[1], slug=row[2], scale=row[3], verdict=row[4], reason=row[5],
        evidence=json.loads(row[6]), seeds=json.loads(row[7]), run_ids=json.loads(row[8]),
        wall_s=row[9], created=row[10], seedset=row[11],
    )  # fmt: skip
