"""SIGTERM (schedulers, ``docker stop``) and SIGINT stop a real ``skiplab`` process like Ctrl-C:
the run in progress is marked ``interrupted``, its last checkpoint kept, stored runs stay, one
line on stderr, exit 128 + the signal."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from skiplab.train import load_latest_checkpoint


def skiplab(*args):
    return [sys.executable, "-m", "skiplab.cli", *args]


def wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before the signal:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out waiting for the process to get going")


def store_rows(store, sql):
    if not store.exists():
        return []
    try:
        con = sqlite3.connect(store, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is not written yet
        return []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_training_marks_the_run_interrupted_and_keeps_the_checkpoint(
    sig, code, tmp_path
):
    store, ckpt = tmp_path / "s.sqlite", tmp_path / "c.pt"
    proc = subprocess.Popen(
        skiplab("train", "resmlp", "--data", "digits", "--epochs", "100000", "--batch-size",
                "128", "--checkpoint", str(ckpt), "--store", str(store)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(ckpt.exists, proc)  # one epoch is done: mid-training from here on
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("skiplab: ")
    assert store_rows(store, "SELECT status FROM runs") == [("interrupted",)]
    listed = subprocess.run(skiplab("runs", "--json", "--store", str(store)),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert json.loads(listed.stdout)["status"] == "interrupted"
    assert store_rows(store, "PRAGMA integrity_check") == [("ok",)]
    state, path = load_latest_checkpoint(ckpt)
    assert path == ckpt and state["epoch"] >= 1


def test_sigterm_mid_reproduce_keeps_stored_runs_and_a_rerun_resumes(tmp_path):
    store, out = tmp_path / "s.sqlite", tmp_path / "report"
    argv = skiplab("reproduce", "--scale", "tiny", "--claims", "C12", "--executor", "serial",
                   "--store", str(store), "--out", str(out))  # fmt: skip
    done = "SELECT count(*) FROM runs WHERE status = 'completed'"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (store_rows(store, done) or [(0,)])[0][0] >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[-1].startswith("skiplab: terminated"), err
    assert not any(line.startswith(("skiplab: error", "skiplab: internal")) for line in lines)
    kept = store_rows(store, "SELECT id FROM runs WHERE status = 'completed' ORDER BY id")
    total = 10  # C12's runs at tiny scale
    assert 2 <= len(kept) < total
    assert store_rows(store, "PRAGMA integrity_check") == [("ok",)]
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(kept)} stored, {total - len(kept)} to run" in rerun.stderr
    after = store_rows(store, "SELECT id FROM runs WHERE status = 'completed' ORDER BY id")
    assert after[: len(kept)] == kept and len(after) == total


def test_the_cli_starts_without_importing_torch():
    # Ctrl-C lands wherever the process is; if it is in `import torch` before `main` runs,
    # nothing can turn it into one line. So torch is imported inside `main`, by the commands.
    code = "import sys, skiplab.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    import skiplab

    assert callable(skiplab.create_model) and "resnet56" in skiplab.list_models()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = skiplab.nope


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_start_up_is_one_line(tmp_path, sig):
    proc = subprocess.Popen(
        skiplab("train", "resmlp", "--data", "digits", "--store", str(tmp_path / "s.sqlite")),
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # inside main: importing torch and the data, before any run is stored
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_ctrl_c_in_a_terminal_stops_the_local_pool_in_one_line(tmp_path):
    # A terminal's Ctrl-C goes to the whole process group: the pool's workers used to print a
    # KeyboardInterrupt traceback each. They ignore SIGINT; the driver stops them.
    import os

    store = tmp_path / "s.sqlite"
    argv = skiplab("reproduce", "--scale", "tiny", "--claims", "C12", "--executor", "local",
                   "--workers", "2", "--store", str(store), "--out", str(tmp_path / "r"))  # fmt: skip
    done = "SELECT count(*) FROM runs WHERE status = 'completed'"
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: (store_rows(store, done) or [(0,)])[0][0] >= 1, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("skiplab: interrupted"), err
    assert store_rows(store, "PRAGMA integrity_check") == [("ok",)]
