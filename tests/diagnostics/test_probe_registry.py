"""The probe registry: a probe is one class, and diagnose and its page pick it up from there."""

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import skiplab
from skiplab.diagnostics.probes import Context, Probe, Section, parse_probes, probe_names
from skiplab.diagnostics.probes import _base as registry
from skiplab.models import create_model


class _Rank(Probe):
    """A probe written the way a user adds one: the numerical rank of the model's output."""

    name = "rank"
    title = "Output rank"
    about = "Numerical rank of the logits over the batch."
    order = 45

    def measure(self, ctx: Context) -> dict[str, Any]:
        with torch.no_grad():
            out = ctx.inputs(ctx.model)
        return {"rank": int(torch.linalg.matrix_rank(out))}

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        sec.notes.append(f"The logits have rank {result['rank']}.")


class _Broken(_Rank):
    name = "broken"
    title = "Broken figure"
    order = 46

    def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None:
        raise RuntimeError("no axes")


@pytest.fixture
def extra_probes():
    registry.register_probe(_Rank)
    registry.register_probe(_Broken)
    yield
    for name in ("rank", "broken"):
        registry._REGISTRY.pop(name, None)


def _resmlp():
    torch.manual_seed(0)
    return create_model("resmlp", in_features=12, num_classes=5), torch.randn(24, 12)


def test_a_registered_probe_is_run_stored_and_drawn(extra_probes, tmp_path):
    model, x = _resmlp()
    assert probe_names().index("rank") == probe_names().index("jacobian") + 1  # by its order
    d = skiplab.diagnose(model, x, probes="skips,rank,broken", out=tmp_path)
    assert d["rank"] == {"rank": 5}  # 24 examples, 5 classes: full column rank
    assert d.as_dict()["rank"] == {"rank": 5}
    html = (tmp_path / "index.html").read_text()
    assert "Output rank" in html and "The logits have rank 5." in html
    # a section that cannot be drawn says so; the rest of the page is there
    assert "drawing the section failed: RuntimeError: no axes" in html and "Skips" in html
    assert html.index("Skips") < html.index("Output rank") < html.index("Broken figure")


def test_a_registered_name_cannot_be_taken_twice(extra_probes):
    with pytest.raises(ValueError, match="'rank' is registered twice"):
        registry.register_probe(_Rank)


def test_probe_selection_names_what_is_allowed():
    assert parse_probes("default") == [n for n in probe_names() if n != "landscape"]
    assert parse_probes("all") == list(probe_names())
    assert parse_probes("lesion, skips") == ["skips", "lesion"]  # run order, not given order
    with pytest.raises(ValueError, match="unknown probe.*bogus; allowed: all, default, skips"):
        parse_probes("skips,bogus")


def test_a_missing_result_names_why():
    model, x = _resmlp()
    d = skiplab.diagnose(model.eval(), x, probes="skips,lesion")  # no target: no loss
    with pytest.raises(KeyError, match="'lesion' has no result: no loss"):
        d["lesion"]
    with pytest.raises(KeyError, match=r"'paths' has no result \(results: skips\)"):
        d["paths"]


def test_training_runs_between_the_stages_and_is_recorded(tmp_path):
    """``train=``: the probes of the model as built see the initial weights, the gradient-flow
    probe records every training step, and the lesion study scores the trained model."""
    model, x = _resmlp()
    y = torch.randint(0, 5, (24,), generator=torch.Generator().manual_seed(1))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    steps = 6

    def train(net: nn.Module) -> dict[str, float]:
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        net.train()
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        return {"train_loss": loss.item()}

    d = skiplab.diagnose(model, x, target=y, probes="gradflow,lesion", train=train, out=tmp_path)
    assert d.errors == {} and d.training["train_loss"] > 0
    record = d.gradient_split["training"]
    assert len(record["grad_norm"]) == steps and record["groups"] == d.gradient_split["groups"]
    with torch.no_grad():
        trained_acc = float((model.eval()(x).argmax(1) == y).float().mean())
    assert d.lesion.base == pytest.approx(trained_acc)  # measured after training
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed  # training's changes stay; the probes' do not
    html = (tmp_path / "index.html").read_text()
    assert f"Recorded {steps} training step(s)" in html


class _NoStem(nn.Module):
    """Residual blocks straight from the input: no parameter comes before the first block."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x).relu()
        return self.head(x)


def test_a_group_without_parameters_is_named_not_plotted_at_zero(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(8, 6), torch.randint(0, 2, (8,))
    d = skiplab.diagnose(_NoStem(), x, target=y, probes="gradflow", out=tmp_path)
    split = d.gradient_split
    assert split["groups"] == ["(before)", "blocks.0", "blocks.1", "blocks.2", "(after)"]
    assert split["grad_norm"][0] == 0 and all(v > 0 for v in split["grad_norm"][1:])
    html = (tmp_path / "index.html").read_text()
    assert "No parameter gradient (no parameters, or none reached): (before)." in html


def test_the_gradient_probes_measure_on_the_first_examples_only():
    """The split and Veit et al.'s estimate keep autograd graphs: they run on the batch's first
    8 and 4 examples (a ResNet-50 batch of 16 at 224 px stays under 4 GB with every probe)."""
    from skiplab.diagnostics import gradient_split, path_gradient_contribution
    from skiplab.diagnostics.probes import gradflow, paths

    model, x = _resmlp()
    y = torch.randint(0, 5, (24,), generator=torch.Generator().manual_seed(2))
    d = skiplab.diagnose(model, x, target=y, probes="gradflow,paths")
    n, m = gradflow.EXAMPLES, paths.EXAMPLES
    assert (n, m) == (8, 4)
    direct = gradient_split(model, x[:n], y[:n])
    assert d.gradient_split["branch_grad"] == pytest.approx(direct["branch_grad"], rel=1e-6)
    contrib = path_gradient_contribution(model, x[:m], y[:m], samples=3)
    assert d.paths["gradient"]["total"] == pytest.approx(contrib["total"], rel=1e-6)
