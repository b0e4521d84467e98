"""Hand-written models that skiplab did not build, for ``skiplab diagnose`` and the tests.

Nothing here uses skiplab's parts: the skips are plain ``x + ...`` and ``torch.cat`` in
``forward``, the way people write them. Diagnose them with::

    skiplab diagnose examples.custom_models:nanogpt                # MNIST-1D, (B, T, C) blocks
    skiplab diagnose examples.custom_models:unet --data digits     # 2-D U-Net, concat skips
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def new_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), written out as nanoGPT does.

    Its ``x + 0.044715 * x**3`` is an add of two tensors from the same input without a weight
    layer between them: skip discovery must not call it a residual.
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3.0))))


@dataclass
class GPTConfig:
    """A small nanoGPT-style encoder over a 1-D signal read as a sequence of scalar tokens."""

    seq_len: int = 40  # MNIST-1D's length
    in_channels: int = 1  # features per position
    n_embd: int = 32  # small enough for a CPU
    n_head: int = 4
    n_layer: int = 4
    num_classes: int = 10


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (Vaswani et al. 2017), as in nanoGPT.

    Shapes:
        ``(B, T, C) -> (B, T, C)``.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        mask = torch.tril(torch.ones(cfg.seq_len, cfg.seq_len)).view(1, 1, cfg.seq_len, cfg.seq_len)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(new_gelu(self.c_fc(x)))


class Block(nn.Module):
    """nanoGPT's pre-LN block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class TinyGPTClassifier(nn.Module):
    """Token embedding, learned positions, pre-LN blocks, final LN, mean-pool, linear head.

    Shapes:
        input ``(B, in_channels, T)`` (MNIST-1D's layout) or ``(B, T)``; returns ``(B, classes)``.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Linear(cfg.in_channels, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2's scaled init of the projections that write into the residual stream
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.cfg.n_layer))
            elif p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, 1, T)
        x = x.transpose(1, 2)  # (B, T, in_channels)
        T = x.size(1)
        pos = torch.arange(T, device=x.device)
        h = self.wte(x) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h).mean(dim=1))  # (B, classes)


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


class TinyUNet(nn.Module):
    """A two-level U-Net (Ronneberger et al. 2015) with ``same`` padding, used as a classifier:
    the decoder's per-pixel class scores are averaged over the image.

    The long skips concatenate encoder features to the upsampled decoder features.

    Shapes:
        input ``(B, in_channels, H, W)`` with H, W divisible by 4; returns ``(B, classes)``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        w = width
        self.enc1 = double_conv(in_channels, w)
        self.enc2 = double_conv(w, 2 * w)
        self.bottom = double_conv(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = double_conv(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = double_conv(2 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)  # (B, w, H, W)
        e2 = self.enc2(F.max_pool2d(e1, 2))  # (B, 2w, H/2, W/2)
        b = self.bottom(F.max_pool2d(e2, 2))  # (B, 4w, H/4, W/4)
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))  # long skip from enc2
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))  # long skip from enc1
        return self.head(d1).mean(dim=(2, 3))  # (B, classes)


def nanogpt() -> nn.Module:
    """A 4-block nanoGPT-style classifier for MNIST-1D (``--data mnist1d``)."""
    return TinyGPTClassifier(GPTConfig())


def unet() -> nn.Module:
    """A two-level U-Net classifier for 1-channel images (``--data digits`` or ``mnist``)."""
    return TinyUNet()
