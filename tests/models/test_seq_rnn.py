"""skiplab's GRU against torch.nn.GRU, the skip-RNN and their plain twins."""

import pytest
import torch

from skiplab.models import create_model
from skiplab.models.rnn import GRU, GRUCell, RecurrentNet, RNNConfig, SkipRNN, TanhCell
from skiplab.nn import TemporalSkip, count_skips


@pytest.mark.parametrize(("num_layers", "batch_first"), [(1, True), (2, False)])
def test_gru_matches_torch_in_outputs_and_gradients(num_layers, batch_first):
    torch.manual_seed(0)
    ref = torch.nn.GRU(5, 7, num_layers=num_layers, batch_first=batch_first).double()
    ours = GRU.from_torch(ref)
    shape = (3, 11, 5) if batch_first else (11, 3, 5)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(num_layers, 3, 7, dtype=torch.float64)
    out_ref, h_ref = ref(x, h0)
    out, h = ours(x, h0)
    assert (out - out_ref).abs().max() < 1e-6 and (h - h_ref).abs().max() < 1e-6
    w = torch.randn_like(out_ref)  # a generic loss touching every output
    loss_ref = (w * out_ref).sum() + h_ref.square().sum()
    loss = (w * out).sum() + h.square().sum()
    g_ref = torch.autograd.grad(loss_ref, [x, *ref.parameters()])
    g = torch.autograd.grad(loss, [x, *(ours.state_dict(keep_vars=True)[k] for k in _order(ours))])
    for a, b in zip(g, g_ref):
        assert (a - b).abs().max() < 1e-6


def _order(model):
    # torch's parameter order: per layer weight_ih, weight_hh, bias_ih, bias_hh
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [f"layers.{i}.cell.{n}" for i in range(model.num_layers) for n in names]


def test_gru_cell_gate_convention_z_weights_the_candidate():
    torch.manual_seed(0)
    cell = GRUCell(3, 4)
    with torch.no_grad():  # update-gate rows 4:8; torch's u = sigmoid(+20) = 1 -> our z = 0
        cell.weight_ih[4:8] = 0
        cell.weight_hh[4:8] = 0
        cell.bias_ih[4:8] = 20.0
        cell.bias_hh[4:8] = 0
    h = torch.randn(2, 4)
    torch.testing.assert_close(cell(torch.randn(2, 3), h), h, atol=1e-7, rtol=0)


def test_load_torch_state_dict_names_missing_and_mismatched_keys():
    ours = GRU(5, 7, num_layers=2)
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1'"):
        sd = torch.nn.GRU(5, 7, num_layers=2).state_dict()
        del sd["bias_hh_l1"]
        ours.load_torch_state_dict(sd)
    with pytest.raises(ValueError, match="weight_ih_l0: torch shape"):
        ours.load_torch_state_dict(torch.nn.GRU(6, 7, num_layers=2).state_dict())
    with pytest.raises(ValueError, match="unidirectional"):
        GRU.from_torch(torch.nn.GRU(5, 7, bidirectional=True))


def test_gru_plain_twin_has_no_carry_and_forgets_faster():
    torch.manual_seed(0)
    res, plain = GRU(3, 16), GRU(3, 16, skip=False)
    plain.load_state_dict(res.state_dict())
    assert count_skips(res) == 1 and count_skips(plain) == 0
    x = torch.randn(1, 30, 3)
    grads = []
    for model in (res, plain):
        h0 = torch.zeros(1, 1, 16, requires_grad=True)
        _, h = model(x, h0)
        (g,) = torch.autograd.grad(h.sum(), h0)
        grads.append(g.norm().item())
    assert grads[0] > 100 * grads[1]  # the carried state keeps dh_T/dh_0 alive


def test_temporal_skip_keeps_gradient_through_time():
    torch.manual_seed(0)
    cell = TanhCell(2, 16)
    plain, skipped = SkipRNN(cell), SkipRNN(cell, TemporalSkip(ks=(2,)))
    x = torch.rand(1, 60, 2)
    norms = []
    for rnn in (plain, skipped):
        h0 = torch.zeros(1, 16, requires_grad=True)
        _, h = rnn(x, h0)
        (g,) = torch.autograd.grad(h.sum(), h0)
        norms.append(g.norm().item())
    assert norms[0] < 1e-6 < 1.0 < norms[1]


def test_recurrent_net_shapes_and_errors():
    net = RecurrentNet(RNNConfig(out_features=3, readout="all", ks=(2, 4)))
    assert net(torch.rand(2, 9, 2)).shape == (2, 9, 3)
    with pytest.raises(ValueError, match=r"expects \(B, T, 2\)"):
        net(torch.rand(2, 9, 3))
    with pytest.raises(ValueError, match="cell must be one of"):
        RNNConfig(cell="lstm")
    with pytest.raises(ValueError, match="readout must be one of"):
        RNNConfig(readout="first")
    assert "ks=(2, 4)" in repr(net)


def test_registered_rnns_have_plain_twins():
    for name in ("skip_rnn", "skip_rnn_multi", "skip_gru", "gru_mnist1d", "gru"):
        assert count_skips(create_model(name)) > 0
        assert count_skips(create_model(name, skip=False)) == 0
