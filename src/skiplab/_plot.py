"""Shared figure style: one look for every plot skiplab writes (claims, diagnostics, report).

Residual variants are blue, plain twins orange, bounds and references grey, so a reader learns
the code once.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in CI
import matplotlib.pyplot as plt

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
    """Save atomically as PNG (temp file, then rename) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def color_for(label: str) -> str:
    """Residual-looking labels blue, plain-looking labels orange, others from the palette."""
    low = label.lower()
    if "plain" in low or "no skip" in low or "no-res" in low:
        return PLAIN
    if "res" in low or "skip" in low:
        return RESIDUAL
    # crc32, not hash(): str hashes are salted per process, so colours would change per run
    return PALETTE[zlib.crc32(low.encode()) % len(PALETTE)]
