"""MNIST-1D, generated offline with the ``mnist1d`` package and cached as ``.npz``.

Reference: S. Greydanus and D. Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024
(arXiv:2011.14439); generator from https://github.com/greydanus/mnist1d.

Only ``mnist1d.data.make_dataset`` is called: never ``get_dataset``, which may download a
pickle from GitHub and unpickles files. Generation takes about a second, so the arrays are cached
under ``$SKIPLAB_CACHE`` (default ``~/.cache/skiplab``) in a file keyed by every generator
argument and the ``mnist1d`` version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
import warnings
from importlib import metadata
from os import PathLike
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ._base import Splits, register_dataset

__all__ = ["default_cache_dir", "load_mnist1d"]

_ARRAY_KEYS = ("x", "y", "x_test", "y_test")
# The download URL is the one generator argument that does not change the data.
_NOT_GENERATOR_ARGS = frozenset({"url"})


def default_cache_dir() -> Path:
    """Root of skiplab's cache: ``$SKIPLAB_CACHE`` if set, else ``~/.cache/skiplab``."""
    env = os.environ.get("SKIPLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "skiplab"


def _default_args() -> dict[str, Any]:
    from mnist1d.data import get_dataset_args

    args: dict[str, Any] = get_dataset_args(as_dict=True)
    return {k: v for k, v in args.items() if k not in _NOT_GENERATOR_ARGS}


def _generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` without disturbing the caller's global RNGs.

    ``make_dataset`` seeds and draws from the global ``random`` and ``numpy.random`` state, so
    the state is saved and restored: loading data must not change a training run's randomness.
    """
    from mnist1d.data import make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _cache_key(args: dict[str, Any]) -> str:
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:  # pragma: no cover - imported from a source tree
        version = "unknown"
    blob = json.dumps({"mnist1d": version, "args": args}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` if absent or unusable (then the caller regenerates)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _ARRAY_KEYS}
    except Exception as e:  # a truncated or foreign file is only a cache miss
        warnings.warn(f"{path}: unreadable MNIST-1D cache ({e}); regenerating", stacklevel=3)
        return None
    x, y, xt, yt = (arrays[k] for k in _ARRAY_KEYS)
    if x.ndim != 2 or xt.ndim != 2 or y.shape != x.shape[:1] or yt.shape != xt.shape[:1]:
        warnings.warn(f"{path}: MNIST-1D cache has inconsistent shapes; regenerating", stacklevel=3)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file + ``os.replace``) so a crash or a concurrent reader never
    sees a half-written cache. A cache that cannot be written only costs time, so it warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as e:
        warnings.warn(f"{path}: cannot write MNIST-1D cache ({e})", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@register_dataset("mnist1d")
def load_mnist1d(
    *,
    num_samples: int = 5000,
    train_split: float = 0.8,
    seed: int = 42,
    cache: bool = True,
    cache_dir: str | PathLike[str] | None = None,
    **generator_args: Any,
) -> Splits:
    """MNIST-1D: 1-D signals of length 40 made from ten digit templates, generated offline.

    Reference: Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024.

    The split is the generator's own: it shuffles the examples and takes the first
    ``int(N * train_split)`` for training. The generator makes ``num_samples // 10`` examples
    per class and standardises the whole set to mean 0, std 1.

    Args:
        num_samples: total examples; default 5,000, the package's ``get_dataset_args()``
            default (4,000 train / 1,000 test).
        train_split: fraction used for training (default 0.8).
        seed: generator seed; the package's default 42 reproduces its canonical arrays.
        cache: read and write the ``.npz`` cache.
        cache_dir: directory of the cache files; default ``default_cache_dir() / "mnist1d"``.
        **generator_args: any other ``mnist1d.data.get_dataset_args()`` field, e.g.
            ``shuffle_seq=True`` or ``iid_noise_scale=0.05``.

    Returns:
        :class:`Splits` named ``"mnist1d"`` with 10 classes.

    Shapes:
        - x: ``(N, 1, L)`` float32, ``L = final_seq_length`` (40 by default)
        - y: ``(N,)`` int64 in ``[0, 10)``
    """
    args = _default_args()
    unknown = set(generator_args) - set(args)
    if unknown:
        raise ValueError(
            f"unknown MNIST-1D generator argument(s) {sorted(unknown)}; "
            f"known: {', '.join(sorted(args))}"
        )
    if num_samples < 10:
        raise ValueError(f"num_samples={num_samples} must be >= 10 (one example per class)")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split={train_split} must lie in (0, 1)")
    args.update(generator_args, num_samples=num_samples, train_split=train_split, seed=seed)

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "mnist1d"
    path = folder / f"mnist1d-{_cache_key(args)}.npz"
    arrays = _read_cache(path) if cache else None
    if arrays is None:
        arrays = _generate(args)
        if cache:
            _write_cache(path, arrays)

    x = torch.from_numpy(arrays["x"]).unsqueeze(1)  # (N_train, 1, L)
    xt = torch.from_numpy(arrays["x_test"]).unsqueeze(1)  # (N_test, 1, L)
    y, yt = torch.from_numpy(arrays["y"]), torch.from_numpy(arrays["y_test"])
    return Splits(
        train=TensorDataset(x, y),
        test=TensorDataset(xt, yt),
        name="mnist1d",
        num_classes=10,
        in_channels=1,
        input_shape=(1, int(x.shape[-1])),
    )
