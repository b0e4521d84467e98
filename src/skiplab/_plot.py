"""Shared figure style: one look for every plot skiplab writes (claims, diagnostics, report).

Residual variants are blue, plain twins orange, bounds and references grey, so a reader learns
the code once.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in CI
import matplotlib.pyplot as plt

from skiplab._files import atomic_output

RESIDUAL = "#1f77b4"
PLAIN = "#ff7f0e"
REFERENCE = "#7f7f7f"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

_RC: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def subplots(
    nrows: int = 1, ncols: int = 1, *, width: float = 5.0, height: float = 3.6, **kw: Any
) -> tuple[Any, Any]:
    """``plt.subplots`` in skiplab's style; ``width``/``height`` are per panel, in inches."""
    with plt.rc_context(_RC):  # type: ignore[arg-type]
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw
        )
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
    return fig, axes


def save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save as PNG and close the figure, on failure too.

    The PNG is written to a uniquely named temporary file that replaces ``path`` only when
    complete (:func:`skiplab._files.atomic_output`), so two writers of one path never share a
    temporary name, and an error or Ctrl-C leaves the old figure and no temporary file.

    Raises:
        FileTargetError: ``path`` exists and is not a regular file (a directory, a FIFO).
    """
    try:
        fig.tight_layout()
        with atomic_output(path, what="figure", durable=False) as f:
            fig.savefig(f, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


@contextlib.contextmanager
def closing_on_error() -> Iterator[None]:
    """Close the figures opened inside the block if it raises, so a plot that fails halfway
    (before :func:`save`) does not stay open in pyplot for the rest of the process."""
    before = set(plt.get_fignums())
    try:
        yield
    except BaseException:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
        raise


def color_for(label: str) -> str:
    """Residual-looking labels blue, plain-looking labels orange, others from the palette."""
    low = label.lower()
    if "plain" in low or "no skip" in low or "no-res" in low:
        return PLAIN
    if "res" in low or "skip" in low:
        return RESIDUAL
    # crc32, not hash(): str hashes are salted per process, so colours would change per run
    return PALETTE[zlib.crc32(low.encode()) % len(PALETTE)]
