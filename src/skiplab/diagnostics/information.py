"""Mutual information through residual and plain blocks: closed forms, estimators, real models.

For a Gaussian input ``X ~ N(0, S)`` and a linear block with independent Gaussian noise
``N ~ N(0, s^2 I)``,

    residual:  Y = X + F X + N = (I + F) X + N
    plain:     Y =     F X + N

both are ``Y = A X + N`` and (Cover & Thomas 2006, eq. 9.64 for the Gaussian channel)

    I(X; Y) = h(Y) - h(Y | X) = 1/2 ln det(A S A^T + s^2 I) - 1/2 ln det(s^2 I)
            = 1/2 ln det(I + A S A^T / s^2).

With ``F = 0`` the residual block keeps ``1/2 ln det(I + S / s^2)``, everything a noisy copy of
``X`` can carry, and the plain block keeps 0. Stacking blocks multiplies the ``A``s and adds the
propagated noise covariances (:func:`stacked_mutual_information`).

The sample estimators (:func:`gaussian_mi`, :func:`ksg_mi`) check the closed forms from data,
and :func:`layerwise_information` applies the Gaussian-channel formula to a real network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import nn

from skiplab.diagnostics._probe import eval_mode
from skiplab.nn import SkipModule


def _slogdet(m: np.ndarray, what: str) -> float:
    sign, logdet = np.linalg.slogdet(m)
    if sign <= 0:
        raise ValueError(f"{what} is not positive definite (slogdet sign {sign:g})")
    return float(logdet)


def gaussian_channel_mi(a: np.ndarray, cov_x: np.ndarray, noise_cov: np.ndarray) -> float:
    """``I(X; A X + N) = 1/2 [ln det(A S A^T + C) - ln det C]`` in nats, for Gaussian X and N.

    Args:
        a: the block's matrix ``A``, ``(d_out, d_in)``.
        cov_x: covariance ``S`` of X, ``(d_in, d_in)``.
        noise_cov: covariance ``C`` of the noise N, ``(d_out, d_out)``, positive definite.
    """
    a, cov_x, noise_cov = (np.asarray(m, dtype=np.float64) for m in (a, cov_x, noise_cov))
    if a.shape != (noise_cov.shape[0], cov_x.shape[0]):
        raise ValueError(
            f"A has shape {a.shape}; with cov_x {cov_x.shape} and noise_cov {noise_cov.shape} "
            f"it must be {(noise_cov.shape[0], cov_x.shape[0])}"
        )
    signal = a @ cov_x @ a.T
    return 0.5 * (
        _slogdet(signal + noise_cov, "cov(Y)") - _slogdet(noise_cov, "the noise covariance")
    )


def block_matrix(f: np.ndarray, residual: bool) -> np.ndarray:
    """``A = I + F`` for a residual block, ``A = F`` for its plain twin."""
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"a linear block needs a square F, got shape {f.shape}")
    return np.eye(f.shape[0]) + f if residual else f


def linear_block_mi(f: np.ndarray, cov_x: np.ndarray, noise_std: float, residual: bool) -> float:
    """``I(X; Y)`` of one block ``Y = [X +] F X + N``, ``N ~ N(0, noise_std^2 I)``, in nats."""
    a = block_matrix(f, residual)
    return gaussian_channel_mi(a, cov_x, noise_std**2 * np.eye(a.shape[0]))


def stacked_mutual_information(
    fs: Sequence[np.ndarray], cov_x: np.ndarray, noise_std: float, residual: bool
) -> list[float]:
    """``I(X; Y_l)`` for ``l = 1..L`` of ``Y_l = A_l Y_{l-1} + N_l``, ``Y_0 = X``.

    ``Y_l = P_l X + (noise)`` with ``P_l = A_l ... A_1`` and noise covariance
    ``C_l = A_l C_{l-1} A_l^T + s^2 I`` (``C_0 = 0``), so ``I(X; Y_l)`` is
    :func:`gaussian_channel_mi` of ``(P_l, S, C_l)``. By the data-processing inequality the
    list never increases.
    """
    cov_x = np.asarray(cov_x, dtype=np.float64)
    d = cov_x.shape[0]
    p, c = np.eye(d), np.zeros((d, d))
    out = []
    for f in fs:
        a = block_matrix(f, residual)
        p = a @ p
        c = a @ c @ a.T + noise_std**2 * np.eye(d)
        out.append(gaussian_channel_mi(p, cov_x, c))
    return out


def _as_2d(v: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be (n_samples, dims), got shape {arr.shape}")
    return arr


def gaussian_mi(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Plug-in Gaussian estimate ``1/2 [ln det S_x + ln det S_y - ln det S_xy]`` from samples.

    Exact in the limit for jointly Gaussian ``(X, Y)``; for other distributions it is the
    information of the Gaussian with the same covariance (it sees only linear dependence).
    Needs more samples than ``dim X + dim Y``.

    Shapes:
        x ``(n, d_x)``, y ``(n, d_y)``. Returns nats.
    """
    xs, ys = _as_2d(x, "x"), _as_2d(y, "y")
    if len(xs) != len(ys):
        raise ValueError(f"x and y need the same number of samples, got {len(xs)} and {len(ys)}")
    if len(xs) <= xs.shape[1] + ys.shape[1]:
        raise ValueError(
            f"gaussian_mi needs more samples ({len(xs)}) than dimensions "
            f"({xs.shape[1]} + {ys.shape[1]})"
        )
    joint = np.cov(np.hstack([xs, ys]), rowvar=False)
    dx = xs.shape[1]
    return 0.5 * (
        _slogdet(joint[:dx, :dx], "cov(x)")
        + _slogdet(joint[dx:, dx:], "cov(y)")
        - _slogdet(joint, "cov(x, y)")
    )


def ksg_mi(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, k: int = 3) -> float:
    """Kraskov-Stoegbauer-Grassberger k-nearest-neighbour estimate of ``I(X; Y)`` (nats).

    Kraskov et al. 2004, estimator (8): ``psi(k) + psi(n) - < psi(n_x + 1) + psi(n_y + 1) >``,
    where ``eps_i`` is the max-norm distance to the ``k``-th neighbour in the joint space and
    ``n_x`` (``n_y``) counts points strictly closer than ``eps_i`` in the marginal space. It
    makes no distributional assumption but needs low dimensions (a handful) and is biased
    downward when the information is large. Each coordinate is first scaled to unit variance
    (mutual information does not change under invertible per-coordinate maps, while the
    max-norm neighbourhoods would otherwise be dominated by the widest coordinate).

    Shapes:
        x ``(n, d_x)``, y ``(n, d_y)``.
    """
    xs, ys = _as_2d(x, "x"), _as_2d(y, "y")
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"x and y need the same number of samples, got {n} and {len(ys)}")
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n_samples), got k={k} with {n} samples")
    xs = xs / np.where(xs.std(0) > 0, xs.std(0), 1.0)
    ys = ys / np.where(ys.std(0) > 0, ys.std(0), 1.0)
    joint = np.hstack([xs, ys])
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf)
    eps = dist[:, -1]
    # Strictly closer than eps: shrink the radius by one ulp; each count includes the point.
    radius = np.nextafter(eps, 0)
    nx = cKDTree(xs).query_ball_point(xs, radius, p=np.inf, return_length=True) - 1
    ny = cKDTree(ys).query_ball_point(ys, radius, p=np.inf, return_length=True) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))


@torch.no_grad()
def layerwise_information(
    model: nn.Module,
    x: torch.Tensor,
    noise_std: float,
    layers: Sequence[str] | None = None,
    relative: bool = False,
) -> dict[str, float]:
    """``I(X; h_l + N)`` for each layer ``l`` of a real model, by the Gaussian-channel formula.

    A deterministic network of a continuous input has infinite ``I(X; h_l)``; the quantity
    that is finite and comparable across layers is the information of a *noisy* read-out
    ``h_l + N`` with ``N ~ N(0, noise_std^2 I)`` independent of ``X``. Its value is

        I(X; h_l + N) = h(h_l + N) - h(N) <= 1/2 ln det(I + Cov(h_l) / noise_std^2),

    the bound because a Gaussian has the largest entropy for a given covariance. The bound is
    exact when ``h_l`` is Gaussian (a linear network of a Gaussian input) and is what this
    function returns, from the sample covariance of ``h_l`` over the rows of ``x``.

    Assumptions, to state beside any number it gives: additive isotropic Gaussian read-out
    noise of a chosen ``noise_std`` (the result depends on it; compare layers and models at the
    same value and the same activation scale), the model in eval mode (no dropout noise), and
    enough rows that the sample covariance is reliable (it uses all ``min(n - 1, dim)``
    directions; fewer rows than dimensions underestimates).

    Args:
        model: any module; it is run once on ``x`` in eval mode and restored afterwards.
        x: a batch of inputs ``(n, *)``.
        noise_std: the read-out noise ``s > 0``.
        layers: qualified names of submodules whose outputs to read (default: every
            :class:`~skiplab.nn.SkipModule` in the model, i.e. every block with a skip, or the
            plain twin's blocks).
        relative: scale the noise by each layer's root-mean-square activation (``noise_std``
            is then a noise-to-signal ratio), so a layer cannot gain information by growing;
            use it to compare a residual stream, whose scale grows with depth, with a plain one.

    Returns:
        ``{name: nats}`` in forward order, with ``"input"`` first (the input itself).
    """
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std}")
    named = dict(model.named_modules())
    if layers is None:
        layers = [n for n, m in named.items() if isinstance(m, SkipModule)]
        if not layers:
            raise ValueError(
                f"{type(model).__name__} has no skiplab blocks; pass layers=[names] from "
                "model.named_modules()"
            )
    unknown = [n for n in layers if n not in named]
    if unknown:
        raise ValueError(f"unknown layer names {unknown}; see model.named_modules()")
    captured: dict[str, torch.Tensor] = {}
    handles = [
        named[n].register_forward_hook(
            lambda _m, _i, out, n=n: captured.__setitem__(n, out.detach())
        )
        for n in layers
    ]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    result = {"input": _noisy_channel_information(x, noise_std, relative)}
    for n in sorted(captured, key=list(layers).index):
        result[n] = _noisy_channel_information(captured[n], noise_std, relative)
    return result


def _noisy_channel_information(h: torch.Tensor, noise_std: float, relative: bool) -> float:
    flat = h.reshape(h.shape[0], -1).double()  # (n, D)
    if relative:
        rms = flat.pow(2).mean().sqrt().item()
        noise_std = noise_std * rms if rms > 0 else noise_std
    centred = flat - flat.mean(0, keepdim=True)
    # det(I_D + C / s^2) = det(I_n + G / s^2) with the Gram matrix G = Z Z^T / (n - 1):
    # cheaper when D > n, and the same non-zero eigenvalues.
    n, d = centred.shape
    gram = centred @ centred.T if d > n else centred.T @ centred  # (min(n, D), min(n, D))
    eig = torch.linalg.eigvalsh(gram / max(n - 1, 1)).clamp_min(0.0)
    return 0.5 * float(torch.log1p(eig / noise_std**2).sum())
