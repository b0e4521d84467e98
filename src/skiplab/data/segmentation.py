"""Segmentation data that works offline: synthetic microscopy cells and MNIST foregrounds.

:func:`make_cells` draws images in the spirit of the ISBI 2012 EM stacks that U-Net was made for
(Ronneberger et al. 2015): touching cells separated by thin dark membranes, blur and noise; the
mask is the cell interior, so separating touching cells means finding 1-2 pixel boundaries.
:func:`load_mnist_segmentation` turns MNIST digits into a foreground segmentation task.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import TensorDataset

from ._base import Splits

__all__ = ["load_cells", "load_mnist_segmentation", "make_cells"]


def make_cells(
    n: int,
    size: int = 92,
    *,
    seed: int = 0,
    cell_radius: tuple[float, float] = (7.0, 12.0),
    boundary_width: float = 1.5,
    blur: float = 1.0,
    noise: float = 0.12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded microscopy-like images of touching cells and their interior masks.

    Cells are grown from random centres, each with its own radius and a wavy outline; a pixel
    belongs to its nearest cell when inside that cell's outline. Where two cells meet, the pixels
    whose distances to the two centres differ by less than ``boundary_width`` form a dark
    membrane, and so does a rim of the same width around every cell. The mask is the interior
    (cells minus membranes). The image is then blurred and noised.

    Args:
        n: number of images.
        size: side length in pixels.
        seed: seed of the ``numpy`` generator (the same seed gives the same images).
        cell_radius: range of cell radii in pixels.
        boundary_width: membrane width in pixels.
        blur: standard deviation of the Gaussian blur in pixels.
        noise: standard deviation of the additive Gaussian noise.

    Returns:
        ``images`` ``(n, 1, size, size)`` float32 (roughly zero mean, unit scale) and ``masks``
        ``(n, size, size)`` int64 in {0, 1} (1: cell interior).
    """
    if n < 1 or size < 8:
        raise ValueError(f"make_cells needs n >= 1 and size >= 8, got n={n}, size={size}")
    lo, hi = cell_radius
    if not 0 < lo <= hi:
        raise ValueError(f"cell_radius must be (lo, hi) with 0 < lo <= hi, got {cell_radius}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)  # (S, S)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    mean_r = 0.5 * (lo + hi)
    k = max(2, round(1.5 * size * size / (np.pi * mean_r**2)))  # dense enough to touch
    for i in range(n):
        cy, cx = rng.uniform(-4, size + 4, size=(2, k))
        radius = rng.uniform(lo, hi, size=k)
        phase, amp = rng.uniform(0, 2 * np.pi, size=k), rng.uniform(0.0, 0.15, size=k)
        dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]  # (K, S, S)
        dist = np.hypot(dy, dx)
        angle = np.arctan2(dy, dx)
        outline = radius[:, None, None] * (
            1 + amp[:, None, None] * np.sin(3 * angle + phase[:, None, None])
        )
        order = np.argsort(dist, axis=0)
        d1 = np.take_along_axis(dist, order[:1], 0)[0]
        d2 = np.take_along_axis(dist, order[1:2], 0)[0]
        own = np.take_along_axis(outline, order[:1], 0)[0]
        inside = d1 < own
        # Distance to the bisector of the two nearest centres is (d2 - d1) / 2 in the far field.
        between = (d2 - d1) < boundary_width
        rim = d1 > own - boundary_width
        interior = inside & ~between & ~rim
        membrane = inside & ~interior
        brightness = rng.uniform(0.6, 1.0, size=k)
        img = np.full((size, size), 0.25)
        img[interior] = brightness[order[0]][interior]
        img[membrane] = 0.0
        img = ndimage.gaussian_filter(img, blur) if blur > 0 else img
        img = img + noise * rng.standard_normal((size, size))
        images[i] = ((img - 0.45) / 0.3).astype(np.float32)
        masks[i] = interior
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(masks)


def load_cells(
    n_train: int = 64, n_test: int = 32, size: int = 92, *, seed: int = 0, **kwargs: float
) -> Splits:
    """Train and test sets from :func:`make_cells` (test images drawn with seed ``seed + 1``).

    Returns:
        :class:`Splits` named ``"cells"`` whose targets are masks ``(N, size, size)``.
    """
    xtr, ytr = make_cells(n_train, size, seed=2 * seed, **kwargs)  # type: ignore[arg-type]
    xte, yte = make_cells(n_test, size, seed=2 * seed + 1, **kwargs)  # type: ignore[arg-type]
    return Splits(TensorDataset(xtr, ytr), TensorDataset(xte, yte), "cells", 2, 1, (1, size, size))


def load_mnist_segmentation(
    n_train: int = 2000,
    n_test: int = 500,
    *,
    seed: int = 0,
    pad_to: int = 28,
    threshold: float = 0.5,
    noise: float = 0.3,
) -> Splits:
    """MNIST digits as foreground segmentation: the mask is ``pixel > threshold``.

    The input is the digit plus Gaussian noise (seeded), zero-padded to ``pad_to`` so that a
    valid U-Net can align (e.g. 44 for two levels).

    Returns:
        :class:`Splits` named ``"mnist-seg"``; images ``(N, 1, pad_to, pad_to)``, masks
        ``(N, pad_to, pad_to)`` int64.
    """
    from .mnist import load_mnist

    if pad_to < 28 or (pad_to - 28) % 2:
        raise ValueError(f"pad_to must be >= 28 and 28 + an even number, got {pad_to}")
    digits = load_mnist(n_train=n_train, n_test=n_test, seed=seed, normalize=False)
    gen = torch.Generator().manual_seed(seed)
    margin = (pad_to - 28) // 2
    parts = []
    for split in (digits.train, digits.test):
        x = split.tensors[0]  # (N, 1, 28, 28) in [0, 1]
        mask = (x[:, 0] > threshold).long()  # (N, 28, 28)
        noisy = x + noise * torch.randn(x.shape, generator=gen)
        noisy = torch.nn.functional.pad(noisy, (margin,) * 4)
        mask = torch.nn.functional.pad(mask, (margin,) * 4)
        parts.append(TensorDataset(noisy, mask))
    return Splits(parts[0], parts[1], "mnist-seg", 2, 1, (1, pad_to, pad_to))
