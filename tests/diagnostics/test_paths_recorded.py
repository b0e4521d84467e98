"""Path statistics over the recorded forward pass (any model), checked against torch.fx and
against path counts derived by hand."""

from __future__ import annotations

import math

import pytest
import torch
import zoo
from torch import nn

from skiplab.diagnostics import find_skips, graph_paths
from skiplab.diagnostics._record import record
from skiplab.diagnostics.paths import _count_paths, computation_graph, recording_endpoints
from skiplab.models import create_model


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
def test_recording_counts_equal_the_fx_trace_counts(name):
    torch.manual_seed(0)
    report = find_skips(create_model(name, dim=1, in_channels=1), (torch.randn(2, 1, 16),))
    assert report.traced is not None and report.recording is not None
    fx_paths = graph_paths(report.traced)
    assert graph_paths(report.recording).counts == fx_paths.counts
    assert graph_paths(report).counts == fx_paths.counts
    # stem conv + head linear + 2 convs per traversed branch; the plain twin has one path
    if name == "resnet20":
        assert fx_paths.counts == [0.0, 0.0] + [
            float(math.comb(9, k // 2)) if k % 2 == 0 else 0.0 for k in range(19)
        ]
    else:
        assert fx_paths.counts == [0.0] * 20 + [1.0]


class Stack(nn.Module):
    """``stem``, then ``n`` blocks ``x = x + lin2(relu(lin1(x)))``, then ``head``."""

    def __init__(self, n: int, d: int = 4) -> None:
        super().__init__()
        self.stem = nn.Linear(3, d)
        self.lin1 = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
        self.lin2 = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for a, b in zip(self.lin1, self.lin2):
            x = x + b(torch.relu(a(x)))
        return self.head(x)


@pytest.mark.parametrize("n", [1, 4, 30])
def test_hand_written_stack_is_exactly_binomial(n):
    rec = record(Stack(n), (torch.randn(5, 3),))
    paths = graph_paths(rec)
    # a path skips or runs each branch (2 weight layers): C(n, k) paths of length 2 + 2k, the
    # 2 being the stem and the head
    expected = [0.0] * (2 * n + 3)
    for k in range(n + 1):
        expected[2 + 2 * k] = float(math.comb(n, k))
    assert paths.counts == expected
    assert paths.total == 2.0**n and paths.shortest == 2 and paths.longest == 2 * n + 2
    assert paths.mean == pytest.approx(2 + n)
    dag, source, sink = computation_graph(rec)
    assert (source, sink) == recording_endpoints(rec) == (0, len(rec.nodes) - 1)
    assert dag.number_of_nodes() == len(rec.nodes)


def test_gpt2_counts_follow_from_its_layers():
    model, inputs, _ = zoo.build("gpt2")
    report = find_skips(model, inputs.args, kwargs=inputs.kwargs, use_fx=False)
    paths = graph_paths(report)
    # every sub-layer adds a shortcut (length 0) to 3 paths of 2 weight layers: attention's
    # q, k and v all come out of c_attn and go into c_proj; the MLP's tanh GELU
    # 0.5 x (1 + tanh(c (x + 0.044715 x^3))) sees c_fc's output 3 times before c_proj. 3 layers
    # x 2 sub-layers: C(6, k) 3^k paths of length 2 + 2k (wte and the tied lm_head)
    expected = [0.0] * 15
    for k in range(7):
        expected[2 + 2 * k] = float(math.comb(6, k) * 3**k)
    assert paths.counts == expected
    assert paths.total == 4.0**6 > 2**3 and all(math.isfinite(c) for c in paths.counts)


def test_recording_without_values_or_input_dependent_output_is_refused():
    rec = record(Stack(2), (torch.randn(5, 3),), keep_values=False)
    with pytest.raises(ValueError, match="keep_values=True"):
        graph_paths(rec)

    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w * 2

    with pytest.raises(ValueError, match="depends on no input"):
        graph_paths(record(Constant(), (torch.randn(2),)))


def test_gcnii_counts_follow_from_its_layers():
    model, inputs, _ = zoo.build("gcnii")
    paths = graph_paths(find_skips(model, inputs.args, use_fx=False))
    # x0 = relu(lin_in(x)); each GCN2Conv is ((1 - a) P h + a x0) then one addmm (one weight
    # layer: its identity mapping (1 - b) I + b W is one op), P h one gather-scatter along the
    # edges. h1: 2 paths of length 2; h2: {2: 1, 3: 2}; h3: {2: 1, 3: 1, 4: 2}; lin_out adds 1.
    # The scatter's index, expanded to the messages' shape, is no path: integer tensors made
    # from node features (shapes, comparisons) carry none of their values
    assert paths.counts == [0.0, 0.0, 0.0, 1.0, 1.0, 2.0]
    report = find_skips(model, inputs.args, use_fx=False)
    assert report.recording is not None
    assert _count_paths(*computation_graph(report.recording)) == paths.counts  # the nx graph
