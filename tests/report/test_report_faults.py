"""The report folder under faults: concurrent writers, a full disk, Ctrl-C, odd targets.

Every case uses real files and real processes. After any failure the folder holds either the
old report or a complete new one, and no temporary file.
"""

import contextlib
import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from skiplab._files import FileTargetError, LockedError, is_locked
from skiplab.claims import reproduce, select_claims
from skiplab.cli import main
from skiplab.report import build_report, report_lock
from skiplab.store import Store

LOCK_MSG = "is in use by another process"

# A process that imports everything first, then runs the `skiplab report` command line ROUNDS
# times, printing "rc N" after each. Every round starts when all NPROCS drivers are at it (the
# first when the go file exists), so they write one folder at the same moment each time instead
# of drifting apart. After each round it prints any "figures failed" in the folder's index.html:
# the window in which the old shared ".paths.png.tmp" collided is one PNG encode, hit in about
# half of the rounds, and a later round would overwrite the evidence.
DRIVER = textwrap.dedent(
    """
    import os, pathlib, sys, time
    import matplotlib.pyplot
    import skiplab.cli, skiplab.claims, skiplab.report
    skiplab.claims.catalogue()
    print("ready", flush=True)
    go, rounds, nprocs = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    args = sys.argv[4:]
    index = pathlib.Path(args[args.index("--out") + 1], "index.html")
    for k in range(rounds):
        pathlib.Path(f"{go}.{os.getpid()}.{k}").touch()
        while not go.exists() or len(list(go.parent.glob(f"{go.name}.*.{k}"))) < nprocs:
            time.sleep(0.001)
        try:
            rc = skiplab.cli.main(args)
        except Exception as err:  # until cli.main prints LockedError as one line
            print(f"uncaught {type(err).__name__}: {err}", flush=True)
            rc = 1
        if index.is_file() and "figures failed" in index.read_text():
            print("index.html says: figures failed", flush=True)
        print(f"rc {rc}", flush=True)
    """
)

# Holds the report lock of a folder (the flock `report_lock` takes) until it is killed; it
# imports only skiplab._files, so it starts in a fraction of a second.
HOLDER = textwrap.dedent(
    """
    import pathlib, sys
    from skiplab._files import FileLock
    with FileLock(pathlib.Path(sys.argv[1], ".report.lock")):
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store with tiny-scale verdicts of two fast claims, each with a figure."""
    root = tmp_path_factory.mktemp("faults")
    with Store(root / "s.sqlite") as store:
        reproduce(
            select_claims("C01,C08"), scale="tiny", store=store, workdir=root / "work", force=True
        )
    return root / "s.sqlite"


@pytest.fixture
def old_report(store_path, tmp_path):
    """A report folder built once; ``(folder, {relative path: bytes})``."""
    out = tmp_path / "report"
    with Store(store_path) as store:
        build_report(store, out, scale="tiny")
    return out, _files(out)


def _files(out):
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _temps(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith(".tmp"))


def _assert_complete(out):
    """index.html is whole, every figure it references exists and is a valid PNG."""
    html = (out / "index.html").read_text()
    assert html.rstrip().endswith("</html>") and "figures failed" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 2, "the report lost its figures"
    for src in images:
        with Image.open(out / src) as img:
            img.verify()
    json.loads((out / "claims.json").read_text())


def _report_process(go, store_path, out, rounds=1, nprocs=1):
    """A real process running the `skiplab report` command ``rounds`` times once ``go`` exists,
    in step with ``nprocs`` such processes; its stderr goes to its stdout, so each round's
    messages come before its "rc N" line."""
    args = ["report", "--store", str(store_path), "--out", str(out), "--scale", "tiny"]
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(go), str(rounds), str(nprocs), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _rounds(output):
    """``[(exit status, messages)]`` of each round in a driver's output."""
    rounds, lines = [], []
    for line in output.splitlines():
        if line.startswith("rc "):
            rounds.append((int(line.split()[1]), "\n".join(lines)))
            lines = []
        elif not line.startswith("report: "):
            lines.append(line)
    return rounds


def _finish(proc, timeout=120):
    """``(exit status, output)`` of ``proc`` once it has ended."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


@contextlib.contextmanager
def _lock_held_elsewhere(out):
    """Another process holds the report lock of ``out`` for the block, then is SIGKILLed
    (so no clean-up code of its own releases the lock: the kernel does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.communicate()


def _cli_refusal(rc, messages):
    """A second writer's refusal names the lock and what to do. Once cli.main prints
    LockedError as one line (exit 2) that is all; until then the driver shows the exception."""
    assert rc != 0 and LOCK_MSG in messages and "choose another --out" in messages, messages
    if "uncaught" not in messages:
        assert rc == 2 and len(messages.strip().splitlines()) == 1, messages


def test_concurrent_report_processes_leave_one_complete_report(store_path, tmp_path):
    out, go = tmp_path / "report", tmp_path / "go"
    procs = [_report_process(go, store_path, out, rounds=5, nprocs=2) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    rounds = []
    for p in procs:
        rc, output = _finish(p)
        assert rc == 0, output
        rounds += _rounds(output)
    assert len(rounds) == 10 and any(rc == 0 for rc, _ in rounds), rounds
    for rc, messages in rounds:
        if rc == 0:
            assert messages == "", messages
        else:
            _cli_refusal(rc, messages)
    _assert_complete(out)
    assert _temps(out) == []


def test_a_held_report_lock_refuses_a_second_writer_until_its_holder_dies(store_path, tmp_path):
    out = tmp_path / "report"
    with _lock_held_elsewhere(out), Store(store_path) as store:
        with pytest.raises(LockedError) as info:
            build_report(store, out, scale="tiny")
        assert str(out) in str(info.value) and "choose another --out" in str(info.value)
        assert not (out / "index.html").exists()
    with Store(store_path) as store:
        build_report(store, out, scale="tiny")
    _assert_complete(out)


def test_the_report_lock_is_reentrant_within_a_process(store_path, tmp_path):
    # `skiplab reproduce` can take it before its runs; its build_report then still works.
    out = tmp_path / "report"
    with report_lock(out), Store(store_path) as store:
        build_report(store, out, scale="tiny")
        assert is_locked(out / ".report.lock")
    assert not is_locked(out / ".report.lock")
    _assert_complete(out)


def test_diagnose_refuses_a_locked_folder_before_running_anything(tmp_path, capsys):
    out, db = tmp_path / "diag", tmp_path / "s.sqlite"
    args = ["diagnose", "resmlp", "--probes", "skips", "--epochs", "0"]
    with _lock_held_elsewhere(out):
        try:
            code = main([*args, "--out", str(out), "--store", str(db)])
        except LockedError as err:  # until cli.main prints LockedError as one line
            msg = str(err)
        else:
            msg = capsys.readouterr().err
            assert code == 2 and len(msg.strip().splitlines()) == 1
        assert LOCK_MSG in msg and str(out) in msg
    assert not (out / "index.html").exists() and not (out / "figures").exists()
    with Store(db) as store:
        assert store.runs(kind="diagnose") == []


def test_diagnose_refuses_an_index_that_is_a_directory_before_running_anything(tmp_path, capsys):
    out, db = tmp_path / "diag", tmp_path / "s.sqlite"
    (out / "index.html").mkdir(parents=True)
    args = ["diagnose", "resmlp", "--probes", "skips", "--epochs", "0"]
    code = main([*args, "--out", str(out), "--store", str(db)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is a directory" in err
    assert (out / "index.html").is_dir() and not (out / "figures").exists()
    with Store(db) as store:
        assert store.runs(kind="diagnose") == []


def test_ctrl_c_during_a_report_write_leaves_no_temp_and_a_whole_report(
    old_report, store_path, tmp_path
):
    # A real SIGINT, sent the moment a temporary file appears in the folder: the process is
    # interrupted while it writes a figure or a page.
    out, _before = old_report
    go = tmp_path / "go"
    go.touch()
    proc = _report_process(go, store_path, out)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not seen:
        seen = _temps(out)
    if seen:
        proc.send_signal(signal.SIGINT)
    _rc, output = _finish(proc)
    ((rc, messages),) = _rounds(output)
    assert seen, f"no temporary file seen while the report was written (rc {rc}): {messages}"
    assert rc != 0, "the interrupt came too late: the report finished"
    assert _temps(out) == [], f"interrupted at {seen}"
    _assert_complete(out)


def test_a_file_size_limit_fails_the_report_and_keeps_the_old_one(old_report, store_path):
    # RLIMIT_FSIZE stands in for a full disk where no tmpfs can be mounted; with SIGXFSZ
    # ignored a write past the limit fails with EFBIG instead of killing the process.
    out, before = old_report
    code = textwrap.dedent(
        """
        import resource, signal, sys
        from skiplab.report import build_report, report_lock
        from skiplab.store import Store
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        with Store(sys.argv[1]) as store:
            resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
            try:
                build_report(store, sys.argv[2], scale="tiny")
            except OSError as err:
                print(err.errno, flush=True)
                raise SystemExit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(store_path), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert int(proc.stdout.split()[0]) == errno.EFBIG
    assert _temps(out) == []
    assert _files(out) == before


def test_a_full_disk_fails_the_report_and_keeps_the_old_one(store_path, tmp_path, tmpfs):
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        out = mnt / "report"
        with Store(store_path) as store:
            build_report(store, out, scale="tiny")
        before = _files(out)
        filler = mnt / "filler"
        with open(filler, "wb") as f, pytest.raises(OSError) as full:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        assert full.value.errno == errno.ENOSPC
        os.truncate(filler, filler.stat().st_size - 32768)  # room for part of one figure
        with Store(store_path) as store, pytest.raises(OSError) as info:
            build_report(store, out, scale="tiny")
        assert info.value.errno == errno.ENOSPC
        assert _temps(out) == []
        assert _files(out) == before


def test_an_index_that_is_a_directory_is_refused_before_anything_is_replaced(
    old_report, store_path
):
    out, _before = old_report
    (out / "index.html").unlink()
    (out / "index.html").mkdir()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with Store(store_path) as store, pytest.raises(FileTargetError, match="is a directory"):
        build_report(store, out, scale="tiny")
    assert (out / "index.html").is_dir()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    assert _temps(out) == []


def test_claims_json_that_is_a_fifo_is_one_line_and_kept(old_report, store_path, capsys):
    out, before = old_report
    (out / "claims.json").unlink()
    os.mkfifo(out / "claims.json")
    code = main(["report", "--store", str(store_path), "--out", str(out), "--scale", "tiny"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "claims.json" in err and "FIFO" in err
    assert stat.S_ISFIFO((out / "claims.json").stat().st_mode)
    assert _files(out) == {k: v for k, v in before.items() if k != "claims.json"}
    assert _temps(out) == []


def test_a_figure_target_that_is_a_directory_fails_the_report(old_report, store_path):
    out, before = old_report
    (figure,) = (out / "figures" / "residual-toy").glob("*.png")
    figure.unlink()
    figure.mkdir()
    with Store(store_path) as store, pytest.raises(FileTargetError, match=figure.name):
        build_report(store, out, scale="tiny")
    assert figure.is_dir()
    assert (out / "index.html").read_bytes() == before["index.html"]
    assert _temps(out) == []


def test_report_files_are_readable_as_the_umask_allows(old_report):
    out, before = old_report
    umask = os.umask(0)
    os.umask(umask)
    modes = {name: stat.S_IMODE((out / name).stat().st_mode) for name in before}
    assert modes == {name: 0o666 & ~umask for name in before}
