"""Build the HTML report and ``claims.json`` from the results store alone.

Figures are redrawn from each claim's stored evidence, so the report can be rebuilt at any time
(``skiplab report``) without re-running anything, and every figure comes from a stored run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2

from skiplab import _plot
from skiplab._files import FileLock, FileTargetError, atomic_write, check_regular_target
from skiplab.claims import Evidence, Figure, catalogue
from skiplab.store import Store, VerdictRow

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("skiplab.report", "templates"),
    autoescape=True,  # run names and config values are user data: never trusted as HTML
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


_ENV.filters["fmt"] = _fmt


def _strict(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null``: JSON has no such numbers, and strict
    parsers (browsers, jq, most languages) reject Python's ``NaN`` token."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


_LOCK_NAME = ".report.lock"
_HELD: dict[Path, FileLock] = {}  # report folders this process holds, by resolved path


@contextlib.contextmanager
def report_lock(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the one-writer lock of report folder ``out_dir`` (created) for the block.

    Two processes writing one folder would interleave their figures and pages; the second is
    refused instead. The lock is an ``flock`` on ``out_dir/.report.lock``, dropped by the kernel
    if the holder dies. It is re-entrant within a process, so ``skiplab reproduce`` can take it
    before its runs and :func:`build_report` inside still works.

    Raises:
        LockedError: another process holds it; the message names the folder and what to do.
        FileTargetError: ``out_dir`` exists and is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileTargetError(
            f"report folder {out} exists and is not a folder (choose another --out)"
        )
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    if key in _HELD:
        yield out
        return
    lock = FileLock(
        out / _LOCK_NAME,
        what=f"report folder {out}",
        hint="wait for that report to finish, or choose another --out",
    ).acquire()
    _HELD[key] = lock
    try:
        yield out
    finally:
        del _HELD[key]
        lock.release()


def write_page(path: Path, text: str) -> None:
    """Write one page of a report (HTML, JSON) atomically: the old page or the new one, never a
    part, and no temporary file left on any failure."""
    atomic_write(path, text, what="report file")


def replication(row: VerdictRow, replica: VerdictRow | None) -> dict[str, Any] | None:
    """How the verdict on the disjoint replicate seeds compares with the primary one."""
    if replica is None:
        return None
    return {
        "verdict": replica.verdict,
        "seeds": replica.seeds,
        "agrees": replica.verdict == row.verdict,
        "reason": replica.reason,
    }


def claim_record(claim: Any, row: VerdictRow, replica: VerdictRow | None = None) -> dict[str, Any]:
    """The ``claims.json`` object of one claim."""
    return {
        "id": claim.id,
        "slug": claim.slug,
        "title": claim.title,
        "verdict": row.verdict,
        "reason": row.reason,
        "scale": row.scale,
        "numbers": row.evidence.get("numbers", {}),
        "seeds": row.seeds,
        "run_ids": row.run_ids,
        "wall_s": row.wall_s,
        "cpu_s": row.evidence.get("cpu_s"),
        "command": claim.command(row.scale),
        "checks": row.evidence.get("checks", []),
        "literature": row.evidence.get("literature", []),
        "replicate": replication(row, replica),
    }


def build_report(
    store: Store,
    out_dir: str | os.PathLike[str],
    *,
    scale: str | None = None,
    claim_ids: list[str] | None = None,
    errors: dict[str, str] | None = None,
) -> Path:
    """Write ``index.html``, ``figures/`` and ``claims.json`` into ``out_dir``.

    Args:
        scale: show verdicts of this scale only (default: the newest of any scale).
        claim_ids: restrict to these claims (default: all in the catalogue).
        errors: claim id -> error message for claims whose experiment raised this time.

    Returns:
        the path of ``index.html``.

    Raises:
        LockedError: another process is writing ``out_dir`` (see :func:`report_lock`).
        FileTargetError: a page or figure path is a directory, FIFO or device (the two pages
            are checked before anything is written).
        OSError: the disk is full or a write failed; the old files are kept and no temporary
            file is left.
    """
    with report_lock(out_dir) as out:
        for page in ("index.html", "claims.json"):
            check_regular_target(out / page, "report file")
        return _build(store, out, scale, claim_ids, errors)


def _build(
    store: Store,
    out: Path,
    scale: str | None,
    claim_ids: list[str] | None,
    errors: dict[str, str] | None,
) -> Path:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    verdicts = store.latest_verdicts(scale)
    replicas = store.latest_verdicts(scale, seedset="replicate")
    sections, records = [], []
    for cid, cls in catalogue().items():
        if claim_ids is not None and cid not in claim_ids:
            continue
        claim = cls()
        row = verdicts.get(cid)
        replica = replicas.get(cid)
        if row is not None and replica is not None and replica.scale != row.scale:
            replica = None  # a replicate of another scale says nothing about this verdict
        section: dict[str, Any] = {
            "claim": claim, "row": row, "figures": [], "error": None,
            "replicate": replication(row, replica) if row is not None else None,
        }  # fmt: skip
        if errors and cid in errors:
            section["error"] = errors[cid]
        if row is not None:
            evidence = Evidence.from_dict(row.evidence)
            try:
                with _plot.closing_on_error():
                    figs = claim.report_figures(evidence, out / "figures" / claim.slug)
            except (FileTargetError, OSError):
                raise  # the folder or the disk is at fault, not the plot: stop, keep old files
            except Exception as err:  # a broken plot must not hide the verdict
                figs = []
                section["error"] = f"figures failed: {type(err).__name__}: {err}"
            section["figures"] = [Figure(f"figures/{claim.slug}/{f.path}", f.caption) for f in figs]
            section["evidence"] = evidence
            records.append(claim_record(claim, row, replica))
        sections.append(section)
    counts = {
        v: sum(1 for s in sections if s["row"] and s["row"].verdict == v)
        for v in ("holds", "fails", "inconclusive")
    }
    counts["replicated"] = sum(1 for s in sections if s["replicate"] and s["replicate"]["agrees"])
    counts["replicate_runs"] = sum(1 for s in sections if s["replicate"])
    html = _ENV.get_template("index.html").render(
        sections=sections,
        counts=counts,
        scale=scale or "any",
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        store_path=str(store.path),
    )
    write_page(out / "index.html", html)
    text = json.dumps(_strict(records), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_page(out / "claims.json", text)
    return out / "index.html"
