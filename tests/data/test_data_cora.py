"""skiplab.data.cora: the Planetoid Cora graph from a pickle-free npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skiplab.data import CORA_PATH, DataError, load_cora


@pytest.fixture(scope="module")
def cora():
    return load_cora()


def test_sizes(cora):
    assert cora.num_nodes == 2708
    assert cora.x.shape == (2708, 1433) and cora.x.dtype == torch.float32
    assert int(cora.y.max()) + 1 == 7 and int(cora.y.min()) == 0
    assert cora.edge_index.shape == (2, 10556) and cora.edge_index.dtype == torch.int64


def test_planetoid_masks(cora):
    assert [int(m.sum()) for m in (cora.train_mask, cora.val_mask, cora.test_mask)] == [
        140,
        500,
        1000,
    ]
    assert not (cora.train_mask & cora.val_mask).any()
    assert not (cora.train_mask & cora.test_mask).any()
    assert not (cora.val_mask & cora.test_mask).any()
    # Planetoid: 20 labelled nodes per class.
    assert torch.bincount(cora.y[cora.train_mask]).tolist() == [20] * 7


def test_edge_index_symmetric(cora):
    ei = cora.edge_index
    forward = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert len(forward) == 10556  # no duplicate edges
    assert forward == {(j, i) for i, j in forward}
    assert not (ei[0] == ei[1]).any()  # no self loops


def test_row_normalised(cora):
    sums = cora.x.sum(1)
    nonempty = sums > 0
    assert nonempty.all()
    torch.testing.assert_close(sums, torch.ones(2708))


def test_raw_features_binary():
    x = load_cora(normalize=False).x
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert int(x.sum()) == 49216


def _arrays():
    with np.load(CORA_PATH, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_missing_key_names_file_and_key(tmp_path):
    a = _arrays()
    del a["y"]
    bad = tmp_path / "no_y.npz"
    np.savez(bad, **a)
    with pytest.raises(DataError, match=r"missing key\(s\) \['y'\]") as info:
        load_cora(bad)
    assert str(bad) in str(info.value)


def test_bad_shape_names_file_and_key(tmp_path):
    a = _arrays()
    a["train_mask"] = a["train_mask"][:-1]
    bad = tmp_path / "short_mask.npz"
    np.savez(bad, **a)
    with pytest.raises(DataError, match=r"'train_mask'.*\(2708,\).*\(2707,\)") as info:
        load_cora(bad)
    assert str(bad) in str(info.value)


def test_out_of_range_edge(tmp_path):
    a = _arrays()
    a["edge_index"] = a["edge_index"].copy()
    a["edge_index"][0, 0] = 2708
    bad = tmp_path / "edge.npz"
    np.savez(bad, **a)
    with pytest.raises(DataError, match="edge_index"):
        load_cora(bad)


def test_pickled_or_missing_or_garbage_file(tmp_path):
    a = _arrays()
    a["y"] = np.array([object()] * 2708, dtype=object)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **a)
    with pytest.raises(DataError, match="pickle") as info:
        load_cora(pickled)
    assert str(pickled) in str(info.value)

    with pytest.raises(DataError, match="file not found"):
        load_cora(tmp_path / "absent.npz")

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError) as info:
        load_cora(garbage)
    assert str(garbage) in str(info.value)
