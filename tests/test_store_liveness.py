"""Which ``running`` runs are dead (issue 13, item 3).

A run's owner is a lock file that its process holds (``flock``, dropped by the kernel when the
process dies), not host:pid: a process in another PID namespace on the same host cannot take a
live run for dead, and a run marked ``interrupted`` by mistake is corrected by its finish.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest

from skiplab.store import Store

_HOLDER = """
import sys
from skiplab.store import Store
store = Store(sys.argv[1])
rid = store.start_run("live", "train", {})
store.log_metrics(rid, 1, {"loss": 0.5})
print(rid, flush=True)
sys.stdin.readline()  # the test says when to finish
store.finish_run(rid, "completed", results={"ok": True})
store.close()
"""

_OPENER = "import sys; from skiplab.store import Store; s = Store(sys.argv[1]); s.close()"


def _holder(tmp_path, path):
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _row(path, rid):
    with sqlite3.connect(path) as raw:
        status = raw.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()[0]
        metrics = raw.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (rid,)).fetchone()
    return status, metrics[0]


def _in_new_pid_namespace(*cmd):
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a PID namespace: {probe.stderr.strip() or probe.returncode}")
    subprocess.run(["unshare", "--pid", "--fork", *cmd], check=True, timeout=120)


def test_a_live_run_is_not_marked_dead_from_another_pid_namespace(tmp_path):
    path = tmp_path / "s.sqlite"
    proc, rid = _holder(tmp_path, path)
    try:
        _in_new_pid_namespace(sys.executable, "-c", _OPENER, str(path))
        assert _row(path, rid) == ("running", 0)
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _row(path, rid) == ("completed", 1)


def test_a_sigkilled_run_is_marked_interrupted_from_another_pid_namespace(tmp_path):
    path = tmp_path / "s.sqlite"
    proc, rid = _holder(tmp_path, path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _row(path, rid) == ("running", 0)
    _in_new_pid_namespace(sys.executable, "-c", _OPENER, str(path))
    assert _row(path, rid) == ("interrupted", 0)


def test_a_run_marked_interrupted_by_mistake_is_corrected_when_it_finishes(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        rid = store.start_run("r", "train", {})
        store.log_metrics(rid, 3, {"loss": 0.5})
        with sqlite3.connect(path) as raw:  # as an older skiplab in another PID namespace did
            raw.execute("UPDATE runs SET status = 'interrupted', error = 'dead' WHERE id = ?",
                        (rid,))  # fmt: skip
        store.finish_run(rid, "completed", results={"ok": 1})
        run = store.run(rid)
        assert (run.status, run.error) == ("completed", None)
        assert store.metrics(rid) == [(3, None, "loss", 0.5)]
        store.finish_run(rid, "failed")  # the first final status of its own finish still wins
        assert store.run(rid).status == "completed"


def test_owners_that_cannot_be_checked_are_left_alone(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as raw:
        for owner in (f"{os.uname().nodename}:999999999", "0" * 32, None):
            raw.execute(
                "INSERT INTO runs (name, kind, config, status, started, owner) "
                "VALUES ('x', 'train', '{}', 'running', 1.0, ?)",
                (owner,),
            )
    with Store(path) as store:  # a PID says nothing; a lock file not here cannot be checked
        assert store.recover() == []
        assert [r.status for r in store.runs()] == ["running"] * 3


def test_owner_lock_files_do_not_pile_up(tmp_path):
    path = tmp_path / "s.sqlite"
    for _ in range(3):
        Store(path).close()
    proc, rid = _holder(tmp_path, path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store(path) as store:
        assert store.run(rid).status == "interrupted"
    assert list((tmp_path / ".s.sqlite.owners").iterdir()) == []
