"""Small statistics for verdicts: means, spreads and confidence intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _st


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation and a two-sided 95% t-interval of a sample."""

    mean: float
    std: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (95% CI {self.lo:.4g}..{self.hi:.4g}, n={self.n})"

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "lo": self.lo, "hi": self.hi, "n": self.n}


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std and t-interval; one value gives a zero-width interval at that value."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summarize needs at least one value")
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Summary(mean, 0.0, mean, mean, 1)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, mean - half, mean + half, n)


def clearly_greater(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when every value of ``a`` exceeds every value of ``b`` (no overlap across seeds).

    Deliberately stricter than a t-test at 2-5 seeds: the ranges must separate.
    """
    return min(a) > max(b)
