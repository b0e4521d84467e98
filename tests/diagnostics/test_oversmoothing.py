import torch

from skiplab.diagnostics import dirichlet_energy, mean_average_distance, oversmoothing_profile
from skiplab.models.gnn import GNN, GNNConfig


def _path(n):
    src = torch.arange(n - 1)
    return torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], 1)


def test_dirichlet_energy_closed_form():
    ei = _path(3)  # degrees 1, 2, 1 -> with self-loops 2, 3, 2
    x = torch.tensor([[1.0], [0.0], [1.0]])
    expected = 2 * (1 / 2**0.5) ** 2 / 3
    assert abs(dirichlet_energy(x, ei) - expected) < 1e-12
    assert abs(dirichlet_energy(x, ei, normalized=False) - 2 / 3) < 1e-12
    assert dirichlet_energy(torch.ones(3, 4), ei, normalized=False) == 0.0


def test_mad_is_zero_for_parallel_features_and_one_for_orthogonal():
    assert mean_average_distance(torch.ones(5, 3)) < 1e-12
    assert abs(mean_average_distance(torch.eye(4)) - 1.0) < 1e-12
    assert abs(mean_average_distance(torch.eye(3), _path(3)) - 1.0) < 1e-12


def test_plain_gcn_energy_decays_with_depth_while_gcnii_keeps_it():
    torch.manual_seed(0)
    ei = _path(30)
    x = torch.randn(30, 8)
    cfg = dict(in_channels=8, num_classes=3, hidden=16, num_layers=32, dropout=0.0)
    prof_plain = oversmoothing_profile(GNN(GNNConfig(variant="plain", **cfg)), x, ei)
    gcnii = GNN(GNNConfig(variant="initial", **cfg))
    prof_init = oversmoothing_profile(gcnii, x, ei, list(gcnii.layers.named_children()), mad=False)
    assert len(prof_plain) == 33 and prof_plain[0]["name"] == "input"
    assert prof_plain[-2]["energy"] < 1e-3 * prof_plain[1]["energy"]
    assert prof_init[-1]["energy"] > 0.05 * prof_init[1]["energy"]


def test_rayleigh_quotient_is_scale_free_and_zero_at_the_fixed_point():
    from skiplab.diagnostics.oversmoothing import rayleigh_quotient

    ei = _path(5)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    assert abs(rayleigh_quotient(x, ei) - rayleigh_quotient(1e3 * x, ei)) < 1e-6
    deg = torch.tensor([2.0, 3.0, 3.0, 3.0, 2.0])  # with self-loops
    assert rayleigh_quotient(deg.sqrt().unsqueeze(1).repeat(1, 2), ei) < 1e-12
