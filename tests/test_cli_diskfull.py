"""A full disk is a one-line error naming where skiplab was writing (exit 2), never a
traceback, and what was already stored stays. A real full file system: a small tmpfs, so the
tests need the right to mount one (root in a container); elsewhere they are skipped."""

import sqlite3
import subprocess
import sys

import pytest


@pytest.fixture
def full_disk(tmp_path, tmpfs):
    with tmpfs(tmp_path / "full", "64k") as mnt:
        yield mnt


def skiplab(*args):
    return subprocess.run([sys.executable, "-m", "skiplab.cli", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_report_onto_a_full_disk_after_the_claim_ran(full_disk, tmp_path):
    store, out = tmp_path / "s.sqlite", full_disk / "report"
    argv = ["reproduce", "--claims", "C01", "--scale", "tiny", "--executor", "serial",
            "--store", str(store)]  # fmt: skip
    proc = skiplab(*argv, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("skiplab: error: ") and str(out) in last and "disk is full" in last
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone() == (6,)
    con.close()
    proc = skiplab(*argv, "--out", str(tmp_path / "report"))  # with room: nothing runs again
    assert proc.returncode == 0 and "6 stored, 0 to run" in proc.stderr, proc.stderr


def test_store_on_a_full_disk(full_disk):
    (full_disk / "filler").write_bytes(b"\0" * 60_000)
    store = full_disk / "s.sqlite"
    proc = skiplab("train", "resmlp", "--data", "digits", "--epochs", "1", "--store", str(store))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert str(store) in lines[0] and "full" in lines[0]
