"""The numbers the Jacobian and gradient-split probes report, against independent computations.

* GPT-2's first block: ``block_spectral_norms``'s sigma is the exact top singular value of the
  block's Jacobian (by ``torch.func.jacrev`` and ``svdvals``) with respect to the hidden states,
  the block called with the arguments it got in a real forward pass on one example.
* A ``BatchNorm1d`` on ``(B, C)`` features inside a residual block cannot run on one example:
  the probe uses 2, and the value is the exact one on those 2.
* At an identity shortcut the gradient passes unchanged: ``gradient_split``'s shortcut share at
  each add is the norm of ``dL/d(add output)``, taken here by tensor hooks on the adds' outputs.
  Its branch share is the vector-Jacobian product through the branch alone, also when the add
  is in place (``out += identity``, torchvision's ResNets), which overwrites the branch's tensor.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from skiplab.diagnostics import block_spectral_norms, gradient_split

transformers = pytest.importorskip("transformers")


def _top_singular_value(fn: Any, x: torch.Tensor) -> float:
    """Exact: the full Jacobian by reverse mode, then its singular values in float64."""
    with sdpa_kernel(SDPBackend.MATH):
        jac = torch.func.jacrev(fn)(x.detach().clone())
    return float(torch.linalg.svdvals(jac.detach().reshape(-1, x.numel()).double())[0])


def test_gpt2_first_block_sigma_is_the_exact_top_singular_value():
    import zoo

    model, inputs, _ = zoo.build("gpt2")
    model.eval()
    out = block_spectral_norms(model, inputs, whole=False)
    i = out["blocks"].index("transformer.h.0")
    assert out["examples"] == 1
    assert out["errors"][i] == ""
    assert out["converged"][i]

    block = model.get_submodule("transformer.h.0")
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def grab(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append((args, kwargs))

    handle = block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            inputs.head(1)(model)
    finally:
        handle.remove()
    (args, kwargs), *_ = seen
    hidden, rest = args[0].detach().clone(), args[1:]

    def fn(h: torch.Tensor) -> torch.Tensor:
        y = block(h, *rest, **kwargs)
        return y[0] if isinstance(y, tuple) else y

    assert hidden.shape == (1, 8, 32)
    exact = _top_singular_value(fn, hidden)
    assert out["sigma"][i] == pytest.approx(exact, rel=1e-2)


class _BnResidual(nn.Module):
    """``x + W2 relu(BN(W1 x))`` on ``(B, C)`` features: batch statistics need 2 examples."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.bn(self.fc1(x))))


def test_batchnorm1d_block_uses_two_examples_and_the_exact_value_on_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), _BnResidual(8), _BnResidual(8), nn.Linear(8, 3))
    x = torch.randn(5, 6)
    out = block_spectral_norms(model, (x,))
    assert out["blocks"] == ["1", "2"]
    assert out["examples"] == 2
    assert out["errors"] == ["", ""]
    assert all(s == s and s < float("inf") for s in out["sigma"])
    assert all(out["converged"])
    ref = copy.deepcopy(model).train()
    for bn in (ref[1].bn, ref[2].bn):  # batch statistics, no running statistics to update
        bn.track_running_stats, bn.running_mean, bn.running_var = False, None, None
    h = ref[0](x[:2]).detach()
    exact = _top_singular_value(ref[1], h)
    assert out["sigma"][0] == pytest.approx(exact, rel=1e-2)
    assert model[1].bn.running_mean.abs().max() == 0  # the probe updated nothing


class _Add(nn.Module):
    """``y = act(x + F(x))``: out of place, or in place as torchvision writes it (``out +=
    identity``, then an in-place ReLU on the sum where ``act`` is one)."""

    def __init__(self, width: int, in_place: bool, relu: bool) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
        self.in_place = in_place
        self.act = nn.ReLU(inplace=in_place) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_place:
            out = self.f(x)
            out += x
        else:
            out = x + self.f(x)
        return self.act(out)


def _model(in_place: bool) -> nn.Sequential:
    torch.manual_seed(0)  # the in-place model and its out-of-place twin get the same weights
    blocks = [_Add(8, in_place, relu=i % 2 == 1) for i in range(3)]
    return nn.Sequential(nn.Linear(5, 8), *blocks, nn.Linear(8, 4))


def _reference(x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Independently, on the out-of-place twin: ``dL/d(add output)`` by tensor hooks on each
    block's ``act`` input, and the branch share ``(dF/dx)^T dL/d(add output)`` by autograd
    through ``F`` alone."""
    model = _model(in_place=False)
    grads: dict[int, torch.Tensor] = {}
    forks: dict[int, torch.Tensor] = {}
    handles = []
    for i, block in enumerate(b for b in model if isinstance(b, _Add)):

        def at_fork(_m: nn.Module, args: tuple[Any, ...], i: int = i) -> None:
            forks[i] = args[0]

        def at_add(_m: nn.Module, args: tuple[Any, ...], i: int = i) -> None:
            args[0].register_hook(lambda g, i=i: grads.__setitem__(i, g))

        handles.append(block.register_forward_pre_hook(at_fork))
        handles.append(block.act.register_forward_pre_hook(at_add))
    try:
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    shortcut, branch = [], []
    for i, block in enumerate(b for b in model if isinstance(b, _Add)):
        g = grads[i]
        fork = forks[i].detach().requires_grad_(True)
        (gb,) = torch.autograd.grad(block.f(fork), fork, grad_outputs=g)
        shortcut.append(float(g.norm()))
        branch.append(float(gb.norm()))
    return {"shortcut": shortcut, "branch": branch}


@pytest.mark.parametrize("in_place", [False, True], ids=["x+F(x)", "out+=x;relu_"])
def test_identity_shortcut_share_is_the_gradient_at_the_add(in_place: bool):
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (6,), generator=torch.Generator().manual_seed(2))
    split = gradient_split(_model(in_place), (x,), y)
    assert split["blocks"] == ["1", "2", "3"]
    ref = _reference(x, y)
    # an identity shortcut passes dL/d(add output) on unchanged
    assert split["shortcut_grad"] == pytest.approx(ref["shortcut"], rel=1e-5)
    assert split["branch_grad"] == pytest.approx(ref["branch"], rel=1e-5)
    assert all(g > 0 for g in ref["shortcut"])
    assert ref["shortcut"] != pytest.approx(ref["branch"], rel=1e-2)  # the two shares differ
