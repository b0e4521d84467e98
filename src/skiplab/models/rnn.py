"""Recurrent networks built from skiplab's gated and temporal skips, with their plain twins.

* :class:`GRUCell` / :class:`GRU` -- the gated recurrent unit of Cho et al. 2014 written as a
  gated skip, ``h_t = (1 - z_t) * h_{t-1} + z_t * h~_t`` (:class:`~skiplab.nn.GatedSkip`).
  With the same weights it computes exactly what ``torch.nn.GRU`` computes (its state dict
  loads with :meth:`GRU.load_torch_state_dict`); the plain twin drops the carried
  ``h_{t-1}`` term.
* :class:`SkipRNN` -- any recurrent cell ``cell(x_t, h_{t-1}) -> h`` unrolled over time, with
  optional temporal skips ``t - k -> t`` for several ``k`` (:class:`~skiplab.nn.TemporalSkip`).
* :class:`RecurrentNet` -- a :class:`SkipRNN` with a linear read-out, the model the claims train.

Note on the gate: ``torch.nn.GRU`` writes ``h' = (1 - u) * n + u * h`` with ``u`` the weight of
the *old* state; skiplab follows the article, ``z = 1 - u`` is the weight of the candidate, so
``z -> 0`` is the identity highway through time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from skiplab.models._registry import register_model
from skiplab.nn import GatedSkip, TemporalSkip

CELLS = ("tanh", "gru")
READOUTS = ("last", "all")


class GRUCell(nn.Module):
    """One GRU step (Cho et al. 2014) as a gated skip.

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``,
    ``z = 1 - sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``h~ = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * h + z * h~``.

    Parameters are laid out as in ``torch.nn.GRUCell`` (rows ``r, z, n`` stacked), so its
    weights copy over one to one.

    Args:
        input_size: features of ``x``.
        hidden_size: features of ``h``.
        bias: learn the biases (default True).
        skip: False builds the plain twin ``h' = z * h~`` (no carried state).

    Shapes:
        ``x``: ``(B, input_size)``, ``h``: ``(B, hidden_size)``; returns ``(B, hidden_size)``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, skip: bool = True
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.merge = GatedSkip(skip=skip)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.GRU's init: every weight and bias U(-1/sqrt(H), 1/sqrt(H)).
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)  # (B, 3H)
        gh = nn.functional.linear(h, self.weight_hh, self.bias_hh)  # (B, 3H)
        i_r, i_u, i_n = gi.chunk(3, dim=-1)
        h_r, h_u, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = 1.0 - torch.sigmoid(i_u + h_u)  # weight of the candidate (torch's 1 - u)
        candidate = torch.tanh(i_n + r * h_n)  # h~_t, (B, H)
        return self.merge(h, candidate, z)  # (1 - z) * h + z * h~

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


class TanhCell(nn.Module):
    """The Elman cell ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (``torch.nn.RNNCell``).

    Args:
        input_size: features of ``x``.
        hidden_size: features of ``h``.

    Shapes:
        ``x``: ``(B, input_size)``, ``h``: ``(B, hidden_size)``; returns ``(B, hidden_size)``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.RNNCell(input_size, hidden_size, nonlinearity="tanh")

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell(x, h)


class SkipRNN(nn.Module):
    """A recurrent cell unrolled over time, with temporal skips ``t - k -> t``.

    ``h_t = cell(x_t, h_{t-1}) + mean_{k in ks} h_{t-k}`` (El Hihi & Bengio 1995; Zhang et al.
    2016); with ``temporal=None`` or a plain :class:`~skiplab.nn.TemporalSkip` it is the cell
    alone, ``h_t = cell(x_t, h_{t-1})``.

    Args:
        cell: any module ``cell(x_t, h) -> h`` with a ``hidden_size`` attribute, e.g.
            :class:`GRUCell` or :class:`TanhCell`.
        temporal: the temporal skip, e.g. ``TemporalSkip(ks=(2, 4))`` (default none).

    Shapes:
        ``x``: ``(B, T, I)``, ``h0``: ``(B, H)`` (default zeros). Returns the states
        ``(B, T, H)`` and the last state ``(B, H)``.
    """

    def __init__(self, cell: nn.Module, temporal: TemporalSkip | None = None) -> None:
        super().__init__()
        hidden = getattr(cell, "hidden_size", None)
        if not isinstance(hidden, int):
            raise ValueError(f"SkipRNN needs a cell with an int `hidden_size`; got {cell!r}")
        self.cell = cell
        self.hidden_size = hidden
        self.temporal = temporal

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise ValueError(f"SkipRNN expects (B, T, features), got {tuple(x.shape)}")
        h = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0  # (B, H)
        states = [h]  # h_0 .. h_t
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)  # (B, H)
            if self.temporal is not None:
                h = self.temporal(h, states)  # h + mean_k h_{t-k}
            states.append(h)
        return torch.stack(states[1:], dim=1), h  # (B, T, H), (B, H)


class GRU(nn.Module):
    """A stack of GRU layers that computes what ``torch.nn.GRU`` computes.

    Reference: Cho et al. 2014; the update is a gated skip, see :class:`GRUCell`.

    Args:
        input_size: features of the input.
        hidden_size: features of every layer's state.
        num_layers: stacked layers (default 1).
        bias: learn the biases (default True).
        batch_first: inputs and outputs as ``(B, T, F)`` (default True, skiplab's layout;
            ``torch.nn.GRU`` defaults to False).
        skip: False builds the plain twin (every cell without its carried state).

    Shapes:
        ``x``: ``(B, T, input_size)`` (``(T, B, input_size)`` if not ``batch_first``);
        ``h0``: ``(num_layers, B, hidden_size)`` (default zeros). Returns the last layer's
        states ``(B, T, hidden_size)`` and the last states ``(num_layers, B, hidden_size)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        skip: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"GRU num_layers must be >= 1, got {num_layers}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.layers = nn.ModuleList(
            SkipRNN(GRUCell(input_size if i == 0 else hidden_size, hidden_size, bias, skip))
            for i in range(num_layers)
        )

    @classmethod
    def from_torch(cls, gru: nn.GRU, skip: bool = True) -> GRU:
        """A skiplab GRU with ``gru``'s architecture and weights."""
        if gru.bidirectional or gru.proj_size:
            raise ValueError("GRU.from_torch supports unidirectional GRUs without projections")
        model = cls(
            gru.input_size, gru.hidden_size, gru.num_layers, gru.bias, gru.batch_first, skip
        )
        model.load_torch_state_dict(gru.state_dict())
        return model.to(next(gru.parameters()).dtype)

    def load_torch_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load the state dict of a ``torch.nn.GRU`` with the same architecture.

        Raises:
            ValueError: missing or unexpected keys, or a shape mismatch, naming them.
        """
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ours = {}
        for i, layer in enumerate(self.layers):
            for n in names:
                if getattr(layer.cell, n) is not None:
                    ours[f"{n}_l{i}"] = f"layers.{i}.cell.{n}"
        missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
        if missing or unexpected:
            raise ValueError(
                f"not a state dict of a torch.nn.GRU like this one ({self.num_layers} layer(s), "
                f"unidirectional): missing {missing}, unexpected {unexpected}"
            )
        mine = self.state_dict()
        for key, target in ours.items():
            if state[key].shape != mine[target].shape:
                raise ValueError(
                    f"{key}: torch shape {tuple(state[key].shape)} does not fit {target} of "
                    f"shape {tuple(mine[target].shape)} (input_size={self.input_size}, "
                    f"hidden_size={self.hidden_size})"
                )
        self.load_state_dict({ours[k]: state[k] for k in ours}, strict=True)

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            layout = "(B, T, F)" if self.batch_first else "(T, B, F)"
            raise ValueError(f"GRU expects {layout} with F={self.input_size}, got {tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)  # (B, T, F)
        last = []
        for i, layer in enumerate(self.layers):
            x, h = layer(x, None if h0 is None else h0[i])  # (B, T, H), (B, H)
            last.append(h)
        out = x if self.batch_first else x.transpose(0, 1)
        return out, torch.stack(last)  # (B, T, H) and (num_layers, B, H)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"batch_first={self.batch_first}"
        )


@dataclass
class RNNConfig:
    """Architecture of a recurrent network with a linear read-out."""

    input_size: int = 2  # the adding problem's (value, marker) pairs
    hidden_size: int = 64  # enough to hold two numbers or ten symbols
    out_features: int = 1  # the adding problem's sum
    cell: str = "tanh"  # "tanh" (Elman: the cell that loses long-range gradients) or "gru"
    ks: tuple[int, ...] = (2,)  # temporal skips t-k -> t; () for none (the article's t -> t+2)
    merge: str = "add"  # temporal merge: "add" (identity skip) or "average" (convex, bounded)
    readout: str = "last"  # "last": read h_T (sums, classes); "all": every step (copying)
    skip: bool = True  # False: plain twin, no temporal skip and no GRU carry

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"RNNConfig cell must be one of {CELLS}, got {self.cell!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"RNNConfig readout must be one of {READOUTS}, got {self.readout!r}")
        self.ks = tuple(self.ks)


_CELL_FACTORIES: dict[str, Callable[[RNNConfig], nn.Module]] = {
    "tanh": lambda c: TanhCell(c.input_size, c.hidden_size),
    "gru": lambda c: GRUCell(c.input_size, c.hidden_size, skip=c.skip),
}


class RecurrentNet(nn.Module):
    """A :class:`SkipRNN` and a linear read-out of its last state or of every state.

    Shapes:
        input ``(B, T, input_size)``; returns ``(B, out_features)`` (``readout="last"``) or
        ``(B, T, out_features)`` (``readout="all"``).
    """

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        temporal = TemporalSkip(cfg.ks, skip=cfg.skip, merge=cfg.merge) if cfg.ks else None
        self.rnn = SkipRNN(_CELL_FACTORIES[cfg.cell](cfg), temporal)
        self.head = nn.Linear(cfg.hidden_size, cfg.out_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.cfg.input_size:
            raise ValueError(
                f"RecurrentNet expects (B, T, {self.cfg.input_size}), got {tuple(x.shape)}"
            )
        states, last = self.rnn(x)  # (B, T, H), (B, H)
        return self.head(last if self.cfg.readout == "last" else states)

    def extra_repr(self) -> str:
        return f"cell={self.cfg.cell!r}, ks={self.cfg.ks}, readout={self.cfg.readout!r}"


def _build(defaults: RNNConfig, kwargs: dict[str, Any]) -> RecurrentNet:
    return RecurrentNet(replace(defaults, **kwargs))


def _adding_example() -> tuple[torch.Tensor, ...]:
    return (torch.rand(2, 12, 2),)


@register_model(example=_adding_example)
def skip_rnn(**kwargs: Any) -> RecurrentNet:
    """Elman RNN with a temporal skip t-2 -> t, read out at the last step (adding problem)."""
    return _build(RNNConfig(), kwargs)


@register_model(example=_adding_example)
def skip_rnn_multi(**kwargs: Any) -> RecurrentNet:
    """Elman RNN with temporal skips of 2, 4 and 8 steps at once."""
    return _build(RNNConfig(ks=(2, 4, 8)), kwargs)


@register_model(example=_adding_example)
def skip_gru(**kwargs: Any) -> RecurrentNet:
    """skiplab GRU cell (a gated skip) with a temporal skip t-2 -> t."""
    return _build(RNNConfig(cell="gru"), kwargs)


@register_model(example=lambda: (torch.randn(2, 40, 1),))
def gru_mnist1d(**kwargs: Any) -> RecurrentNet:
    """GRU classifier of MNIST-1D read as a 40-step sequence (Greydanus & Kobak's baseline)."""
    cfg = RNNConfig(input_size=1, hidden_size=128, out_features=10, cell="gru", ks=())
    return _build(cfg, kwargs)


@register_model(example=lambda: (torch.randn(2, 9, 4),))
def gru(input_size: int = 4, hidden_size: int = 32, num_layers: int = 1, skip: bool = True) -> GRU:
    """The torch-compatible GRU layer stack; returns ``(states, last states)``."""
    return GRU(input_size, hidden_size, num_layers, skip=skip)
