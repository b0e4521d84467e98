"""The results store under faults: SIGKILL of its writer, two writers at once."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from skiplab.store import Store

_WRITER = """
import sys
from skiplab.store import Store
store = Store(sys.argv[1])
i = 0
while True:
    i += 1
    rid = store.start_run(f"w{i}", "train", {"i": i})
    for step in range(50):
        store.log_metrics(rid, step, {"loss": 1.0 / (step + 1), "acc": step / 50}, epoch=step)
    store.save_verdict("C01", "residual-toy", "tiny", "holds", f"r{i}", {"i": i}, [0], [rid])
    store.finish_run(rid, "completed", results={"i": i})
    print(i, flush=True)
"""


def test_sigkill_store_writer_repeatedly_keeps_runs_whole(tmp_path):
    path = tmp_path / "s.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for round_ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        for _ in range(1 + round_ % 3):
            proc.stdout.readline()
        time.sleep(0.002 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store(path) as store:  # opening recovers the killed writers' unfinished runs
        runs = store.runs()
        completed = [r for r in runs if r.status == "completed"]
        assert len(completed) >= 8
        assert {r.status for r in runs} <= {"completed", "interrupted"}
        for run in runs:
            rows = store.metrics(run.id)
            if run.status == "completed":  # all present
                assert len(rows) == 100 and store.results(run.id) == {"i": run.config["i"]}
            else:  # all absent
                assert rows == [] and store.results(run.id) == {}
        assert store.integrity_ok()


def test_two_reproduce_processes_on_one_store_lose_and_duplicate_nothing(tmp_path):
    store_path = tmp_path / "s.sqlite"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "skiplab.cli", "reproduce", "--claims", "C01", "--scale"]
    cmd += ["tiny", "--force", "--store", str(store_path)]
    procs = [
        subprocess.Popen([*cmd, "--out", str(tmp_path / f"report{i}")], env=env) for i in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    with Store(store_path) as store:
        verdicts = store._conn.execute("SELECT run_ids FROM verdicts WHERE claim='C01'").fetchall()
        assert len(verdicts) == 2  # one per process
        import json

        run_ids = [json.loads(v[0]) for v in verdicts]
        claimed = [i for ids in run_ids for i in ids]
        runs = store.runs(claim="C01")
        assert len(claimed) == len(set(claimed)) == len(runs)  # no run lost or shared
        assert set(claimed) == {r.id for r in runs}
        assert len(run_ids[0]) == len(run_ids[1]) > 0
        assert all(r.status == "completed" for r in runs)
        assert store.integrity_ok()
