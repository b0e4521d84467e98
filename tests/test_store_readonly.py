"""A read-only store is read without writing anything (issue 13, item 7).

``Store(path, readonly=True)`` (what ``skiplab runs`` and ``skiplab report`` open) leaves the
file's bytes and the directory listing as they were: no ``-wal``/``-shm``, no lock files, no
recovery, no schema script. It works on a read-only mount.
"""

import subprocess

import pytest

from skiplab.cli import main
from skiplab.store import Store, StoreError
from test_store_schema import _listing, old_store


def _filled(path):
    with Store(path) as store:
        rid = store.start_run("r1", "train", {"lr": 0.1}, seed=3)
        store.log_metrics(rid, 10, {"loss": 1.5}, epoch=1)
        store.finish_run(rid, "completed", results={"final": {"loss": 1.5}})
        store.save_verdict("C01", "residual-toy", "tiny", "holds", "ok", {}, [0], [rid])
    return rid


def test_a_read_only_store_reads_and_changes_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    rid = _filled(path)
    before = _listing(tmp_path)
    with Store(path, readonly=True) as store:
        assert [r.id for r in store.runs()] == [rid]
        assert store.run(rid).status == "completed"
        assert store.metrics(rid) == [(10, 1, "loss", 1.5)]
        assert store.results(rid) == {"final": {"loss": 1.5}}
        assert store.latest_verdicts()["C01"].verdict == "holds"
        assert store.reusable_runs(["nokey"]) == {}
        assert store.integrity_ok()
        assert store.recover() == []
        with pytest.raises(StoreError, match="read-only"):
            store.start_run("r2", "train", {})
        with pytest.raises(StoreError, match="read-only"):
            store.save_verdict("C01", "x", "tiny", "holds", "", {}, [], [])
    assert _listing(tmp_path) == before


def test_a_read_only_store_sees_what_a_writer_adds_after_it_opened(tmp_path):
    path = tmp_path / "s.sqlite"
    _filled(path)
    with Store(path, readonly=True) as reader:
        assert len(reader.runs()) == 1
        with Store(path) as writer:
            rid = writer.start_run("r2", "train", {})
            writer.finish_run(rid)
            assert len(reader.runs()) == 2 and reader.run(rid).status == "completed"


def test_a_missing_or_unnumbered_store_read_only(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "nowhere" / "s.sqlite", readonly=True)
    assert list(tmp_path.iterdir()) == []
    path = old_store(tmp_path / "old.sqlite")  # written before the schema had a number
    before = _listing(tmp_path)
    with Store(path, readonly=True) as store:
        (run,) = store.runs()
        assert run.name == "old" and run.key is None
        row = store.latest_verdict("C01")
        assert row is not None and row.seedset == "primary"
    assert _listing(tmp_path) == before


def _remount_ro(mnt):
    done = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount tmpfs read-only: {done.stderr.strip()}")


def test_runs_and_report_work_on_a_read_only_mount(tmp_path, capsys, tmpfs):
    with tmpfs(tmp_path / "mnt", "32m") as mnt:
        path = mnt / "s.sqlite"
        _filled(path)
        _remount_ro(mnt)
        before = _listing(mnt)
        assert main(["runs", "--store", str(path)]) == 0
        assert "r1" in capsys.readouterr().out
        out = tmp_path / "report"
        assert main(["report", "--store", str(path), "--out", str(out)]) == 0, capsys.readouterr()
        assert (out / "index.html").is_file()
        with Store(path, readonly=True) as store:
            assert store.integrity_ok()
        assert _listing(mnt) == before
