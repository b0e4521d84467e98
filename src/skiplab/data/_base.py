"""Shared parts of ``skiplab.data``: the :class:`Splits` container and the dataset registry.

The registry follows timm's ``_registry.py``: each loader registers itself under a name with
:func:`register_dataset`, and :func:`get_dataset` raises on an unknown name with the list of
known ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import TensorDataset

from ._errors import DatasetOptionError

__all__ = [
    "FILES_DIR",
    "Splits",
    "get_dataset",
    "list_datasets",
    "make_splits",
    "register_dataset",
]

#: Data files shipped inside the package (``pyproject`` ships ``data/files/**/*``), so that a
#: fresh clone works offline.
FILES_DIR = Path(__file__).resolve().parent / "files"


@dataclass(repr=False)
class Splits:
    """A train/test pair of tensor datasets with the metadata a model needs to be built for it.

    Args:
        train: ``TensorDataset(x, y)`` for training.
        test: ``TensorDataset(x, y)`` held out for evaluation.
        name: registry name of the dataset (``"mnist"``, ``"mnist1d"``, ``"digits"``).
        num_classes: number of target classes; labels lie in ``[0, num_classes)``.
        in_channels: ``input_shape[0]``: image channels, or the feature count of flattened data.
        input_shape: shape of one example, without the batch dimension.

    Shapes:
        - ``train.tensors[0]``: ``(N_train, *input_shape)``, float32
        - ``train.tensors[1]``: ``(N_train,)``, int64
        - the same for ``test`` with ``N_test``
    """

    train: TensorDataset
    test: TensorDataset
    name: str
    num_classes: int
    in_channels: int
    input_shape: tuple[int, ...]

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_test(self) -> int:
        return len(self.test)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Splits:
        """The first ``n_train`` training and ``n_test`` test examples, for quick experiments.

        The loaders already shuffle with a fixed seed, so a prefix is a random subset and is
        the same subset on every call. ``None`` keeps a split whole.

        Returns:
            A new :class:`Splits` sharing storage with this one (views, not copies).
        """
        return Splits(
            train=_prefix(self.train, n_train, "n_train"),
            test=_prefix(self.test, n_test, "n_test"),
            name=self.name,
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            input_shape=self.input_shape,
        )

    def __repr__(self) -> str:
        # The default dataclass repr would print two TensorDataset object addresses; the sizes
        # are what a reader of a log wants.
        return (
            f"Splits(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def _prefix(ds: TensorDataset, n: int | None, what: str) -> TensorDataset:
    if n is None:
        return ds
    if not 0 <= n <= len(ds):
        raise ValueError(f"{what}={n} is out of range: the split has {len(ds)} examples")
    return TensorDataset(*(t[:n] for t in ds.tensors))


def make_splits(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_train: int,
    n_test: int,
    seed: int,
    name: str,
    num_classes: int,
) -> Splits:
    """Shuffle ``(x, y)`` with a seeded ``torch.Generator`` and cut it into train and test.

    A private generator keeps the split independent of, and harmless to, the global RNG.

    Shapes:
        - x: ``(N, *input_shape)``, y: ``(N,)``; ``n_train + n_test <= N``
    """
    n = x.shape[0]
    if n_train < 1 or n_test < 0 or n_train + n_test > n:
        raise ValueError(
            f"{name}: cannot split {n} examples into n_train={n_train} and n_test={n_test} "
            f"(need n_train >= 1, n_test >= 0 and n_train + n_test <= {n})"
        )
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    input_shape = tuple(int(s) for s in x.shape[1:])
    return Splits(
        train=TensorDataset(x[tr], y[tr]),
        test=TensorDataset(x[te], y[te]),
        name=name,
        num_classes=num_classes,
        in_channels=input_shape[0],
        input_shape=input_shape,
    )


_Loader = TypeVar("_Loader", bound=Callable[..., Splits])
_DATASETS: dict[str, Callable[..., Splits]] = {}


def register_dataset(name: str) -> Callable[[_Loader], _Loader]:
    """Decorator that makes a loader reachable as ``get_dataset(name, **kw)``."""

    def decorate(fn: _Loader) -> _Loader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = fn
        return fn

    return decorate


def list_datasets() -> list[str]:
    """Names accepted by :func:`get_dataset`, sorted."""
    return sorted(_DATASETS)


def get_dataset(name: str, **kw: Any) -> Splits:
    """Load a registered dataset by name.

    Args:
        name: one of :func:`list_datasets` (``"digits"``, ``"mnist"``, ``"mnist1d"``).
        **kw: passed to the loader, e.g. ``seed=1`` or ``n_train=1000``.

    Returns:
        The loader's :class:`Splits`.

    Raises:
        ValueError: for an unknown name, listing the known ones.
        DatasetOptionError: an option in ``kw`` that the loader does not take.
    """
    try:
        loader = _DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}"
        ) from None
    params = inspect.signature(loader).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        accepted = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(kw) - set(accepted))
        if unknown:
            raise DatasetOptionError(name, unknown, accepted)
    return loader(**kw)
