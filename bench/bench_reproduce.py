"""``skiplab reproduce --scale quick``: compute of every claim and in total.

Reading is cheap, running is not: by default this reports the newest quick-scale verdicts in
the store (``$SKIPLAB_STORE`` or ``skiplab-runs/skiplab.sqlite``), each with the seconds and
CPU-seconds of the runs behind it (the sum over its runs; with a worker pool the wall clock of
the whole reproduction is shorter). To measure afresh, run it as its own command (tens of minutes on a 2-core CPU)::

    python -m bench.bench_reproduce --run [--store PATH]

which runs ``skiplab reproduce --scale quick --force`` into that store first. Target: the whole
catalogue in under 10 minutes per engineer's share on an uncontended 2-core CPU; the table
shows the numbers, the load average says how contended they were.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from skiplab.store import DEFAULT_PATH, Store


def _store_path(path: str | None) -> Path:
    return Path(path or os.environ.get("SKIPLAB_STORE", str(DEFAULT_PATH)))


def rows_from_store(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return [
            {
                "benchmark": "reproduce --scale quick",
                "ratio": float("nan"),
                "target": "total < 600 s",
                "detail": f"no store at {path}: run `python -m bench.bench_reproduce --run`",
            }
        ]
    with Store(path) as store:
        verdicts = store.latest_verdicts("quick")
    rows = []
    for cid, v in sorted(verdicts.items()):
        rows.append(
            {
                "benchmark": f"reproduce quick {cid} {v.slug}",
                "ratio": float(v.wall_s or float("nan")),
                "target": "seconds",
                "detail": f"{v.verdict}, seeds {v.seeds}, "
                f"{float(v.evidence.get('cpu_s') or float('nan')):.1f} CPU-s",
            }
        )
    total = sum(float(v.wall_s or 0.0) for v in verdicts.values())
    cpu = sum(float(v.evidence.get("cpu_s") or 0.0) for v in verdicts.values())
    rows.append(
        {
            "benchmark": "reproduce --scale quick: total",
            "ratio": total,
            "target": "seconds",
            "detail": f"{len(verdicts)} claims with a quick verdict in {path}; {cpu:.0f} CPU-s",
        }
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run reproduce --scale quick first")
    parser.add_argument("--store", default=None, help="results store (default as skiplab's)")
    parser.add_argument("--claims", default="all")
    args = parser.parse_args(argv if argv is not None else [])
    path = _store_path(args.store)
    if args.run:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "skiplab.cli", "reproduce", "--scale", "quick", "--force"]
        cmd += ["--claims", args.claims, "--store", str(path)]
        cmd += ["--out", str(path.parent / "report")]
        subprocess.run(cmd, check=False)
        print(f"reproduce took {time.perf_counter() - t0:.0f} s wall", file=sys.stderr)
    return rows_from_store(path)


if __name__ == "__main__":
    load = os.getloadavg()[0]
    for row in main(sys.argv[1:]):
        print(f"{row['benchmark']:<44} {row['ratio']:>9.1f}  {row['target']:<14} {row['detail']}")
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs)")
