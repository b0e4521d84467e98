"""2-D Gaussian mixtures for GAN mode-collapse studies and their mode statistics.

The ring of 8 (Metz et al. 2017, "Unrolled GANs") and the 5x5 grid of 25 (Srivastava et al.
2017, "VEEGAN") are the standard toys: a generator that collapses covers few modes, one that
spreads puts its samples between them. A sample is *high quality* when it lies within
``n_sigma`` standard deviations of its nearest mode; a mode is *covered* when it receives at
least ``min_share`` of the samples it would get if every mode got the same number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["GaussianMixture", "grid_of_gaussians", "ring_of_gaussians"]


@dataclass(frozen=True)
class GaussianMixture:
    """An equal-weight isotropic mixture in 2-D.

    Args:
        name: short name (``"ring8"``, ``"grid25"``).
        centers: ``(K, 2)`` mode centres.
        std: the standard deviation of every mode.
    """

    name: str
    centers: torch.Tensor
    std: float

    @property
    def num_modes(self) -> int:
        return int(self.centers.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``(n, 2)``: a uniformly chosen mode plus isotropic noise."""
        idx = torch.randint(0, self.num_modes, (n,), generator=generator)
        return self.centers[idx] + self.std * torch.randn(n, 2, generator=generator)

    def mode_stats(
        self, samples: torch.Tensor, n_sigma: float = 3.0, min_share: float = 0.2
    ) -> dict[str, float]:
        """Modes covered and high-quality fraction of generated ``samples`` ``(n, 2)``.

        Returns:
            ``modes`` (covered modes), ``modes_frac`` (covered / K), ``hq_frac`` (share of
            samples within ``n_sigma`` std of a mode), ``kl_modes`` (KL divergence of the
            high-quality samples' mode histogram from uniform, 0 when balanced).
        """
        if samples.dim() != 2 or samples.shape[1] != 2:
            raise ValueError(f"samples must be (n, 2), got {tuple(samples.shape)}")
        samples = samples.detach().float()
        dist = torch.cdist(samples, self.centers.float())  # (n, K)
        nearest_d, nearest = dist.min(1)
        hq = nearest_d <= n_sigma * self.std
        counts = torch.bincount(nearest[hq], minlength=self.num_modes).float()  # (K,)
        n = samples.shape[0]
        covered = int((counts >= min_share * n / self.num_modes).sum())
        p = counts / counts.sum().clamp_min(1.0)
        kl = float((p[p > 0] * (p[p > 0] * self.num_modes).log()).sum()) if hq.any() else math.inf
        return {
            "modes": float(covered),
            "modes_frac": covered / self.num_modes,
            "hq_frac": float(hq.float().mean()),
            "kl_modes": kl,
        }


def ring_of_gaussians(k: int = 8, radius: float = 2.0, std: float = 0.02) -> GaussianMixture:
    """``k`` modes evenly on a circle (Metz et al. 2017: 8 modes, radius 2, std 0.02)."""
    angles = torch.arange(k, dtype=torch.float32) * (2 * math.pi / k)
    centers = radius * torch.stack([angles.cos(), angles.sin()], dim=1)  # (k, 2)
    return GaussianMixture(f"ring{k}", centers, std)


def grid_of_gaussians(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """``side x side`` modes on a square grid centred at 0 (VEEGAN: 5x5, spacing 2, std 0.05)."""
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    centers = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # (side^2, 2)
    return GaussianMixture(f"grid{side * side}", centers, std)
