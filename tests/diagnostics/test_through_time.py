import math

import pytest
import torch

from skiplab.data import sequence_reversal
from skiplab.diagnostics.through_time import (
    pin_update_gate,
    source_gradients,
    state_jacobian,
    state_jacobian_norm,
    torch_gru_differences,
)
from skiplab.models.rnn import GRU, GRUCell, SkipRNN, TanhCell
from skiplab.models.seq2seq import Seq2Seq, Seq2SeqConfig
from skiplab.nn import TemporalSkip


def test_state_jacobian_matches_autograd_through_a_temporal_skip():
    torch.manual_seed(0)
    rnn = SkipRNN(TanhCell(2, 6), TemporalSkip((2,))).double()
    x = torch.randn(1, 9, 2, dtype=torch.float64)
    h0 = torch.randn(6, dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda h: rnn(x, h.unsqueeze(0))[1].squeeze(0), h0)
    jac = state_jacobian(rnn, x, h0)
    assert jac.shape == (6, 6)
    torch.testing.assert_close(jac, ref)
    norm = state_jacobian_norm(rnn, x, h0)
    assert norm == pytest.approx(torch.linalg.matrix_norm(ref, ord=2).item())


def test_pinned_gate_is_a_residual_add_of_weight_z():
    torch.manual_seed(0)
    cell = GRUCell(3, 4).double()
    pin_update_gate(cell, 0.2)
    h = 4
    with torch.no_grad():  # candidate h~ = tanh(0) = 0, so h' = (1 - z) h exactly
        for p in cell.parameters():  # rows r, z, n: zero the candidate's
            p[2 * h :].zero_()
    x, h0 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(cell(x, h0), 0.8 * h0)
    # so T steps carry exactly (1 - z)^T of the initial state
    norm = state_jacobian_norm(SkipRNN(cell), x[:1].unsqueeze(1).expand(1, 7, 3), h0[0])
    assert norm == pytest.approx(0.8**7)


@pytest.mark.parametrize("z", [0.0, 1.0, -0.1])
def test_pin_update_gate_rejects_gates_outside_the_open_interval(z):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        pin_update_gate(GRUCell(2, 3), z)


def test_torch_gru_differences_see_equality_and_a_changed_weight():
    torch.manual_seed(0)
    ref = torch.nn.GRU(3, 5, num_layers=2, batch_first=True).double()
    ours = GRU.from_torch(ref)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    h0, w = torch.randn(2, 2, 5, dtype=torch.float64), torch.randn(2, 6, 5, dtype=torch.float64)
    same = torch_gru_differences(ref, ours, x, h0, w)
    assert max(same.out, same.h, same.grad_x, same.grad_params) < 1e-12
    assert len(same.out_by_step) == 6
    with torch.no_grad():
        dict(ours.named_parameters())["layers.1.cell.weight_hh"][0, 0] += 0.5
    changed = torch_gru_differences(ref, ours, x, h0, w)
    assert changed.out > 1e-3 and changed.grad_params > 1e-3
    assert changed.out_by_step[0] > 0 and math.isclose(max(changed.out_by_step), changed.out)


def test_source_gradients_are_those_of_the_teacher_forced_loss():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(attention="additive", hidden_size=8))
    src, tgt = sequence_reversal(5, 4, seed=0)
    grads = source_gradients(model, src, tgt)
    captured = []  # the first embedding call embeds the source
    handle = model.embed.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model(src, tgt)  # (B, T, V)
    finally:
        handle.remove()
    loss = 4 * torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten())
    (g,) = torch.autograd.grad(loss, captured[0])
    assert len(grads) == 4
    torch.testing.assert_close(torch.tensor(grads), g.norm(dim=-1).mean(0))
