"""First-symbol recall: classify a sequence by its first symbol, across a span of distractors.

The latching task of Bengio, Simard & Frasconi 1994 ("Learning long-term dependencies with
gradient descent is difficult"), with symbols instead of a real-valued class signal: the class
is set by the first step alone and the remaining ``length - 1`` steps are noise, so a recurrent
model must carry one symbol across ``length - 1`` state updates, and the gradient that teaches
it to do so crosses as many step Jacobians. The length of that span is the only difficulty:
one step of memory suffices at every length.

Like :mod:`skiplab.data.sequence`, the generator draws from its own ``torch.Generator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["first_symbol_recall"]


def first_symbol_recall(
    n: int, length: int, symbols: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences whose class is their first symbol, followed by ``length - 1`` distractors.

    Step 0 carries one of ``symbols`` class tokens (``0 .. symbols - 1``); steps
    ``1 .. length - 1`` carry distractor tokens drawn uniformly from a disjoint set of as many
    (``symbols .. 2 * symbols - 1``). Tokens are one-hot. Guessing scores ``1 / symbols``.

    Args:
        n: number of sequences.
        length: steps per sequence, >= 1 (the span to remember is ``length - 1`` steps).
        symbols: number of classes (and of distractor tokens), >= 2.
        seed: generator seed.

    Returns:
        ``x`` ``(n, length, 2 * symbols)`` float32 one-hot tokens and ``y`` ``(n,)`` int64
        classes in ``0 .. symbols - 1``.
    """
    if n < 1 or length < 1:
        raise ValueError(f"first_symbol_recall: n and length must be >= 1, got {n}, {length}")
    if symbols < 2:
        raise ValueError(f"first_symbol_recall: symbols must be >= 2, got {symbols}")
    g = torch.Generator().manual_seed(int(seed))
    first = torch.randint(0, symbols, (n, 1), generator=g)
    noise = torch.randint(symbols, 2 * symbols, (n, length - 1), generator=g)
    x = F.one_hot(torch.cat([first, noise], dim=1), 2 * symbols).float()  # (n, length, 2K)
    return x, first.squeeze(1)
