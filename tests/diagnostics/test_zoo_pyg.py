"""Skip discovery on real PyG models: message passing runs real ops, the recorder sees them.

Expected merges, read off each architecture:

* ``GCN`` (``BasicGNN``) without jumping knowledge: none.
* ``GCN(jk="cat")``: one concatenation, of the per-layer outputs, in ``jk``.
* DeeperGCN (Li et al. 2020) with ``DeepGCNLayer(block="res+")``: ``x + conv(act(norm(x)))`` in
  every layer after the first (the first applies its ``conv`` alone, as in PyG's example).
* GCNII (Chen et al. 2020), ``GCN2Conv``: the initial residual ``(1 - alpha) P h + alpha x0`` in
  every layer: a residual add with both operands scaled (``scale == "both"``). In the first layer
  its branch ``P x0`` holds no parameter, only message passing over ``edge_index``; propagation
  along the graph counts as the branch (see :mod:`skiplab.diagnostics.skips`).
"""

import pytest
import torch
from torch import nn

pyg = pytest.importorskip("torch_geometric")

from torch_geometric.nn import GCN, DeepGCNLayer, GCN2Conv, GCNConv  # noqa: E402

from skiplab.diagnostics import find_skips  # noqa: E402

N, F_IN, D = 20, 8, 16


def _graph():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=g)
    src = torch.randint(0, N, (40,), generator=g)
    dst = torch.randint(0, N, (40,), generator=g)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    return x, edge_index


class DeeperGCN(nn.Module):
    """DeeperGCN's res+ stack, as in PyG's ``ogbn_proteins_deepgcn.py`` example."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(F_IN, D)
        self.layers = nn.ModuleList(
            DeepGCNLayer(GCNConv(D, D), nn.LayerNorm(D), nn.ReLU(), block="res+", dropout=0.1)
            for _ in range(layers)
        )
        self.head = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = self.layers[0].conv(self.encoder(x), edge_index)
        for layer in self.layers[1:]:
            x = layer(x, edge_index)  # x + conv(act(norm(x)))
        x = self.layers[0].act(self.layers[0].norm(x))
        return self.head(x)


class GCNII(nn.Module):
    """GCNII, as in PyG's ``gcn2_cora.py`` example (without dropout)."""

    def __init__(self, layers: int, alpha: float = 0.1, theta: float = 0.5) -> None:
        super().__init__()
        self.lin_in = nn.Linear(F_IN, D)
        self.convs = nn.ModuleList(GCN2Conv(D, alpha, theta, layer=i + 1) for i in range(layers))
        self.lin_out = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = x0 = self.lin_in(x).relu()
        for conv in self.convs:
            x = conv(x, x0, edge_index).relu()  # ((1 - a) P x + a x0)((1 - b) I + b W)
        return self.lin_out(x)


@pytest.fixture(scope="module")
def reports():
    x, edge_index = _graph()
    models = {
        "gcn": GCN(F_IN, D, num_layers=3, out_channels=3),
        "gcn_jk": GCN(F_IN, D, num_layers=3, out_channels=3, jk="cat"),
        "deepgcn": DeeperGCN(4),
        "gcnii": GCNII(3),
    }
    out = {}
    for name, model in models.items():
        torch.manual_seed(0)
        out[name] = find_skips(model, (x, edge_index))
    return out


def test_plain_gcn_has_no_skip(reports):
    assert reports["gcn"].merges == []


def test_jumping_knowledge_cat_is_one_concat_in_jk(reports):
    (m,) = reports["gcn_jk"].merges
    assert (m.kind, m.module, m.method) == ("concat", "jk", "forward")
    assert m.shortcut_layers == 0 and m.branch_layers >= 1


def test_deepgcn_res_plus_one_residual_per_layer_after_the_first(reports):
    merges = reports["deepgcn"].merges
    assert [m.kind for m in merges] == ["residual"] * 3
    assert [m.module for m in merges] == ["layers.1", "layers.2", "layers.3"]
    assert [m.branch_module for m in merges] == ["layers.1.conv", "layers.2.conv", "layers.3.conv"]
    assert all(m.shortcut_layers == 0 and m.branch_layers == 1 for m in merges)
    assert all(m.scale == "" for m in merges)


def test_gcnii_initial_residual_in_every_layer(reports):
    merges = reports["gcnii"].merges
    assert [m.kind for m in merges] == ["residual"] * 3
    assert [m.module for m in merges] == ["convs.0", "convs.1", "convs.2"]
    assert all(m.scale == "both" for m in merges)
    # the shortcut is alpha * x0: no weight layer; the branch of layer i passes i weight layers
    # (the previous layers' W) and the propagation
    assert [m.shortcut_layers for m in merges] == [0, 0, 0]
    assert [m.branch_layers for m in merges] == [0, 1, 2]
