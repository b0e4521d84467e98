"""GRU encoder-decoders with a fixed context vector or with attention.

Sutskever et al. 2014 / Cho et al. 2014 squeeze the whole source into the encoder's last state,
a fixed-size context ``c``; Bahdanau et al. 2015 give every output step its own context

    c_t = sum_j alpha_{tj} h_j,   alpha_t = softmax_j score(s_{t-1}, h_j),

a direct path from every input position to every output step -- a skip across the sequence
that does not pass through the recurrent bottleneck. The scores are *additive* (Bahdanau:
``v^T tanh(W s + U h_j)``) or *dot-product* (Luong et al. 2015: ``s^T h_j``).

Decoder step (the same for every variant; only the context part changes)::

    c_t = context(s_{t-1}, H)               # fixed: h_S for every t
    s_t = GRUCell([emb(y_{t-1}); c_t], s_{t-1})
    logits_t = W_o [s_t; c_t]

The encoder and decoder are skiplab GRUs (gated skips): ``skip=False`` builds the plain twin
whose GRUs have no carried state; the context part is an architecture choice, not a skip
merge, and stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from skiplab.models._registry import register_family_example, register_model
from skiplab.models.rnn import GRU, GRUCell

ATTENTIONS = ("none", "additive", "dot")


class FixedContext(nn.Module):
    """The fixed context of Sutskever et al. 2014: ``c_t = h_S`` (the last encoder state).

    Shapes:
        ``query`` ``(B, H)`` (unused), ``keys`` ``(B, S, H)``; returns ``(B, H)`` and the
        weights ``(B, S)`` (all on the last position).
    """

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.zeros(keys.shape[:2], dtype=keys.dtype, device=keys.device)
        weights[:, -1] = 1.0
        return keys[:, -1], weights


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2015: ``score(s, h_j) = v^T tanh(W s + U h_j)``.

    Args:
        hidden_size: size of the query and keys.

    Shapes:
        ``query`` ``(B, H)``, ``keys`` ``(B, S, H)``; returns the context ``(B, H)`` and the
        weights ``(B, S)``.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.w_query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_keys = nn.Linear(hidden_size, hidden_size)
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        energy = torch.tanh(self.w_query(query).unsqueeze(1) + self.w_keys(keys))  # (B, S, H)
        weights = self.v(energy).squeeze(-1).softmax(dim=-1)  # (B, S)
        return torch.einsum("bs,bsh->bh", weights, keys), weights


class DotAttention(nn.Module):
    """Luong et al. 2015, "dot": ``score(s, h_j) = s^T h_j``.

    Shapes:
        ``query`` ``(B, H)``, ``keys`` ``(B, S, H)``; returns the context ``(B, H)`` and the
        weights ``(B, S)``.
    """

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.einsum("bh,bsh->bs", query, keys).softmax(dim=-1)  # (B, S)
        return torch.einsum("bs,bsh->bh", weights, keys), weights


_CONTEXTS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda h: FixedContext(),
    "additive": AdditiveAttention,
    "dot": lambda h: DotAttention(),
}


@dataclass
class Seq2SeqConfig:
    """Architecture of a GRU encoder-decoder."""

    vocab_size: int = 10  # symbols of the copy/reversal tasks; index vocab_size is <bos>
    embed_size: int = 32  # symbols are categorical: a small embedding suffices
    hidden_size: int = 64  # the fixed context's size: the bottleneck being measured
    attention: str = "additive"  # "none" (fixed context), "additive" (Bahdanau), "dot" (Luong)
    skip: bool = True  # False: plain twin, GRUs without their carried state

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"Seq2SeqConfig attention must be one of {ATTENTIONS}, got {self.attention!r}"
            )


class Seq2Seq(nn.Module):
    """GRU encoder-decoder; ``cfg.attention`` picks the context part.

    ``forward`` uses teacher forcing (the decoder reads the shifted target); :meth:`generate`
    decodes greedily from its own outputs.

    Shapes:
        ``src`` ``(B, S)`` and ``tgt`` ``(B, T)`` int64 in ``[0, vocab_size)``; returns logits
        ``(B, T, vocab_size)``. The attention weights of the last call are kept in
        ``self.last_weights`` ``(B, T, S)``.
    """

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        v, e, h = cfg.vocab_size, cfg.embed_size, cfg.hidden_size
        self.bos = v
        self.embed = nn.Embedding(v + 1, e)
        self.encoder = GRU(e, h, skip=cfg.skip)
        self.context = _CONTEXTS[cfg.attention](h)
        self.decoder = GRUCell(e + h, h, skip=cfg.skip)
        self.out = nn.Linear(2 * h, v)
        self.last_weights: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _check(self, name: str, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"Seq2Seq {name} must be (B, length) int64, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size):
            raise ValueError(f"Seq2Seq {name} tokens must lie in [0, {self.cfg.vocab_size})")

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        """Encoder states ``(B, S, H)``."""
        self._check("src", src)
        states, _ = self.encoder(self.embed(src))  # (B, S, H)
        return states

    def step(
        self, y_prev: torch.Tensor, s: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step: logits ``(B, V)``, new state ``(B, H)``, weights ``(B, S)``."""
        c, weights = self.context(s, keys)  # (B, H), (B, S)
        s = self.decoder(torch.cat([self.embed(y_prev), c], dim=-1), s)  # (B, H)
        return self.out(torch.cat([s, c], dim=-1)), s, weights

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        self._check("tgt", tgt)
        keys = self.encode(src)  # (B, S, H)
        s = keys[:, -1]  # decoder starts from the last encoder state, (B, H)
        bos = tgt.new_full((tgt.shape[0], 1), self.bos)
        inputs = torch.cat([bos, tgt[:, :-1]], dim=1)  # teacher forcing, (B, T)
        logits, weights = [], []
        for t in range(tgt.shape[1]):
            out, s, w = self.step(inputs[:, t], s, keys)
            logits.append(out)
            weights.append(w)
        self.last_weights = torch.stack(weights, dim=1).detach()  # (B, T, S)
        return torch.stack(logits, dim=1)  # (B, T, V)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, length: int) -> torch.Tensor:
        """Greedy decoding of ``length`` tokens, ``(B, length)``."""
        keys = self.encode(src)
        s = keys[:, -1]
        y = src.new_full((src.shape[0],), self.bos)
        out = []
        for _ in range(length):
            logits, s, _ = self.step(y, s, keys)
            y = logits.argmax(-1)
            out.append(y)
        return torch.stack(out, dim=1)

    def extra_repr(self) -> str:
        return f"attention={self.cfg.attention!r}"


register_family_example(
    "seq2seq", lambda: (torch.randint(0, 10, (2, 7)), torch.randint(0, 10, (2, 7)))
)


def _build(attention: str, kwargs: dict[str, Any]) -> Seq2Seq:
    return Seq2Seq(replace(Seq2SeqConfig(attention=attention), **kwargs))


@register_model
def seq2seq_gru(**kwargs: Any) -> Seq2Seq:
    """GRU encoder-decoder with a fixed context vector (Sutskever et al. 2014, Cho et al. 2014)."""
    return _build("none", kwargs)


@register_model
def seq2seq_gru_additive(**kwargs: Any) -> Seq2Seq:
    """GRU encoder-decoder with additive attention (Bahdanau et al. 2015)."""
    return _build("additive", kwargs)


@register_model
def seq2seq_gru_dot(**kwargs: Any) -> Seq2Seq:
    """GRU encoder-decoder with dot-product attention (Luong et al. 2015)."""
    return _build("dot", kwargs)
