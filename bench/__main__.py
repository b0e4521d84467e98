"""``python -m bench [NAME ...]``: run every ``bench/bench_*.py`` (or those named) and print a
table of ratios."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any


def discover(names: list[str]) -> list[str]:
    here = Path(__file__).resolve().parent
    found = sorted(p.stem for p in here.glob("bench_*.py"))
    if names:
        wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in names]
        unknown = [n for n in wanted if n not in found]
        if unknown:
            sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(found)}")
        return wanted
    return found


def main(argv: list[str]) -> int:
    rows: list[dict[str, Any]] = []
    for name in discover(argv):
        t0 = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        try:
            out = module.main()
        except Exception as err:  # one broken benchmark must not hide the others
            out = [
                {"benchmark": name, "ratio": float("nan"), "target": "-", "detail": f"ERROR {err}"}
            ]
        for row in out:
            row.setdefault("module", name)
            row["wall_s"] = time.perf_counter() - t0
        rows.extend(out)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{'benchmark':<44} {'ratio':>8}  {'target':<22} detail")
    print("-" * 110)
    for r in rows:
        print(f"{r['benchmark']:<44} {r['ratio']:>8.3f}  {r['target']:<22} {r['detail']}")
    print(
        f"\n(load average {load:.1f} on {os.cpu_count()} CPUs: timings under contention are noisy)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
