"""Transformer blocks whose residual connections are parts: post-LN, pre-LN, ReZero, gated.

Vaswani et al. 2017 put the normalisation after the residual add (post-LN),
``x = LN(x + F(x))``; GPT-2 and Xiong et al. 2020 ("On Layer Normalization in the Transformer
Architecture") move it into the branch (pre-LN), ``x = x + F(LN(x))``, which keeps the identity
path clean and lets deep models train without learning-rate warm-up. ReZero (Bachlechner et al.
2020) drops the norms, ``x = x + alpha * F(x)`` with ``alpha = 0`` at init; the gated variant
mixes like a highway/GRU (Parisotto et al. 2020, GTrXL), ``x = (1 - g) * x + g * F(LN(x))``.

All of them are the same :class:`Block` -- attention then MLP, each wrapped in a sublayer part
built by :data:`SUBLAYERS` -- so the variants differ only in the part passed in. ``skip=False``
gives each variant's plain twin (no residual): the same branches with the merge removed, e.g.
pre-LN's ``x = F(LN(x))``. ``causal=True`` is a decoder (GPT), ``causal=False`` an encoder
(bidirectional, BERT-like). The layout follows nanoGPT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skiplab.models._registry import register_model
from skiplab.nn import Highway, Residual, ReZero, reset_residual_inits
from skiplab.nn.residual import BranchInit

VARIANTS = ("post_ln", "pre_ln", "rezero", "gated")
READOUTS = ("tokens", "mean")


class SelfAttention(nn.Module):
    """Multi-head self-attention, causal (decoder) or bidirectional (encoder).

    Args:
        n_embd: model width.
        n_head: heads; must divide ``n_embd``.
        causal: mask future positions.

    Shapes:
        ``(B, T, C)`` -> ``(B, T, C)``.
    """

    def __init__(self, n_embd: int, n_head: int, causal: bool) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be a multiple of n_head={n_head}")
        self.n_head = n_head
        self.causal = causal
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}, causal={self.causal}"


class MLP(nn.Module):
    """``W_2 GELU(W_1 x)`` applied to every position, ``(B, T, C) -> (B, T, C)``."""

    def __init__(self, n_embd: int, ratio: int = 4) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, ratio * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(ratio * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


def _pre_ln(branch: nn.Module, c: int, skip: bool, init: BranchInit | None) -> nn.Module:
    # x + F(LN(x)): the norm lives in the branch, the identity path is clean.
    return Residual(nn.Sequential(nn.LayerNorm(c), branch), branch_init=init, skip=skip)


def _post_ln(branch: nn.Module, c: int, skip: bool, init: BranchInit | None) -> nn.Module:
    # LN(x + F(x)): every block renormalises the sum, so the identity path passes L norms.
    return Residual(branch, post=nn.LayerNorm(c), branch_init=init, skip=skip)


def _rezero(branch: nn.Module, c: int, skip: bool, init: BranchInit | None) -> nn.Module:
    # x + alpha F(x), alpha = 0. The plain twin keeps no alpha: alpha = 0 without the skip
    # would output zeros.
    return Residual(branch, scale=ReZero() if skip else None, branch_init=init, skip=skip)


def _gated(branch: nn.Module, c: int, skip: bool, init: BranchInit | None) -> nn.Module:
    # (1 - g) x + g F(LN(x)), g = sigmoid(W x + b), b = -2: starts near the identity.
    return Highway(nn.Sequential(nn.LayerNorm(c), branch), nn.Linear(c, c), skip=skip)


Sublayer = Callable[[nn.Module, int, bool, "BranchInit | None"], nn.Module]
#: ``variant -> (sublayer part, final norm before the head)``.
SUBLAYERS: dict[str, tuple[Sublayer, bool]] = {
    "post_ln": (_post_ln, False),  # the sum is already normalised
    "pre_ln": (_pre_ln, True),  # the stream is not normalised: Xiong et al.'s final LN
    "rezero": (_rezero, False),  # ReZero drops normalisation altogether
    "gated": (_gated, True),
}


class Block(nn.Module):
    """Attention then MLP, each inside a sublayer part that holds the skip.

    With the pre-LN part ``forward`` computes ``x = x + attn(LN(x)); x = x + mlp(LN(x))``; the
    merge itself is in :class:`~skiplab.nn.Residual` / :class:`~skiplab.nn.Highway`.

    Args:
        attn: the attention sublayer (a skip part wrapping :class:`SelfAttention`).
        mlp: the MLP sublayer (a skip part wrapping :class:`MLP`).

    Shapes:
        ``(B, T, C)`` -> ``(B, T, C)``.
    """

    def __init__(self, attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x)  # pre-LN: x + attn(ln_1(x))
        x = self.mlp(x)  # pre-LN: x + mlp(ln_2(x))
        return x


@dataclass
class TransformerConfig:
    """Architecture of a small Transformer (nanoGPT's GPTConfig, with the skip as a choice)."""

    vocab_size: int | None = 16  # token inputs in [0, vocab); None: real-valued features
    in_features: int = 1  # features per position when vocab_size is None (MNIST-1D: 1)
    out_features: int = 16  # logits per position ("tokens") or per sequence ("mean")
    block_size: int = 64  # longest sequence: positions are learned embeddings
    n_layer: int = 4  # deep enough for warm-up to matter (Xiong et al. 2020 use 6-12)
    n_head: int = 4
    n_embd: int = 64  # 16 per head
    mlp_ratio: int = 4  # GPT-2
    variant: str = "pre_ln"  # "post_ln", "pre_ln", "rezero" or "gated"
    causal: bool = True  # True: decoder (GPT); False: encoder (bidirectional)
    readout: str = "tokens"  # "tokens": (B, T, out); "mean": mean over positions, (B, out)
    branch_init: BranchInit | None = None  # e.g. ScaleLastLayer(1 / sqrt(2 * n_layer)), GPT-2
    skip: bool = True  # False: plain twin, no residual connection in any block

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"TransformerConfig variant must be one of {VARIANTS}, got {self.variant!r}"
            )
        if self.readout not in READOUTS:
            raise ValueError(
                f"TransformerConfig readout must be one of {READOUTS}, got {self.readout!r}"
            )


class Transformer(nn.Module):
    """A stack of :class:`Block` with token (or feature) and learned position embeddings.

    Shapes:
        input ``(B, T)`` int64 tokens, or ``(B, T, in_features)`` floats when
        ``vocab_size`` is None, ``T <= block_size``; returns ``(B, T, out_features)`` or
        ``(B, out_features)`` with ``readout="mean"``.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.n_embd
        sublayer, final_norm = SUBLAYERS[cfg.variant]
        self.wte: nn.Module = (
            nn.Embedding(cfg.vocab_size, c) if cfg.vocab_size else nn.Linear(cfg.in_features, c)
        )
        self.wpe = nn.Embedding(cfg.block_size, c)
        self.blocks = nn.ModuleList(
            Block(
                sublayer(SelfAttention(c, cfg.n_head, cfg.causal), c, cfg.skip, cfg.branch_init),
                sublayer(MLP(c, cfg.mlp_ratio), c, cfg.skip, cfg.branch_init),
            )
            for _ in range(cfg.n_layer)
        )
        self.ln_f = nn.LayerNorm(c) if final_norm else nn.Identity()
        self.head = nn.Linear(c, cfg.out_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # GPT-2 / nanoGPT: N(0, 0.02) weights, zero biases, unit norms; Highway gate biases and
        # residual-aware branch inits are re-applied by their parts afterwards.
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Highway):
                m.reset_parameters()
        reset_residual_inits(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token (or feature) plus position embeddings, ``(B, T, C)``."""
        cfg = self.cfg
        if cfg.vocab_size and (x.dim() != 2 or x.dtype != torch.long):
            raise ValueError(
                f"Transformer expects (B, T) int64 tokens, got {tuple(x.shape)} {x.dtype}"
            )
        if not cfg.vocab_size and (x.dim() != 3 or x.shape[-1] != cfg.in_features):
            raise ValueError(
                f"Transformer expects (B, T, {cfg.in_features}) features, got {tuple(x.shape)}"
            )
        length = x.shape[1]
        if length > cfg.block_size:
            raise ValueError(f"sequence length {length} exceeds block_size={cfg.block_size}")
        pos = torch.arange(length, device=x.device)
        return self.wte(x) + self.wpe(pos)  # (B, T, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (B, T, C): the residual stream
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h)
        if self.cfg.readout == "mean":
            h = h.mean(dim=1)  # (B, C)
        return self.head(h)

    def extra_repr(self) -> str:
        return f"variant={self.cfg.variant!r}, causal={self.cfg.causal}, n_layer={self.cfg.n_layer}"


def _tokens_example() -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, 16, (2, 12)),)


def _build(defaults: TransformerConfig, kwargs: dict[str, Any]) -> Transformer:
    return Transformer(replace(defaults, **kwargs))


@register_model(example=_tokens_example)
def transformer_pre_ln(**kwargs: Any) -> Transformer:
    """Causal pre-LN Transformer (GPT-2; Xiong et al. 2020): ``x + F(LN(x))``."""
    return _build(TransformerConfig(variant="pre_ln"), kwargs)


@register_model(example=_tokens_example)
def transformer_post_ln(**kwargs: Any) -> Transformer:
    """Causal post-LN Transformer (Vaswani et al. 2017): ``LN(x + F(x))``."""
    return _build(TransformerConfig(variant="post_ln"), kwargs)


@register_model(example=_tokens_example)
def transformer_rezero(**kwargs: Any) -> Transformer:
    """Causal ReZero Transformer (Bachlechner et al. 2020): ``x + alpha F(x)``, alpha = 0."""
    return _build(TransformerConfig(variant="rezero"), kwargs)


@register_model(example=_tokens_example)
def transformer_gated(**kwargs: Any) -> Transformer:
    """Causal gated-residual Transformer: ``(1 - g) x + g F(LN(x))`` (highway / GTrXL-style)."""
    return _build(TransformerConfig(variant="gated"), kwargs)


@register_model(example=_tokens_example)
def transformer_encoder(**kwargs: Any) -> Transformer:
    """Bidirectional pre-LN encoder (BERT-like attention mask: none)."""
    return _build(TransformerConfig(variant="pre_ln", causal=False), kwargs)


@register_model(example=lambda: (torch.randn(2, 40, 1),))
def transformer_mnist1d(**kwargs: Any) -> Transformer:
    """Bidirectional pre-LN encoder classifying MNIST-1D read as 40 scalar tokens."""
    cfg = TransformerConfig(
        vocab_size=None, out_features=10, block_size=40, causal=False, readout="mean"
    )
    return _build(cfg, kwargs)
