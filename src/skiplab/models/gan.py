"""A GAN whose discriminator is a stack of pre-activation residual blocks, and its plain twin.

Residual discriminators (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"; Miyato
et al. 2018, "Spectral Normalization for GANs") stack blocks

    h_{l+1} = h_l + F_l(h_l),    F_l = W_2 act(W_1 act(h_l))    (pre-activation)

With ``||dF_l/dh|| <= c`` the backward gain of L blocks is bounded by ``(1 - c)^L`` below and
``(1 + c)^L`` above (each factor ``I + J_l`` has singular values in ``[1 - c, 1 + c]``); the
plain twin ``h_{l+1} = F_l(h_l)`` only has ``c^L`` above, so with spectral normalisation
(``c <= 1``) its input gradient can vanish. The generator mirrors the discriminator.

Both work on vectors (2-D mixtures: ``dim = 2``) or, with ``image_size``, on flattened images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from skiplab.models._registry import register_model
from skiplab.nn import Residual


@dataclass
class GANConfig:
    """Architecture of a residual (or plain) MLP GAN."""

    data_dim: int = 2  # 2-D Gaussian mixtures; 784 for flattened MNIST
    latent_dim: int = 16  # enough noise dimensions for 25 modes
    hidden: int = 128  # width of every block
    d_blocks: int = 8  # residual blocks of the discriminator (2 linear layers each)
    g_blocks: int = 2  # residual blocks of the generator
    spectral_norm: bool = True  # Miyato et al. 2018: every D weight has spectral norm <= 1
    skip: bool = True  # False: the plain twin of the discriminator (and generator)
    act_layer: Callable[[], nn.Module] = lambda: nn.LeakyReLU(0.2)  # DCGAN's D nonlinearity

    def __post_init__(self) -> None:
        if self.d_blocks < 1 or self.g_blocks < 0:
            raise ValueError(
                f"GAN needs d_blocks >= 1 and g_blocks >= 0, got {self.d_blocks}, {self.g_blocks}"
            )


def _linear(cin: int, cout: int, sn: bool) -> nn.Module:
    layer = nn.Linear(cin, cout)
    return spectral_norm(layer) if sn else layer


def preact_block(width: int, act: Callable[[], nn.Module], sn: bool, skip: bool) -> Residual:
    """``h + W_2 act(W_1 act(h))``: the pre-activation residual block of both networks."""
    branch = nn.Sequential(act(), _linear(width, width, sn), act(), _linear(width, width, sn))
    return Residual(branch, skip=skip)


class Discriminator(nn.Module):
    """``D(x) = head(act(blocks(stem(x))))``; the blocks are residual unless ``cfg.skip`` is False.

    Shapes:
        input ``(B, data_dim)``; returns logits ``(B, 1)``. ``stem``, ``blocks`` and ``head``
        are separate so gradients can be taken at the stack input ``h_0`` and output ``h_L``.
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sn = cfg.spectral_norm
        self.stem = _linear(cfg.data_dim, cfg.hidden, sn)
        self.blocks = nn.Sequential(
            *(preact_block(cfg.hidden, cfg.act_layer, sn, cfg.skip) for _ in range(cfg.d_blocks))
        )
        self.final = cfg.act_layer()
        self.head = _linear(cfg.hidden, 1, sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.cfg.data_dim:
            raise ValueError(
                f"Discriminator expects (B, {self.cfg.data_dim}), got {tuple(x.shape)}"
            )
        h = self.blocks(self.stem(x))  # (B, hidden): each block h + F(h)
        return self.head(self.final(h))  # (B, 1)


class Generator(nn.Module):
    """``G(z) = out(act(blocks(stem(z))))`` with pre-activation residual blocks (no spectral norm).

    Shapes:
        input ``(B, latent_dim)``; returns ``(B, data_dim)`` (``tanh``-squashed for images).
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Linear(cfg.latent_dim, cfg.hidden)
        self.blocks = nn.Sequential(
            *(preact_block(cfg.hidden, nn.ReLU, False, cfg.skip) for _ in range(cfg.g_blocks))
        )
        self.final = nn.ReLU()
        self.out = nn.Linear(cfg.hidden, cfg.data_dim)
        # 2-D mixtures are unbounded; images live in [-1, 1].
        self.squash: nn.Module = nn.Tanh() if cfg.data_dim > 2 else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"Generator expects (B, {self.cfg.latent_dim}), got {tuple(z.shape)}")
        return self.squash(self.out(self.final(self.blocks(self.stem(z)))))  # (B, data_dim)


def _cfg(**kwargs: Any) -> GANConfig:
    return replace(GANConfig(), **kwargs)


@register_model(example=lambda: (torch.randn(4, 2),))
def gan_discriminator(**kwargs: Any) -> Discriminator:
    """Residual discriminator: 8 spectrally normalised pre-activation blocks of width 128."""
    return Discriminator(_cfg(**kwargs))


@register_model(example=lambda: (torch.randn(4, 16),))
def gan_generator(**kwargs: Any) -> Generator:
    """Generator for 2-D mixtures: 16-d noise, 2 pre-activation residual blocks of width 128."""
    return Generator(_cfg(**kwargs))


@register_model(example=lambda: (torch.randn(4, 784),))
def gan_discriminator_mnist(**kwargs: Any) -> Discriminator:
    """Residual discriminator on flattened 28x28 MNIST: 4 blocks of width 256."""
    return Discriminator(_cfg(**{"data_dim": 784, "hidden": 256, "d_blocks": 4, **kwargs}))


@register_model(example=lambda: (torch.randn(4, 64),))
def gan_generator_mnist(**kwargs: Any) -> Generator:
    """Generator of flattened 28x28 MNIST images in [-1, 1]: 64-d noise, width 256."""
    return Generator(
        _cfg(**{"data_dim": 784, "latent_dim": 64, "hidden": 256, "g_blocks": 2, **kwargs})
    )
