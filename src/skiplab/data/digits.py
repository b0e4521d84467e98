"""scikit-learn's 8x8 handwritten digits, which ship with scikit-learn (offline).

Reference: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository, 1998; loaded with ``sklearn.datasets.load_digits``.
"""

from __future__ import annotations

import torch

from ._base import Splits, make_splits, register_dataset

__all__ = ["load_digits"]


@register_dataset("digits")
def load_digits(
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    flatten: bool = False,
) -> Splits:
    """The 1,797 UCI digits (8x8, 16 grey levels) as images in [0, 1], split with a fixed seed.

    Reference: Alpaydin & Kaynak, UCI "Optical Recognition of Handwritten Digits", 1998.

    Args:
        test_fraction: share held out for testing, rounded down (0.2 gives 1,438 / 359).
        seed: seed of the ``torch.Generator`` permutation that makes the split.
        flatten: return ``(N, 64)`` vectors instead of ``(N, 1, 8, 8)`` images.

    Returns:
        :class:`Splits` named ``"digits"`` with 10 classes.

    Shapes:
        - x: ``(N, 1, 8, 8)`` float32 in [0, 1], or ``(N, 64)`` if ``flatten``
        - y: ``(N,)`` int64 in ``[0, 10)``
    """
    # Imported here: sklearn.datasets is slow to import and most skiplab runs never need it.
    from sklearn.datasets import load_digits as _sk_load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must lie in (0, 1)")
    bunch = _sk_load_digits()
    # Pixel values are counts of set bits in 4x4 blocks of a 32x32 bitmap, so 16 is the maximum.
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # (N, 1, 8, 8)
    if flatten:
        x = x.flatten(1)  # (N, 64)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    n = x.shape[0]
    n_test = int(n * test_fraction)
    return make_splits(
        x, y, n_train=n - n_test, n_test=n_test, seed=seed, name="digits", num_classes=10
    )
