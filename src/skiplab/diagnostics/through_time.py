"""The gradient through time of a recurrent network, and a GRU's gate as a residual weight.

An RNN unrolled over T steps is a T-layer network with shared weights: ``dh_T / dh_0`` is the
product of the T step Jacobians, and its spectral norm says how much of the initial state the
last state still feels (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013). A
temporal skip ``t - k -> t`` or a GRU's carried state adds identity paths to that product.

- :func:`state_jacobian` / :func:`state_jacobian_norm`: ``dh_T / dh_0`` of any
  ``rnn(x, h0) -> (states, last)``, e.g. :class:`~skiplab.models.rnn.SkipRNN`;
- :func:`pin_update_gate`: fix a :class:`~skiplab.models.rnn.GRUCell`'s update gate to a
  constant ``z``, so ``h_t = (1 - z) h_{t-1} + z h~_t`` is a residual add of fixed weight;
- :func:`torch_gru_differences`: how far a skiplab :class:`~skiplab.models.rnn.GRU` is from the
  ``torch.nn.GRU`` whose weights it carries, on outputs, states and gradients;
- :func:`source_gradients`: how much gradient of an encoder-decoder's loss reaches each source
  position: through the encoder's chain of steps only (a fixed context) or also directly
  (attention, Bahdanau et al. 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from skiplab.diagnostics.jacobian import exact_jacobian
from skiplab.models.rnn import GRU, GRUCell
from skiplab.models.seq2seq import Seq2Seq

#: ``torch.nn.GRU``'s parameters of one layer, in the order of ``gru.parameters()``.
TORCH_GRU_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def state_jacobian(rnn: nn.Module, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """``dh_T / dh_0`` of ``rnn`` on one sequence.

    Args:
        rnn: ``rnn(x, h0) -> (states, last)`` with ``h0`` ``(1, H)``, e.g. a ``SkipRNN``.
        x: one sequence ``(1, T, I)``.
        h0: the initial state ``(H,)`` where the Jacobian is taken.

    Returns:
        the ``(H, H)`` Jacobian of the last state with respect to ``h0``.
    """

    def last(h: torch.Tensor) -> torch.Tensor:
        return rnn(x, h.unsqueeze(0))[1].squeeze(0)  # (H,)

    return exact_jacobian(last, h0)


def state_jacobian_norm(rnn: nn.Module, x: torch.Tensor, h0: torch.Tensor) -> float:
    """Spectral norm ``||dh_T / dh_0||_2`` (see :func:`state_jacobian`)."""
    return float(torch.linalg.matrix_norm(state_jacobian(rnn, x, h0).detach(), ord=2))


def pin_update_gate(cell: GRUCell, z: float) -> None:
    """Make the update gate the constant ``z`` (the weight of the candidate) at every step.

    The gate's weights are zeroed and its bias set so that ``sigmoid(bias) = 1 - z``, torch's
    weight of ``h_{t-1}``; every other weight is left as it was.

    Raises:
        ValueError: ``z`` outside ``(0, 1)`` or a cell without biases.
    """
    if not 0.0 < z < 1.0:
        raise ValueError(f"pin_update_gate: z must lie in (0, 1), got {z}")
    if cell.bias_ih is None or cell.bias_hh is None:
        raise ValueError("pin_update_gate needs a GRUCell with biases (bias=True)")
    h = cell.hidden_size
    u = 1.0 - z  # torch's update gate, the weight of h_{t-1}
    with torch.no_grad():
        cell.weight_ih[h : 2 * h].zero_()
        cell.weight_hh[h : 2 * h].zero_()
        cell.bias_ih[h : 2 * h].fill_(math.log(u / (1.0 - u)))
        cell.bias_hh[h : 2 * h].zero_()


@dataclass(frozen=True)
class GRUDifferences:
    """Largest absolute differences between two GRUs run on the same input.

    Attributes:
        out: over all output states; h: over the last states; grad_x: over the input
            gradient; grad_params: over every parameter's gradient.
        out_by_step: the largest output difference at each time step.
    """

    out: float
    h: float
    grad_x: float
    grad_params: float
    out_by_step: list[float]


def torch_gru_differences(
    ref: nn.GRU, ours: GRU, x: torch.Tensor, h0: torch.Tensor, weights: torch.Tensor
) -> GRUDifferences:
    """Compare ``ours`` with ``ref`` on the loss ``sum(weights * out) + ||h_n||^2``.

    Args:
        ref: a batch-first ``torch.nn.GRU``; ours: a skiplab GRU with its weights
            (:meth:`GRU.from_torch`).
        x: input ``(B, T, I)``; h0: initial states ``(layers, B, H)``.
        weights: ``(B, T, H)``, the loss's weight of each output, so every output feeds
            the gradients.
    """
    x = x.detach().requires_grad_(True)
    mine = ours.state_dict(keep_vars=True)
    params = [
        list(ref.parameters()),
        [mine[f"layers.{i}.cell.{n}"] for i in range(ours.num_layers) for n in TORCH_GRU_PARAMS],
    ]
    results = []
    for model, ps in zip((ref, ours), params):
        out, h = model(x, h0)  # (B, T, H), (layers, B, H)
        loss = (weights * out).sum() + h.square().sum()
        results.append((out, h, torch.autograd.grad(loss, [x, *ps])))
    (o1, h1, g1), (o2, h2, g2) = results
    by_step = (o1 - o2).detach().abs().amax(dim=(0, 2))  # (T,)
    return GRUDifferences(
        out=float(by_step.max()),
        h=float((h1 - h2).detach().abs().max()),
        grad_x=float((g1[0] - g2[0]).abs().max()),
        grad_params=max(float((a - b).abs().max()) for a, b in zip(g1[1:], g2[1:])),
        out_by_step=by_step.tolist(),
    )


def source_gradients(model: Seq2Seq, src: torch.Tensor, tgt: torch.Tensor) -> list[float]:
    """``||dL / d emb(x_s)||`` for every source position s, averaged over the batch.

    ``L`` is the teacher-forced loss summed over the output steps (each step's cross-entropy
    averaged over the batch).

    Shapes:
        ``src`` ``(B, S)``, ``tgt`` ``(B, T)`` int64; returns ``S`` numbers.
    """
    emb = model.embed(src).detach().requires_grad_(True)  # (B, S, E)
    keys, _ = model.encoder(emb)  # (B, S, H)
    s = keys[:, -1]  # the decoder starts from the last encoder state
    inputs = torch.cat([tgt.new_full((tgt.shape[0], 1), model.bos), tgt[:, :-1]], dim=1)
    losses = []
    for t in range(tgt.shape[1]):
        logits, s, _ = model.step(inputs[:, t], s, keys)
        losses.append(F.cross_entropy(logits, tgt[:, t]))
    (g,) = torch.autograd.grad(torch.stack(losses).sum(), emb)
    return g.norm(dim=-1).mean(0).tolist()  # (S,)
