"""Cora citation graph from a pickle-free ``.npz`` copy of the Planetoid split.

Reference: Z. Yang, W. Cohen and R. Salakhutdinov, "Revisiting Semi-Supervised Learning with
Graph Embeddings", ICML 2016 (the Planetoid split: 20 labelled nodes per class, 500 validation,
1,000 test); graph from Sen et al., "Collective Classification in Network Data", AI Magazine 2008.

The ``.npz`` holds plain arrays only, read with ``allow_pickle=False``:
``x_indptr, x_indices, x_data, x_shape`` (the CSR feature matrix), ``y``, ``edge_index`` (both
directions of every edge) and ``train_mask, val_mask, test_mask``.
"""

from __future__ import annotations

import zipfile
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._base import FILES_DIR
from ._errors import DataError

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["CORA_PATH", "load_cora"]

#: The copy shipped in the package.
CORA_PATH = FILES_DIR / "planetoid" / "cora.npz"

_KEYS = (
    "x_indptr",
    "x_indices",
    "x_data",
    "x_shape",
    "y",
    "edge_index",
    "train_mask",
    "val_mask",
    "test_mask",
)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; expected keys {sorted(_KEYS)}")
            return {k: f[k] for k in _KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # ValueError covers object arrays refused because pickle is off.
        raise DataError(f"{path}: not a readable pickle-free .npz file ({e})") from e


def _check(path: Path, key: str, arr: np.ndarray, shape: tuple[int, ...], kind: str) -> None:
    """Raise a DataError naming the file and key unless ``arr`` has ``shape`` and dtype kind."""
    if arr.shape != shape or arr.dtype.kind not in kind:
        want = {"iu": "integer", "b": "bool", "fiu": "numeric"}[kind]
        raise DataError(
            f"{path}: key {key!r} should be a {want} array of shape {shape}, "
            f"found {arr.dtype} {arr.shape}"
        )


def load_cora(path: str | PathLike[str] | None = None, *, normalize: bool = True) -> Data:
    """Cora (2,708 papers, 1,433 bag-of-words features, 7 classes) with the Planetoid split.

    Reference: Yang, Cohen & Salakhutdinov, ICML 2016; used by Kipf & Welling, "Semi-Supervised
    Classification with Graph Convolutional Networks", ICLR 2017.

    Args:
        path: the ``.npz`` file; default the copy shipped in the package.
        normalize: divide each feature row by its sum, as PyG's ``NormalizeFeatures`` does
            (rows with no features stay zero), the standard Planetoid preprocessing.

    Returns:
        ``torch_geometric.data.Data`` with ``x, edge_index, y, train_mask, val_mask, test_mask``;
        the number of classes is ``int(data.y.max()) + 1``.

    Shapes:
        - x: ``(N, F)`` float32, dense (``N = 2708``, ``F = 1433`` for Cora)
        - edge_index: ``(2, E)`` int64, each undirected edge in both directions (``E = 10556``)
        - y: ``(N,)`` int64; masks: ``(N,)`` bool (140 / 500 / 1,000 nodes)

    Raises:
        DataError: naming the file and the missing key or bad shape.
    """
    from torch_geometric.data import Data

    path = Path(path) if path is not None else CORA_PATH
    a = _read_arrays(path)

    _check(path, "x_shape", a["x_shape"], (2,), "iu")
    n, f = (int(v) for v in a["x_shape"])
    _check(path, "x_indptr", a["x_indptr"], (n + 1,), "iu")
    nnz = a["x_indices"].shape[0] if a["x_indices"].ndim == 1 else -1
    _check(path, "x_indices", a["x_indices"], (nnz,), "iu")
    _check(path, "x_data", a["x_data"], (nnz,), "fiu")
    indptr, indices = a["x_indptr"], a["x_indices"]
    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
        raise DataError(f"{path}: key 'x_indptr' is not a valid CSR row pointer for {nnz} entries")
    if nnz and (indices.min() < 0 or indices.max() >= f):
        raise DataError(f"{path}: key 'x_indices' has column indices outside [0, {f})")
    _check(path, "y", a["y"], (n,), "iu")
    n_edges = a["edge_index"].shape[1] if a["edge_index"].ndim == 2 else -1
    _check(path, "edge_index", a["edge_index"], (2, n_edges), "iu")
    if n_edges and (a["edge_index"].min() < 0 or a["edge_index"].max() >= n):
        raise DataError(f"{path}: key 'edge_index' has node indices outside [0, {n})")
    for key in ("train_mask", "val_mask", "test_mask"):
        _check(path, key, a[key], (n,), "b")

    # Densify the CSR matrix: row r owns entries indptr[r]:indptr[r+1].
    rows = torch.repeat_interleave(torch.arange(n), torch.from_numpy(np.diff(indptr)))
    cols = torch.from_numpy(indices.astype(np.int64))
    x = torch.zeros(n, f, dtype=torch.float32)  # (N, F)
    # accumulate=True gives CSR semantics for duplicate entries (they add up).
    x.index_put_((rows, cols), torch.from_numpy(a["x_data"].astype(np.float32)), accumulate=True)
    if normalize:
        # Same as torch_geometric.transforms.NormalizeFeatures: shift to >= 0, rows sum to 1.
        x = x - x.min()
        x = x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)

    return Data(
        x=x,
        edge_index=torch.from_numpy(a["edge_index"].astype(np.int64)),
        y=torch.from_numpy(a["y"].astype(np.int64)),
        train_mask=torch.from_numpy(a["train_mask"]),
        val_mask=torch.from_numpy(a["val_mask"]),
        test_mask=torch.from_numpy(a["test_mask"]),
    )
