"""Benchmarks, each against a reference measured in the same run.

Every ``bench_*.py`` module defines ``main() -> list[dict]``; each dict is one row with keys
``benchmark`` (name), ``ratio`` (ours / reference, or the quantity the target bounds),
``target`` (the goal, in words) and ``detail`` (the raw timings). ``python -m bench`` runs them
all and prints one table. Timings are never asserted in tests.
"""
