import math

import pytest
import torch
from torch import nn

from skiplab.diagnostics.block_gradients import OutputGradientProbe, block_gradient_norms
from skiplab.models import create_model


def test_block_gradient_norms_cover_every_block_by_name():
    torch.manual_seed(0)
    model = create_model("resnet20", in_channels=1)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = block_gradient_norms(model, (x,), y)
    assert g.blocks == [f"blocks.{i}" for i in range(9)]  # 3 stages x 3 blocks
    assert len(g.parameter) == 9 and len(g.signal) == 10  # the signal adds the first input
    assert all(math.isfinite(v) and v > 0 for v in g.parameter + g.signal)
    # nothing is updated: BN running statistics untouched, gradients cleared
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_output_gradients_match_autograd_on_a_linear_chain():
    # blocks y = W x with loss sum(y_L): dL/dx_L = 1, dL/dx_l = W^T ... W^T 1
    torch.manual_seed(1)
    layers = [nn.Linear(3, 3, bias=False) for _ in range(3)]
    model = nn.Sequential(*layers)
    probe = OutputGradientProbe()
    x = torch.randn(2, 3, requires_grad=True)  # else the first input has no gradient (NaN)
    with probe.attached(model):
        model(x).sum().backward()
        out = probe.collect()
    assert probe.num_hooks == 0  # detached after the block
    g = torch.ones(2, 3)
    expected = [g.norm().item()]
    for layer in reversed(layers):
        g = g @ layer.weight
        expected.append(g.norm().item())
    got = [*out["output_grad"][::-1], out["input_grad"]]
    assert got == pytest.approx(expected, rel=1e-6)
    assert out["blocks"] == ["0", "1", "2"]
