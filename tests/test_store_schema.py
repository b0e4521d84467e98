"""The store's schema is checked before anything is written (issue 13, items 8 and 9).

A file that is not a skiplab store (foreign tables, a skiplab table with columns it lacks or
an extra NOT NULL column, some skiplab tables but not all, a newer schema number) is refused
with a StoreError naming the file, and its bytes are unchanged; a store written before the
schema had a number (``user_version`` 0) is migrated.
"""

import sqlite3

import pytest

from skiplab.cli import main
from skiplab.store import SCHEMA_VERSION, Store, StoreError


def _listing(directory):
    """Every file under ``directory`` with its bytes (what a refused open must not change)."""
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


def _make(path, *statements, user_version=0):
    raw = sqlite3.connect(path)
    for sql in statements:
        raw.execute(sql)
    raw.execute(f"PRAGMA user_version = {user_version}")
    raw.commit()
    raw.close()


def _refused(path, *needles):
    before = _listing(path.parent)
    with pytest.raises(StoreError) as err:
        Store(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message
    assert _listing(path.parent) == before  # nothing written, no -wal/-shm, no lock files
    return message


def test_a_foreign_database_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "athletes.sqlite"
    _make(path, "CREATE TABLE runs (id INTEGER PRIMARY KEY, athlete TEXT, km REAL)",
          "INSERT INTO runs (athlete, km) VALUES ('ann', 42.2)")  # fmt: skip
    _refused(path, "runs", "name")  # runs lacks skiplab's columns, e.g. name
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        assert tables == {"runs"}
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_store_with_a_table_skiplab_does_not_write_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    _make(path, "CREATE TABLE notes (text TEXT)", user_version=SCHEMA_VERSION)
    _refused(path, "notes")


def test_an_extra_not_null_column_is_one_clear_store_error(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.start_run("r", "train", {})
    raw = sqlite3.connect(path)
    raw.execute("ALTER TABLE runs ADD COLUMN project TEXT NOT NULL DEFAULT 'x'")
    raw.commit()
    raw.close()
    Store(path).close()  # NOT NULL with a default: skiplab's inserts still work
    raw = sqlite3.connect(path)
    raw.executescript(
        "CREATE TABLE runs2 AS SELECT * FROM runs; DROP TABLE runs;"
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
        "kind TEXT NOT NULL, claim TEXT, scale TEXT, seed INTEGER, config TEXT NOT NULL, "
        "status TEXT NOT NULL, error TEXT, started REAL NOT NULL, finished REAL, wall_s REAL, "
        "owner TEXT, key TEXT, cpu_s REAL, athlete TEXT NOT NULL);"
        "DROP TABLE runs2;"
    )
    raw.close()
    message = _refused(path, "athlete", "NOT NULL")
    assert main(["runs", "--store", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("skiplab: error:") and "athlete" in err and "\n" not in err
    assert message in err


def test_a_store_missing_some_skiplab_tables_is_reported_not_recreated(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        rid = store.start_run("r", "train", {})
        store.log_metrics(rid, 1, {"loss": 1.0})
        store.finish_run(rid)
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE verdicts")
    raw.execute("DROP TABLE results")
    raw.commit()
    raw.close()
    _refused(path, "results", "verdicts")


def test_a_store_with_a_newer_schema_number_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    _make(path, user_version=SCHEMA_VERSION + 1)
    _refused(path, "newer")


def test_a_numbered_store_whose_tables_were_dropped_is_reported(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TABLE metrics; DROP TABLE results; DROP TABLE verdicts; DROP TABLE runs;"
    )
    raw.close()
    _refused(path, "runs")


_OLD_SCHEMA = [  # a store written before runs had owners, identities and CPU seconds
    "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, kind TEXT "
    "NOT NULL, claim TEXT, scale TEXT, seed INTEGER, config TEXT NOT NULL, status TEXT NOT "
    "NULL, error TEXT, started REAL NOT NULL, finished REAL, wall_s REAL)",
    "CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, "
    "step INTEGER NOT NULL, epoch INTEGER, key TEXT NOT NULL, value REAL, "
    "PRIMARY KEY (run_id, key, step))",
    "CREATE TABLE results (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, "
    "key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key))",
    "CREATE TABLE verdicts (id INTEGER PRIMARY KEY AUTOINCREMENT, claim TEXT NOT NULL, slug "
    "TEXT NOT NULL, scale TEXT NOT NULL, verdict TEXT NOT NULL, reason TEXT NOT NULL, "
    "evidence TEXT NOT NULL, seeds TEXT NOT NULL, run_ids TEXT NOT NULL, wall_s REAL, "
    "created REAL NOT NULL)",
    "INSERT INTO runs (name, kind, config, status, started, wall_s) "
    "VALUES ('old', 'train', '{}', 'completed', 1.0, 2.0)",
    "INSERT INTO metrics VALUES (1, 5, 0, 'loss', 0.25)",
    "INSERT INTO verdicts (claim, slug, scale, verdict, reason, evidence, seeds, run_ids, "
    "created) VALUES ('C01', 'x', 'tiny', 'holds', 'r', '{}', '[0]', '[1]', 3.0)",
]


def old_store(path):
    """A store as the first skiplab versions wrote it (``user_version`` 0)."""
    _make(path, *_OLD_SCHEMA)
    return path


def test_an_unnumbered_store_of_an_older_skiplab_is_migrated(tmp_path):
    path = old_store(tmp_path / "s.sqlite")
    with Store(path) as store:
        (run,) = store.runs()
        assert (run.name, run.key, run.cpu_s) == ("old", None, None)
        assert store.metrics(run.id) == [(5, 0, "loss", 0.25)]
        verdict = store.latest_verdict("C01")
        assert verdict is not None and verdict.seedset == "primary"
        rid = store.start_run("new", "train", {})
        store.finish_run(rid)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {r[1] for r in raw.execute("PRAGMA table_info(runs)")}
        assert {"owner", "key", "cpu_s"} <= columns
    with Store(path) as store:  # opening a current store changes nothing
        assert [r.name for r in store.runs()] == ["new", "old"]


def test_an_empty_file_is_initialised(tmp_path):
    path = tmp_path / "s.sqlite"
    path.touch()
    with Store(path) as store:
        rid = store.start_run("r", "train", {})
        store.finish_run(rid)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
