"""A user's node-classification graph in the ``.npz`` format of the shipped Cora, checked whole.

:func:`~skiplab.data.load_cora` reads any file of that format and checks its keys, shapes and
index ranges; :func:`load_graph` adds what an experiment on the graph needs beyond that: three
non-empty, disjoint masks, labels ``0..C-1`` with every class present, finite features. Each
problem is one :class:`~skiplab.data.DataError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ._errors import DataError
from .cora import load_cora

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["PLANETOID", "file_sha256", "load_graph", "planetoid_name"]

#: The Planetoid citation graphs by (nodes, features) (Yang et al. 2016; Kipf & Welling 2017,
#: Table 1).
PLANETOID = {(2708, 1433): "Cora", (3327, 3703): "CiteSeer", (19717, 500): "PubMed"}

MASKS = ("train_mask", "val_mask", "test_mask")


def planetoid_name(num_nodes: int, num_features: int) -> str | None:
    """``"Cora"``, ``"CiteSeer"`` or ``"PubMed"`` for a graph of their size, else ``None``."""
    return PLANETOID.get((num_nodes, num_features))


def file_sha256(path: str | PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_graph(path: str | PathLike[str], *, normalize: bool = True) -> Data:
    """A node-classification graph from ``path`` (the shipped Cora's ``.npz`` format).

    Args:
        path: the ``.npz`` file (keys ``x_indptr, x_indices, x_data, x_shape, y,
            edge_index, train_mask, val_mask, test_mask``; see :mod:`skiplab.data.cora`).
        normalize: row-normalise the features, as :func:`~skiplab.data.load_cora`.

    Returns:
        the graph as :func:`~skiplab.data.load_cora` returns it.

    Raises:
        DataError: naming the file and the key: a missing or misshapen array (from
            ``load_cora``), an empty or overlapping mask, labels that are not ``0..C-1`` with
            every class present (at least two), or non-finite features.
    """
    path = Path(path)
    data = load_cora(path, normalize=normalize)
    y = data.y
    found = sorted({int(v) for v in torch.unique(y)})
    if found != list(range(len(found))) or len(found) < 2:
        shown = found if len(found) <= 12 else [*found[:6], "...", *found[-3:]]
        raise DataError(
            f"{path}: key 'y' should hold class labels 0..C-1 with every class present (C >= "
            f"2), found {shown}"
        )
    for key in MASKS:
        if not bool(data[key].any()):
            raise DataError(f"{path}: key {key!r} selects no node; each mask needs at least one")
    for i, a in enumerate(MASKS):
        for b in MASKS[i + 1 :]:
            both = int((data[a] & data[b]).sum())
            if both:
                raise DataError(f"{path}: keys {a!r} and {b!r} overlap on {both} node(s)")
    if not bool(torch.isfinite(data.x).all()):
        raise DataError(f"{path}: key 'x_data' has non-finite feature values")
    return data
