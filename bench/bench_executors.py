"""Executors and run-level resume: ``skiplab reproduce`` wall times, as ratios in one run.

Four reproductions of the same claims at the same scale, each into a fresh store, measured
one after another on this machine:

1. ``--executor serial`` (one run at a time, one intra-op thread);
2. ``--executor local --workers N`` (N single-threaded worker processes);
3. the same local pool while a competing CPU-bound process (a busy loop) holds one core;
4. the local pool SIGKILLed once about half of the runs are stored, then started again on
   that store: the restart is timed (it executes only the missing runs).

Ratios and targets (2 cores): local / serial <= 0.6; local with the busy loop / local quiet
<= 1.5; restart after the kill / fresh local <= 0.6. A quick-scale run of every claim takes
about an hour in all; ``--claims`` and ``--scale`` measure a subset::

    python -m bench.bench_executors --scale quick --claims all
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _cmd(store: Path, scale: str, claims: str, executor: str, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "skiplab.cli", "reproduce", "--scale", scale, "--claims"]
    cmd += [claims, "--store", str(store), "--out", str(store.parent / "report")]
    cmd += ["--executor", executor]
    return cmd + (["--workers", str(workers)] if executor != "serial" else [])


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _timed(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), check=True)
    return time.perf_counter() - t0


def _stored(store: Path) -> int:
    """Claim runs stored whole so far (0 while the file does not exist yet)."""
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=30) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE kind = 'claim' AND key IS NOT NULL "
                "AND status IN ('completed', 'diverged')"
            ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def _kill_at(cmd: list[str], store: Path, runs: int, log: Path) -> float:
    """Start ``cmd``; SIGKILL its whole process group once ``runs`` runs are stored."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
        while proc.poll() is None and _stored(store) < runs:
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.perf_counter() - t0


def _warm_up() -> None:
    """Build the datasets' caches, so no timed run pays for generating them."""
    from skiplab.data import load_cora, load_mnist, load_mnist1d

    load_mnist1d()
    load_mnist(size=14)
    load_cora()


def measure(scale: str, claims: str, workers: int, root: Path) -> dict[str, float]:
    _warm_up()
    wall: dict[str, float] = {}
    wall["serial"] = _timed(
        _cmd(root / "serial" / "s.sqlite", scale, claims, "serial", 1), root / "serial.log"
    )
    local = root / "local" / "s.sqlite"
    wall["local"] = _timed(_cmd(local, scale, claims, "local", workers), root / "local.log")
    total = _stored(local)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        wall["local_busy"] = _timed(
            _cmd(root / "busy" / "s.sqlite", scale, claims, "local", workers), root / "busy.log"
        )
    finally:
        busy.kill()
        busy.wait()
    resumed = root / "resume" / "s.sqlite"
    cmd = _cmd(resumed, scale, claims, "local", workers)
    wall["killed_after"] = _kill_at(cmd, resumed, total // 2, root / "killed.log")
    wall["stored_at_kill"] = _stored(resumed)
    wall["restart"] = _timed(cmd, root / "restart.log")
    wall["runs"] = total
    return wall


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="quick", choices=["tiny", "quick", "full"])
    parser.add_argument("--claims", default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", default=None, help="directory for the stores and logs")
    args = parser.parse_args(argv if argv is not None else [])
    root = Path(args.keep or tempfile.mkdtemp(prefix="skiplab-bench-exec-"))
    root.mkdir(parents=True, exist_ok=True)
    w = measure(args.scale, args.claims, args.workers, root)
    what = f"reproduce --scale {args.scale} --claims {args.claims}, {int(w['runs'])} runs"
    return [
        {
            "benchmark": f"local ({args.workers} workers) / serial",
            "ratio": w["local"] / w["serial"],
            "target": "<= 0.6",
            "detail": f"{w['local']:.0f} s vs {w['serial']:.0f} s; {what}",
        },
        {
            "benchmark": "local with a busy loop / local quiet",
            "ratio": w["local_busy"] / w["local"],
            "target": "<= 1.5",
            "detail": f"{w['local_busy']:.0f} s vs {w['local']:.0f} s",
        },
        {
            "benchmark": "restart after SIGKILL at ~half / fresh",
            "ratio": w["restart"] / w["local"],
            "target": "<= 0.6",
            "detail": (
                f"killed after {w['killed_after']:.0f} s with {int(w['stored_at_kill'])} of "
                f"{int(w['runs'])} runs stored; restart {w['restart']:.0f} s vs fresh "
                f"{w['local']:.0f} s; logs in {root}"
            ),
        },
    ]


if __name__ == "__main__":
    for row in main(sys.argv[1:]):
        print(f"{row['benchmark']:<44} {row['ratio']:>7.3f}  {row['target']:<8} {row['detail']}")
