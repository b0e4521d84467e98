"""Small statistics for verdicts: means, spreads and confidence intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy import stats as _st


@dataclass(frozen=True)
class Stat:
    """Mean, standard deviation and a two-sided 95% t-interval of a sample (or of a
    difference between two samples, see :func:`difference`)."""

    mean: float
    std: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (95% CI {self.lo:.4g}..{self.hi:.4g}, n={self.n})"

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "lo": self.lo, "hi": self.hi, "n": self.n}

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly on one side of 0 (a width-zero interval never does)."""
        return self.hi > self.lo and (self.lo > 0 or self.hi < 0)

    def interval(self, digits: int = 3) -> str:
        """``mean [lo, hi]`` rounded to ``digits`` significant digits."""
        return f"{self.mean:.{digits}g} [{self.lo:.{digits}g}, {self.hi:.{digits}g}]"


def fmt_values(values: Iterable[float], spec: str = ".3g") -> str:
    """Per-seed values for a verdict's text: ``"0.426, 0.461, 0.417"``."""
    return ", ".join(f"{v:{spec}}" for v in values)


def describe(values: Sequence[float], confidence: float = 0.95) -> Stat:
    """Mean, sample std and t-interval; one value gives a zero-width interval at that value."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("describe needs at least one value")
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Stat(mean, 0.0, mean, mean, 1)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Stat(mean, std, mean - half, mean + half, n)


def difference(
    a: Sequence[float], b: Sequence[float], *, paired: bool = False, confidence: float = 0.95
) -> Stat:
    """The mean difference ``a - b`` with a two-sided t-interval.

    Args:
        paired: ``a[i]`` and ``b[i]`` share seed ``i`` (the same init or data): the interval
            is that of the per-seed differences. Otherwise Welch's interval for two
            independent samples (unequal variances, Welch-Satterthwaite degrees of freedom).

    Returns:
        a :class:`Stat` whose ``std`` is the standard error's numerator (paired: the std of
        the differences; Welch: ``sqrt(s_a^2 / n_a + s_b^2 / n_b) * sqrt(n)`` with
        ``n = n_a + n_b``), ``n`` the number of values behind it.
    """
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    if paired:
        if len(xs) != len(ys):
            raise ValueError(f"paired difference needs equal lengths, got {len(xs)}, {len(ys)}")
        return describe([x - y for x, y in zip(xs, ys)], confidence)
    if not xs or not ys:
        raise ValueError("difference needs at least one value on each side")
    sa, sb = describe(xs), describe(ys)
    mean = sa.mean - sb.mean
    va = sa.std**2 / sa.n if sa.n > 1 else 0.0
    vb = sb.std**2 / sb.n if sb.n > 1 else 0.0
    se = math.sqrt(va + vb)
    n = sa.n + sb.n
    if se == 0 or sa.n < 2 or sb.n < 2:
        return Stat(mean, 0.0, mean, mean, n)
    dof = (va + vb) ** 2 / (
        (va**2 / (sa.n - 1) if va else 0.0) + (vb**2 / (sb.n - 1) if vb else 0.0)
    )
    half = float(_st.t.ppf(0.5 + confidence / 2, dof)) * se
    return Stat(mean, se * math.sqrt(n), mean - half, mean + half, n)


def proportion_difference(
    hits_a: int, n_a: int, hits_b: int, n_b: int, confidence: float = 0.95
) -> Stat:
    """Difference of two rates ``hits_a / n_a - hits_b / n_b`` with Newcombe's interval
    (the hybrid Wilson score interval, sound at small counts and at rates of 0 or 1)."""
    if n_a < 1 or n_b < 1:
        raise ValueError(f"proportions need n >= 1, got {n_a}, {n_b}")
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    pa, pb = hits_a / n_a, hits_b / n_b
    la, ua = wilson(hits_a, n_a, z)
    lb, ub = wilson(hits_b, n_b, z)
    d = pa - pb
    lo = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    hi = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return Stat(d, 0.0, lo, hi, n_a + n_b)


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a rate ``hits / n``."""
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clearly_greater(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when every value of ``a`` exceeds every value of ``b`` (no overlap across seeds).

    Deliberately stricter than a t-test at 2-5 seeds: the ranges must separate.
    """
    return min(a) > max(b)
