"""Executors and run-level resume: ``skiplab reproduce`` wall times, as ratios in one run.

Four reproductions of the same claims at the same scale, each into a fresh store, measured
one after another on this machine:

1. ``--executor serial`` (one run at a time, one intra-op thread);
2. ``--executor local --workers N`` (N single-threaded worker processes);
3. the same local pool while a competing CPU-bound process (a busy loop) holds one core;
4. the local pool SIGKILLed once about half of the work is stored (the stored runs'
   CPU-seconds reach half of the fresh local reproduction's; counting runs would kill far too
   early when one claim has many tiny runs), then started again on that store: the restart
   is timed (it executes only the missing runs).

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


def _stored(store: Path) -> tuple[int, float]:
    """Claim runs stored whole so far and their CPU-seconds (0 while there is no file)."""
    if not store.exists():
        return 0, 0.0
    try:
        with sqlite3.connect(store, timeout=30) as conn:
            row = conn.execute(
                "SELECT COUNT(*), TOTAL(cpu_s) FROM runs WHERE kind = 'claim' AND key IS NOT "
                "NULL AND status IN ('completed', 'diverged')"
            ).fetchone()
        return int(row[0]), float(row[1])
    except sqlite3.OperationalError:  # the schema is being created
        return 0, 0.0


def _kill_at(cmd: list[str], store: Path, cpu_s: float, log: Path) -> float:
    """Start ``cmd``; SIGKILL its whole process group once runs of ``cpu_s`` CPU-seconds
    are stored."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
        while proc.poll() is None and _stored(store)[1] < cpu_s:
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


PHASES = ("serial", "busy", "resume")  # the fresh local reproduction is always measured


def measure(
    scale: str, claims: str, workers: int, root: Path, phases: tuple[str, ...] = PHASES
) -> dict[str, float]:
    _warm_up()
    wall: dict[str, float] = {}
    if "serial" in phases:
        wall["serial"] = _timed(
            _cmd(root / "serial" / "s.sqlite", scale, claims, "serial", 1), root / "serial.log"
        )
    local = root / "local" / "s.sqlite"
    wall["local"] = _timed(_cmd(local, scale, claims, "local", workers), root / "local.log")
    wall["runs"], wall["cpu_s"] = _stored(local)
    if "busy" in phases:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            wall["local_busy"] = _timed(
                _cmd(root / "busy" / "s.sqlite", scale, claims, "local", workers),
                root / "busy.log",
            )
        finally:
            busy.kill()
            busy.wait()
    if "resume" in phases:
        resumed = root / "resume" / "s.sqlite"
        cmd = _cmd(resumed, scale, claims, "local", workers)
        wall["killed_after"] = _kill_at(cmd, resumed, wall["cpu_s"] / 2, root / "killed.log")
        wall["stored_at_kill"], wall["cpu_s_at_kill"] = _stored(resumed)
        wall["restart"] = _timed(cmd, root / "restart.log")
    return wall


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="quick", choices=["tiny", "quick", "full"])
    parser.add_argument("--claims", default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", default=None, help="directory for the stores and logs")
    parser.add_argument(
        "--phases", default=",".join(PHASES),
        help=f"comma-separated subset of {', '.join(PHASES)} (beside the fresh local run)",
    )  # fmt: skip
    args = parser.parse_args(argv if argv is not None else [])
    phases = tuple(p for p in args.phases.split(",") if p)
    if unknown := sorted(set(phases) - set(PHASES)):
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    root = Path(args.keep or tempfile.mkdtemp(prefix="skiplab-bench-exec-"))
    root.mkdir(parents=True, exist_ok=True)
    w = measure(args.scale, args.claims, args.workers, root, phases)
    what = f"reproduce --scale {args.scale} --claims {args.claims}, {int(w['runs'])} runs"
    rows = []
    if "serial" in w:
        rows.append({
            "benchmark": f"local ({args.workers} workers) / serial",
            "ratio": w["local"] / w["serial"],
            "target": "<= 0.6",
            "detail": f"{w['local']:.0f} s vs {w['serial']:.0f} s; {what}",
        })  # fmt: skip
    if "local_busy" in w:
        rows.append({
            "benchmark": "local with a busy loop / local quiet",
            "ratio": w["local_busy"] / w["local"],
            "target": "<= 1.5",
            "detail": f"{w['local_busy']:.0f} s vs {w['local']:.0f} s",
        })  # fmt: skip
    if "restart" in w:
        rows.append({
            "benchmark": "restart after SIGKILL at ~half the work / fresh",
            "ratio": w["restart"] / w["local"],
            "target": "<= 0.6",
            "detail": (
                f"killed after {w['killed_after']:.0f} s with {int(w['stored_at_kill'])} of "
                f"{int(w['runs'])} runs stored ({w['cpu_s_at_kill']:.0f} of {w['cpu_s']:.0f} "
                f"CPU-s); restart {w['restart']:.0f} s vs fresh {w['local']:.0f} s; {what}; "
                f"logs in {root}"
            ),
        })  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in main(sys.argv[1:]):
        print(f"{row['benchmark']:<44} {row['ratio']:>7.3f}  {row['target']:<8} {row['detail']}")
