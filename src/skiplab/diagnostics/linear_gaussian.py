"""Linear-Gaussian blocks to sample: branch families and noisy stacks, beside their closed forms.

:mod:`skiplab.diagnostics.information` gives ``I(X; Y)`` of ``Y = A X + N`` in closed form;
this module draws the branches ``F`` of such blocks and samples ``(X, Y_L)`` through a stack

    residual:  Y_l = Y_{l-1} + F_l Y_{l-1} + N_l
    plain:     Y_l =           F_l Y_{l-1} + N_l,     Y_0 = X ~ N(0, S),  N_l ~ N(0, s^2 I),

so that the closed forms can be checked against sample estimators (``gaussian_mi``,
``ksg_mi``) on the very same blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BRANCH_FAMILIES", "make_branch", "noisy_copy_information", "sample_stack"]

BRANCH_FAMILIES = ("zero", "low-rank", "random")


def make_branch(family: str, d: int, rng: np.random.Generator) -> np.ndarray:
    """A linear branch ``F`` (d x d) of one family.

    Args:
        family: ``"zero"`` (a useless branch), ``"low-rank"`` (rank 2, rank 1 when d <= 2,
            entries of size ~1/d) or ``"random"`` (Gaussian entries ``N(0, 1/d)``, so
            ``E |F v|^2 = |v|^2`` and the plain block preserves variance).
        d: the dimension.
        rng: the random source (unused by ``"zero"``).
    """
    if family == "zero":
        return np.zeros((d, d))
    if family == "low-rank":
        r = 1 if d <= 2 else 2
        return rng.standard_normal((d, r)) @ rng.standard_normal((r, d)) / d
    if family == "random":
        return rng.standard_normal((d, d)) / np.sqrt(d)
    raise ValueError(f"branch family must be one of {BRANCH_FAMILIES}, got {family!r}")


def sample_stack(
    fs: Sequence[np.ndarray],
    cov_x: np.ndarray,
    noise: float,
    residual: bool,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``(X, Y_L)`` through the stack of branches ``fs``.

    Returns:
        ``x`` and ``y``, both ``(n, d)``: rows are samples.
    """
    x = rng.multivariate_normal(np.zeros(len(cov_x)), cov_x, size=n)  # (n, d)
    y = x
    for f in fs:
        branch = y @ f.T
        y = (y + branch if residual else branch) + noise * rng.standard_normal(y.shape)
    return x, y


def noisy_copy_information(cov_x: np.ndarray, noise: float) -> float:
    """``I(X; X + N) = 1/2 sum_i ln(1 + lambda_i / s^2)``, lambda_i the eigenvalues of S.

    All that one noisy copy of X carries; computed from the eigenvalues, independently of
    the determinant the closed forms use, so it can check them.
    """
    eig = np.linalg.eigvalsh(np.asarray(cov_x, dtype=np.float64))
    return float(0.5 * np.sum(np.log1p(eig / noise**2)))
