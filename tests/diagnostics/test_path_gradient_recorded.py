"""Gradient by path length (Veit et al. 2016 §4.2) on any model, from the recorded forward pass:
against the skiplab-``Residual`` module hooks it replaces, and against a closed form."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zoo
from torch import nn

from skiplab.diagnostics import path_gradient_contribution
from skiplab.diagnostics._probe import batch_statistics
from skiplab.models import create_model
from skiplab.nn import Residual


def _module_hook_reference(model, x, y, samples, seed):
    """The estimator as it was on skiplab ``Residual`` blocks only: the branch's ``drop_path``
    and the ``shortcut`` module outputs are detached off the path; the gradient is taken at the
    first block's input."""
    blocks = [b for b in model.modules() if isinstance(b, Residual) and b.shortcut is not None]
    n, rng, through, leaf = len(blocks), random.Random(seed), set(), {}

    def make_leaf(_m, args):
        leaf["x"] = args[0].detach().requires_grad_(True)
        return (leaf["x"], *args[1:])

    def gate(i, part):
        return lambda _m, _i, out: out if (i in through) == (part == "branch") else out.detach()

    handles = [blocks[0].register_forward_pre_hook(make_leaf)]
    for i, b in enumerate(blocks):
        handles.append(b.drop_path.register_forward_hook(gate(i, "branch")))
        handles.append(b.shortcut.register_forward_hook(gate(i, "shortcut")))
    mean_grad = []
    try:
        with batch_statistics(model):
            for k in range(n + 1):
                norms = []
                for _ in range(samples if 0 < k < n else 1):
                    through.clear()
                    through.update(rng.sample(range(n), k))
                    loss = F.cross_entropy(model(x), y)
                    (g,) = torch.autograd.grad(loss, leaf["x"])
                    norms.append(float(g.norm()))
                mean_grad.append(float(np.mean(norms)))
    finally:
        for h in handles:
            h.remove()
    return mean_grad


def test_resnet20_equals_the_module_hook_estimator():
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1)
    x, y = torch.randn(8, 1, 16), torch.randint(0, 10, (8,))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    out = path_gradient_contribution(model, (x,), y, F.cross_entropy, samples=2, seed=3)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())  # no update
    expected = _module_hook_reference(model, x, y, samples=2, seed=3)
    assert out["n"] == 9 and out["lengths"] == list(range(10))
    assert out["paths"] == [float(math.comb(9, k)) for k in range(10)]
    np.testing.assert_allclose(out["mean_grad"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["total"], np.multiply(expected, out["paths"]), rtol=1e-6)
    # target labels alone infer the same cross-entropy
    again = path_gradient_contribution(model, (x,), y, samples=2, seed=3)
    assert again["mean_grad"] == out["mean_grad"]


class LinearStack(nn.Module):
    """``n`` linear residual blocks ``x + W_i x`` (optionally in place: ``out = W_i x;
    out += x``, as torchvision's ``out += identity``) between an optional stem and a head."""

    def __init__(self, n: int, stem: bool, inplace: bool, d: int = 3) -> None:
        super().__init__()
        self.stem = nn.Linear(2, d) if stem else None
        self.blocks = nn.ModuleList(nn.Linear(d, d, bias=False) for _ in range(n))
        self.head = nn.Linear(d, 2)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        for w in self.blocks:
            if self.inplace:
                out = w(x)
                out += x
                x = out
            else:
                x = x + w(x)
        return self.head(x)


def _closed_form(model: LinearStack, batch: int, samples: int, seed: int) -> list[float]:
    """Norm of the gradient of ``sum(head(x_n))`` at the first block's input along the paths
    through the branches of each drawn block set S: ``1 H prod_{i in S, last first} W_i``."""
    n = len(model.blocks)
    ws = [b.weight.detach().double() for b in model.blocks]
    h = model.head.weight.detach().double()
    rng, out = random.Random(seed), []
    for k in range(n + 1):
        norms = []
        for _ in range(samples if 0 < k < n else 1):
            jac = h
            for i in sorted(rng.sample(range(n), k), reverse=True):
                jac = jac @ ws[i]
            norms.append(float((torch.ones(batch, h.shape[0], dtype=torch.double) @ jac).norm()))
        out.append(float(np.mean(norms)))
    return out


@pytest.mark.parametrize(("stem", "inplace"), [(True, False), (False, False), (True, True)])
def test_hand_written_linear_stack_matches_the_closed_form(stem, inplace):
    torch.manual_seed(0)
    model = LinearStack(5, stem=stem, inplace=inplace)
    x = torch.randn(4, 2 if stem else 3)
    out = path_gradient_contribution(
        model, x, loss_fn=lambda o, _t: o.sum(), samples=3, seed=7, mode="eval"
    )
    assert out["n"] == 5
    np.testing.assert_allclose(out["mean_grad"], _closed_form(model, 4, 3, 7), rtol=1e-5)
    assert out["mean_grad"][0] == pytest.approx(float(model.head.weight.detach().sum(0).norm()) * 2)


def test_gpt2_next_token_gradient_by_path_length():
    model, inputs, _ = zoo.build("gpt2")
    out = path_gradient_contribution(model, inputs, samples=2, mode="eval")
    assert out["n"] == 6  # 3 layers x (attention add, MLP add)
    assert out["paths"] == [float(math.comb(6, k)) for k in range(7)]
    assert all(math.isfinite(g) and g > 0 for g in out["mean_grad"])
    assert out == path_gradient_contribution(model, inputs, samples=2, mode="eval")
    # the all-shortcut path only crosses ln_f and the tied lm_head: its gradient is the largest
    assert out["mean_grad"][0] == max(out["mean_grad"])


def test_models_without_a_chain_of_residual_merges_are_refused():
    model, inputs, target = zoo.build("gcnii")
    with pytest.raises(ValueError, match="do not form a chain"):
        path_gradient_contribution(model, inputs, target, samples=1)
    plain = create_model("plain20", dim=1, in_channels=1)
    x, y = torch.randn(4, 1, 16), torch.randint(0, 10, (4,))
    with pytest.raises(ValueError, match="found no residual merge"):
        path_gradient_contribution(plain, x, y, samples=1)
