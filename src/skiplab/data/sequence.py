"""Seeded synthetic sequence tasks for recurrent, encoder-decoder and Transformer models.

Every generator draws from its own ``torch.Generator`` (the global RNG is left alone) and
returns ``(x, y)`` tensors, so the same seed gives the same task on every machine.

* :func:`adding_problem` -- Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton
  2015: sum the two marked numbers of a long sequence.
* :func:`copy_memory` -- Hochreiter & Schmidhuber 1997, in the form of Arjovsky, Shah & Bengio
  2016: recall ten symbols after a long blank delay.
* :func:`sequence_copy` and :func:`sequence_reversal` -- the encoder-decoder tasks of
  Sutskever et al. 2014 / Bahdanau et al. 2015 style experiments: emit the source sequence as
  it is, or reversed.
* :func:`load_mnist1d_sequence` -- MNIST-1D read one value per step (the GRU baseline of
  Greydanus & Kobak).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from ._base import Splits
from .mnist1d import load_mnist1d

__all__ = [
    "COPY_BLANK",
    "COPY_DELIMITER",
    "adding_problem",
    "copy_memory",
    "load_mnist1d_sequence",
    "sequence_copy",
    "sequence_reversal",
]

COPY_BLANK = 0  # copy-memory's blank symbol (Arjovsky et al. 2016)
COPY_DELIMITER = 9  # copy-memory's "now recall" marker; symbols to remember are 1..8


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check(name: str, **values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ValueError(f"{name}: {key} must be >= 1, got {value}")


def adding_problem(n: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015).

    Each step carries a value ``u_t ~ U(0, 1)`` and a marker ``m_t``; exactly two markers are 1,
    one in the first half of the sequence and one in the second. The target is the sum of the
    two marked values, ``y = sum_t m_t u_t``. Predicting the mean, 1, scores MSE ~ 1/6.

    Args:
        n: number of sequences.
        length: steps per sequence, >= 2.
        seed: generator seed.

    Returns:
        ``x`` ``(n, length, 2)`` float32 (value, marker) and ``y`` ``(n,)`` float32.
    """
    _check("adding_problem", n=n)
    if length < 2:
        raise ValueError(f"adding_problem: length must be >= 2 (two marked steps), got {length}")
    g = _gen(seed)
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)  # (n, length, 2)
    return x, (values * markers).sum(dim=1)


def copy_memory(
    n: int, delay: int, copy_length: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    Input: ``copy_length`` symbols drawn from ``1..8``, ``delay - 1`` blanks (0), the delimiter
    (9), then ``copy_length`` blanks. Target: blanks for the first ``delay + copy_length``
    steps, then the ``copy_length`` symbols in order. A model that outputs blanks and then
    guesses scores cross-entropy ``copy_length * ln 8 / (delay + 2 * copy_length)``.

    Args:
        n: number of sequences.
        delay: steps between the last symbol and the delimiter, plus one (``T`` in Arjovsky
            et al.), >= 1.
        copy_length: symbols to remember (default 10, as in the papers).
        seed: generator seed.

    Returns:
        ``x`` and ``y``, both ``(n, delay + 2 * copy_length)`` int64 tokens in ``0..9``.
    """
    _check("copy_memory", n=n, delay=delay, copy_length=copy_length)
    g = _gen(seed)
    total = delay + 2 * copy_length
    symbols = torch.randint(1, 9, (n, copy_length), generator=g)
    x = torch.full((n, total), COPY_BLANK, dtype=torch.long)
    y = torch.full((n, total), COPY_BLANK, dtype=torch.long)
    x[:, :copy_length] = symbols
    x[:, copy_length + delay - 1] = COPY_DELIMITER
    y[:, -copy_length:] = symbols
    return x, y


def sequence_copy(
    n: int, length: int, vocab: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy: the target is the source, ``y = x``, symbols i.i.d. uniform in ``0..vocab-1``.

    Returns:
        ``x`` and ``y``, both ``(n, length)`` int64.
    """
    _check("sequence_copy", n=n, length=length, vocab=vocab)
    x = torch.randint(0, vocab, (n, length), generator=_gen(seed))
    return x, x.clone()


def sequence_reversal(
    n: int, length: int, vocab: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reversal: ``y_t = x_{length - 1 - t}``, symbols i.i.d. uniform in ``0..vocab-1``.

    Returns:
        ``x`` and ``y``, both ``(n, length)`` int64.
    """
    _check("sequence_reversal", n=n, length=length, vocab=vocab)
    x = torch.randint(0, vocab, (n, length), generator=_gen(seed))
    return x, x.flip(1)


def load_mnist1d_sequence(**kwargs: Any) -> Splits:
    """MNIST-1D as sequences of 40 scalar steps, for recurrent models.

    Reference: Greydanus & Kobak, "Scaling down deep learning with MNIST-1D" (GRU baseline).

    Args:
        **kwargs: passed to :func:`~skiplab.data.load_mnist1d` (``num_samples``, ``seed``...).

    Returns:
        :class:`Splits` named ``"mnist1d_seq"``.

    Shapes:
        - x: ``(N, L, 1)`` float32 (one value per step), y: ``(N,)`` int64
    """
    base = load_mnist1d(**kwargs)
    (x, y), (xt, yt) = base.train.tensors, base.test.tensors
    x, xt = x.transpose(1, 2), xt.transpose(1, 2)  # (N, 1, L) -> (N, L, 1)
    return Splits(
        train=TensorDataset(x, y),
        test=TensorDataset(xt, yt),
        name="mnist1d_seq",
        num_classes=base.num_classes,
        in_channels=int(x.shape[1]),
        input_shape=(int(x.shape[1]), 1),
    )
