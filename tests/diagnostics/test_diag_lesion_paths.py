import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from skiplab.diagnostics import (
    block_paths,
    chain_path_stats,
    find_skips,
    graph_paths,
    lesion_study,
    lesioned,
    model_block_paths,
    path_gradient_contribution,
)
from skiplab.diagnostics.lesion import accuracy, deletable_blocks
from skiplab.models import create_model


def test_lesioned_residual_keeps_shortcut_and_restores():
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1).eval()
    block = model.blocks[3]  # downsampling: pad shortcut
    x = torch.randn(2, 16, 8)
    with torch.no_grad(), lesioned(model, ["blocks.3"]):
        out = block(x)
        expected = block.post(block.shortcut(x))
    torch.testing.assert_close(out, expected)
    assert "forward" not in block.__dict__
    with torch.no_grad():
        assert not torch.allclose(block(x), expected)


def test_plain_downsampling_layers_cannot_be_deleted():
    ok, not_ok = deletable_blocks(
        create_model("plain20", dim=1, in_channels=1), (torch.randn(2, 1, 16),)
    )
    assert not_ok == ["blocks.3", "blocks.6"] and len(ok) == 7
    ok, not_ok = deletable_blocks(
        create_model("resnet20", dim=1, in_channels=1), (torch.randn(2, 1, 16),)
    )
    assert not_ok == [] and len(ok) == 9


def test_lesion_study_exact_on_a_constructed_model():
    # Two blocks on a 2-class problem: deleting the block that flips the sign ruins accuracy.
    flip = nn.Linear(1, 1, bias=False)
    keep = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        flip.weight.fill_(-1.0)
        keep.weight.fill_(1.0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(flip, keep)

        def forward(self, x):
            z = self.blocks(x)
            return torch.cat([z, -z], dim=1)

    x = torch.tensor([[1.0], [2.0], [-1.0], [-3.0]])
    y = torch.tensor([1, 1, 0, 0])
    net = Net()
    assert accuracy(net, x, y) == 1.0
    res = lesion_study(net, x, y, ks=[2], draws=2)
    assert res.single == {"blocks.0": 0.0, "blocks.1": 1.0}
    assert res.random[2] == [0.0, 0.0]


def test_chain_small_world_exact():
    assert chain_path_stats(101) == {"nodes": 101.0, "diameter": 100.0, "average": 34.0}
    ring = chain_path_stats(101, (0, 100))
    assert ring["diameter"] == 50.0 and ring["average"] == pytest.approx(25.5)


def test_block_paths_binomial():
    for n in (1, 5, 27):
        p = block_paths([True] * n)
        assert p.total == 2**n
        np.testing.assert_allclose(
            np.asarray(p.counts) / 2**n, stats.binom.pmf(range(n + 1), n, 0.5), atol=1e-15
        )
    plain = block_paths([False] * 9)
    assert plain.total == 1 and plain.longest == plain.shortest == 9
    mixed = block_paths([True, False, True])
    assert mixed.counts == [0.0, 1.0, 2.0, 1.0]


def test_graph_paths_of_resnet_and_plain_twin():
    x = torch.randn(2, 3, 8, 8)
    res = graph_paths(find_skips(create_model("resnet20"), (x,)).traced)
    plain = graph_paths(find_skips(create_model("plain20"), (x,)).traced)
    # stem conv + head linear + 2 convs per traversed branch
    assert res.total == 2**9 and res.longest == 20 and res.shortest == 2 and res.mean == 11.0
    assert plain.total == 1 and plain.longest == plain.shortest == 20
    assert model_block_paths(create_model("resnet20")).mean == 4.5


def test_path_gradient_contribution_shapes_and_extremes():
    torch.manual_seed(0)
    model = create_model("resnet_cifar", depth=14, dim=1, in_channels=1)
    x, y = torch.randn(8, 1, 16), torch.randint(0, 10, (8,))
    out = path_gradient_contribution(model, (x,), y, F.cross_entropy, samples=2)
    n = out["n"]
    assert n == 6 and out["paths"] == [float(math.comb(n, k)) for k in range(n + 1)]
    assert all(g > 0 for g in out["mean_grad"])
    # k = n: every block passes the gradient through its branch only; this equals the
    # gradient of the plain composition of branches (with post-activations) alone
    assert out["total"][n] == pytest.approx(out["mean_grad"][n])
