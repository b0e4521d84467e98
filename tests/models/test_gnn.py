import pytest
import torch

from skiplab.models import create_model
from skiplab.models.gnn import GNN, GNNConfig
from skiplab.nn import count_skips


def _graph(n=20, f=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n, (2, 60), generator=g)
    return torch.randn(n, f, generator=g), torch.cat(
        [torch.stack([src, dst]), torch.stack([dst, src])], 1
    )


@pytest.mark.parametrize("variant", ["plain", "res", "res+", "initial", "jk"])
@pytest.mark.parametrize("conv", ["gcn", "graph", "sage", "gat"])
def test_every_variant_and_conv_runs(variant, conv):
    x, ei = _graph()
    for skip in (True, False):
        net = GNN(
            GNNConfig(
                in_channels=8,
                num_classes=3,
                hidden=8,
                num_layers=3,
                conv=conv,
                variant=variant,
                heads=2,
                skip=skip,
            )
        )
        out = net(x, ei)
        assert out.shape == (20, 3)
        out.sum().backward()
        if not skip or variant == "plain":
            assert count_skips(net) == 0


def test_initial_residual_keeps_input_share_at_depth():
    # GCNII at init: every layer keeps alpha * H_0, so 64 layers do not wash the input out.
    x, ei = _graph()
    torch.manual_seed(0)
    deep = GNN(
        GNNConfig(
            in_channels=8, num_classes=3, hidden=8, num_layers=64, variant="initial", dropout=0.0
        )
    )
    plain = GNN(
        GNNConfig(
            in_channels=8,
            num_classes=3,
            hidden=8,
            num_layers=64,
            variant="initial",
            dropout=0.0,
            skip=False,
        )
    )
    with torch.no_grad():
        h0 = deep.encoder(x)
        hd = h0
        for layer in deep.layers:
            hd = layer(hd, h0, ei)
        hp = h0
        for layer in plain.layers:
            hp = layer(hp, h0, ei)
    assert hd.norm() > 0.05 * h0.norm()
    assert hp.norm() < 1e-6 * h0.norm()  # beta W P: the plain stack vanishes


def test_options_are_validated():
    with pytest.raises(ValueError, match="'plain', 'res', 'res\\+', 'initial', 'jk'"):
        GNNConfig(variant="dense")
    with pytest.raises(ValueError, match="conv must be one of"):
        create_model("resgcn", conv="cheb")
    net = create_model("resgcn")
    with pytest.raises(ValueError, match="edge_index"):
        net(torch.randn(4, 1433), torch.zeros(3, 5, dtype=torch.long))


def test_feature_dropout_keeps_zeros_and_the_expectation_and_scales_the_kept():
    from skiplab.models.gnn import feature_dropout

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(400, 300, generator=gen) < 0.02).float() * torch.rand(400, 300, generator=gen)
    torch.manual_seed(0)
    y = feature_dropout(x, 0.5, True)
    assert torch.equal(y[x == 0], torch.zeros_like(y[x == 0]))  # zeros stay zero
    kept = (y != 0) & (x != 0)
    assert torch.allclose(y[kept], 2 * x[kept])  # kept entries scaled by 1 / (1 - p)
    rate = kept.sum() / (x != 0).sum()
    assert 0.45 < float(rate) < 0.55  # each non-zero entry kept with probability 1 - p
    assert torch.equal(feature_dropout(x, 0.5, False), x)  # eval: the identity
    assert torch.equal(feature_dropout(x, 1.0, True), torch.zeros_like(x))
    dense = torch.rand(50, 40, generator=gen) + 0.1
    torch.manual_seed(1)
    a = feature_dropout(dense, 0.3, True)
    torch.manual_seed(1)
    assert torch.equal(a, torch.nn.functional.dropout(dense, 0.3, True))  # dense: F.dropout
