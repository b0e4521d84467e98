import pytest
import torch
from torch import nn

from skiplab.diagnostics import (
    GradientFlowProbe,
    SignalPropagationProbe,
    channel_stats,
    find_blocks,
    gradient_flow_at_init,
    signal_propagation,
)
from skiplab.diagnostics._probe import batch_statistics, resolve_layout
from skiplab.models import create_model
from skiplab.nn import Residual


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_probe_hooks_removed_even_on_error():
    model = create_model("resmlp", depth=4)
    before = _hook_count(model)
    probe = GradientFlowProbe()
    with pytest.raises(RuntimeError, match="boom"), probe.attached(model):
        assert probe.num_hooks > 0 and _hook_count(model) > before
        raise RuntimeError("boom")
    assert probe.num_hooks == 0 and _hook_count(model) == before
    sig = SignalPropagationProbe()
    with sig.attached(model):
        model(torch.randn(3, 40))
    assert _hook_count(model) == before
    with pytest.raises(RuntimeError, match="already attached"):
        probe.attach(model).attach(model)
    probe.detach()


def test_channel_stats_exact_and_layout_invariant():
    x = torch.randn(4, 3, 5, 6)  # NCHW
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    sq, v = channel_stats(x, "NCHW")
    assert sq == pytest.approx(float((mean**2).mean()), rel=1e-5)
    assert v == pytest.approx(float(var.mean()), rel=1e-5)
    ncl = x.flatten(2)  # (B, C, L)
    btc = ncl.transpose(1, 2)  # (B, T, C)
    assert channel_stats(ncl, "NCL") == pytest.approx((sq, v), rel=1e-5)
    assert channel_stats(btc, "BTC") == pytest.approx((sq, v), rel=1e-5)
    with pytest.raises(ValueError, match="'NCHW', 'NCL'"):
        resolve_layout("NHWC", x)
    with pytest.raises(ValueError, match="4-D tensor"):
        channel_stats(ncl, "NCHW")


def test_signal_propagation_residual_variance_adds_up():
    # Branch = fixed linear map: var(out) = var(x) + var(Wx) when x and Wx are uncorrelated;
    # check the probe against the same statistics computed by hand.
    torch.manual_seed(0)
    blocks = nn.Sequential(*(Residual(nn.Linear(8, 8, bias=False)) for _ in range(3)))
    x = torch.randn(256, 8)
    sp = signal_propagation(blocks, (x,), layout="BC")
    h = x
    for i, block in enumerate(blocks):
        branch = block.branch(h)
        h = h + branch
        assert sp["var"][i] == pytest.approx(float(h.var(0, unbiased=False).mean()), rel=1e-4)
        assert sp["branch_var"][i] == pytest.approx(
            float(branch.var(0, unbiased=False).mean()), rel=1e-4
        )
    assert sp["var"][0] < sp["var"][1] < sp["var"][2]  # the residual stream grows


def test_preactivation_variance_grows_by_branch_variance_and_resets_at_transitions():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 40)
    model = create_model("resnet_cifar", depth=20, dim=1, in_channels=1, preact=True)
    sp = signal_propagation(model, (x,))
    var, branch = sp["var"], sp["branch_var"]
    # Brock et al. 2021: with identity shortcuts var(x_{l+1}) = var(x_l) + var(f_l) (the branch
    # is nearly uncorrelated with its input at init), so the variance grows within a stage ...
    for i in (1, 2, 4, 5, 7, 8):
        assert var[i] - var[i - 1] == pytest.approx(branch[i], rel=0.3)
    # ... and the downsampling blocks (3, 6), whose shortcut is a strided pad, reset it
    assert var[3] < var[2] and var[6] < var[5]


def test_gradient_flow_matches_autograd_and_split_sums():
    torch.manual_seed(0)
    model = create_model("resmlp", depth=4, width=16, in_features=6, num_classes=3)
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    loss_fn = nn.functional.cross_entropy
    rec = gradient_flow_at_init(model, (x,), y, loss_fn)
    model.zero_grad()
    loss_fn(model(x), y).backward()
    blocks = find_blocks(model)
    assert rec["groups"] == ["(before)", *[n for n, _ in blocks], "(after)"]
    for i, (_, b) in enumerate(blocks, start=1):
        manual = torch.sqrt(sum(p.grad.pow(2).sum() for p in b.parameters()))
        assert rec["grad_norm"][0][i] == pytest.approx(float(manual), rel=1e-5)
    # identity shortcut: its share of dL/dx is exactly dL/dy of the block
    outs = {}
    hooks = [
        b.register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o)) for n, b in blocks
    ]
    out = model(x)
    for h in hooks:
        h.remove()
    ys = [outs[n] for n, _ in blocks]
    grads = torch.autograd.grad(loss_fn(out, y), ys)
    for j, g in enumerate(grads):
        # ResMLP's post-activation ReLU sits between the add and y: dL/d(add) = g * (y > 0)
        g_add = g * (ys[j] > 0)
        assert rec["shortcut_grad"][0][j] == pytest.approx(float(g_add.norm()), rel=1e-4)
    assert all(v > 0 for v in rec["branch_grad"][0])


def test_gradient_flow_probe_records_every_training_step():
    model = create_model("resmlp", depth=2, width=8, in_features=4, num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = GradientFlowProbe(split=False)
    with probe.attached(model):
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(
                model(torch.randn(4, 4)), torch.tensor([0, 1, 0, 1])
            ).backward()
            opt.step()
        with torch.no_grad():
            model(torch.randn(2, 4))  # an evaluation pass leaves no record
        rec = probe.collect()
    assert len(rec["grad_norm"]) == 3 and "shortcut_grad" not in rec


def test_batch_statistics_restores_buffers_and_mode():
    model = create_model("resnet20").eval()
    bn = model.stem[1]
    mean = bn.running_mean.clone()
    with batch_statistics(model):
        assert not model.training and bn.running_mean is None  # dropout off, BN on the batch
        model(torch.randn(4, 3, 8, 8))
    assert not model.training and torch.equal(bn.running_mean, mean) and bn.track_running_stats


def test_gradient_split_from_trace_matches_module_hooks():
    from skiplab.diagnostics import gradient_split

    torch.manual_seed(0)
    model = create_model("resmlp", depth=6, width=16, in_features=6, num_classes=3)
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    hooks = gradient_flow_at_init(model, (x,), y, nn.functional.cross_entropy)
    traced = gradient_split(model, (x,), y, nn.functional.cross_entropy)
    assert traced["modules"] == ["blocks.0", "blocks.1", "blocks.2"]
    assert traced["shortcut_grad"] == pytest.approx(hooks["shortcut_grad"][0], rel=1e-5)
    assert traced["branch_grad"] == pytest.approx(hooks["branch_grad"][0], rel=1e-5)
