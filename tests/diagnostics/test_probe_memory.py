"""What the probes hold in memory on a large batch (``bench/bench_diagnose.py`` measures it on a
ResNet-50 with 16 images of 224x224).

* A recording without values (``keep_values=False``: the lesion study's passes, the gradient
  split's) keeps no activation alive: each dies when the model drops it, as without recording.
* The recordings that keep every value (skip discovery) run on two examples, never the batch;
  the statistics are still those of the whole batch.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import skiplab.diagnostics._record as _record
import skiplab.diagnostics.skips as skips
from skiplab.diagnostics import gradient_split, signal_propagation
from skiplab.diagnostics._inputs import Inputs
from skiplab.diagnostics._record import record


def test_recording_without_values_holds_no_activation_alive():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(4)])
    first: list[weakref.ref[torch.Tensor]] = []
    alive_at_end: list[bool] = []
    model[0].register_forward_hook(lambda _m, _i, out: first.append(weakref.ref(out)))
    model[3].register_forward_hook(lambda _m, _i, _o: alive_at_end.append(first[-1]() is not None))
    x = torch.randn(4, 8)
    with torch.no_grad():
        model(x)
        record(model, (x,), keep_values=False)
        rec = record(model, (x,), keep_values=True)
    assert alive_at_end == [False, False, True]  # plain, without values, with values
    assert len(rec.values) == len(rec.nodes)


class _Keep:
    """A node hook that keeps the tensor it sees (as the gradient split's does)."""

    def __init__(self) -> None:
        self.kept: list[torch.Tensor] = []

    def __call__(self, _node: Any, _args: Any, out: Any) -> Any:
        self.kept.append(out)
        return out


def test_recording_without_values_leaves_nothing_alive_after_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
    x = torch.randn(4, 8)
    hook = _Keep()
    gc.disable()  # what reference counting alone frees, without waiting for the cycle collector
    try:
        with torch.no_grad():
            record(model, (x,), hooks={2: hook}, keep_values=False)  # node 2: the tanh
        ref = weakref.ref(hook.kept[0])
        del hook  # the hook and what it kept must not outlive the recording
        assert ref() is None
    finally:
        gc.enable()


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


@pytest.fixture
def value_recordings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every recording that keeps all values."""
    sizes: list[int] = []
    real = _record.record

    def spy(model: nn.Module, args: Any = (), kwargs: Any = None, **kw: Any) -> Any:
        if kw.get("keep_values", True):
            sizes.append(Inputs(tuple(args), dict(kwargs or {})).batch_size)
        return real(model, args, kwargs, **kw)

    monkeypatch.setattr(_record, "record", spy)
    monkeypatch.setattr(skips, "record", spy)
    return sizes


def test_signal_and_gradient_split_keep_values_of_two_examples_only(value_recordings):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), _Block(8), _Block(8), nn.Linear(8, 3))
    x = torch.randn(16, 6)
    y = torch.randint(0, 3, (16,))
    sig = signal_propagation(model, (x,))
    split = gradient_split(model, (x,), y)
    assert value_recordings and max(value_recordings) <= 2
    assert sig["blocks"] == ["1", "2"] and split["blocks"] == ["1", "2"]
    assert model[1].f[1].running_mean.abs().max() == 0  # the probes updated nothing
    # the branch variance is that of the whole batch (batch statistics in the BatchNorm)
    with torch.no_grad():
        h = model[0](x)
        branch = model[1].f(h)  # training mode: batch statistics
    assert sig["branch_var"][0] == pytest.approx(float(branch.var(0, unbiased=False).mean()))
    # the shortcut share at an identity shortcut: dL/d(add output) of the whole batch
    out = model[1](model[0](x)).detach().requires_grad_(True)
    loss = F.cross_entropy(model[3](model[2](out)), y)
    (g,) = torch.autograd.grad(loss, out)
    assert split["shortcut_grad"][0] == pytest.approx(float(g.norm()), rel=1e-5)


class _InPlace(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.f(x)
        out += x  # torchvision's ResNet add: the sum overwrites the branch's output
        return torch.relu_(out)


def test_gradient_split_copies_no_branch_an_in_place_add_overwrites():
    from skiplab.diagnostics.gradflow import _summed_into

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), _InPlace(8), _InPlace(8))
    report = skips.find_skips(model, (torch.randn(2, 4),), use_fx=False)
    merges = [m for m in report.merges if m.nodes is not None]
    assert report.recording is not None and len(merges) == 2
    lost = _summed_into(merges, report.recording.nodes)
    assert lost == {m.nodes.branch for m in merges if m.nodes is not None}
    # the sums, overwritten by relu_, are copied; the branches are not
    assert {m.nodes.merge for m in merges if m.nodes is not None} <= report.recording.overwritten
