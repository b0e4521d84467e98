"""``skiplab.diagnose(model, example_inputs)``: one call from Python on real models.

Every probe must give finite numbers on the zoo's transformers, PyG and replica models, name
blocks by their qualified module names, leave the model as it was, and refuse with a reason
(never a silent NaN) what it cannot do.
"""

import math

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("torch_geometric")

import zoo

import skiplab
from skiplab.diagnostics import Inputs

MODELS = ["gpt2", "bert", "t5", "gcnii", "deepgcn", "resnet"]
# residual adds the architecture fixes (see test_zoo_*.py): GPT-2 3 layers 2 each; BERT 2 layers 2
# each; T5 2+2 layers 2 + 3 each; GCNII 3 initial residuals; DeeperGCN res+ 3; ResNet replica 3
RESIDUALS = {"gpt2": 6, "bert": 4, "t5": 10, "gcnii": 3, "deepgcn": 3, "resnet": 3}


def _finite(values):
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


@pytest.fixture(scope="module", params=MODELS)
def diagnosed(request, tmp_path_factory):
    model, inputs, target = zoo.build(request.param)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path_factory.mktemp(request.param)
    result = skiplab.diagnose(model, inputs, target=target, probes="all", out=out)
    return request.param, model, before, result


def test_every_probe_gives_finite_numbers(diagnosed):
    name, _, _, d = diagnosed
    assert d.errors == {}, d.errors
    assert d.skips.as_dict()["counts"]["residual"] == RESIDUALS[name]
    assert d.signal["blocks"] == d.blocks and _finite(d.signal["var"])
    assert _finite(d.signal["branch_var"]) and set(d.signal["reasons"]) == {""}  # all residual
    assert _finite(d.jacobian["sigma"]) and all(s > 0 for s in d.jacobian["sigma"])
    split = d.gradient_split
    assert len(split["merges"]) == RESIDUALS[name]
    assert _finite(split["shortcut_grad"]) and _finite(split["branch_grad"])
    assert d.lesion.single and _finite(d.lesion.single.values())
    # a chain of n residual adds has 2**n paths or more (attention: q, k and v); GCNII's
    # initial residuals all start at x0: a path is where x0 last enters, n + 1 of them
    paths = RESIDUALS[name] + 1 if name == "gcnii" else 2 ** RESIDUALS[name]
    assert d.paths["graph"]["total"] >= paths and d.paths["graph"]["mean"] > 0
    if name == "gcnii":
        assert d.paths["graph"]["total"] == paths
    line = d.landscape["line"]["loss"]
    assert _finite(line) and min(line) > 0


def test_gradient_by_path_length_or_the_reason(diagnosed):
    """Veit et al.'s estimate needs the merges to form a chain; where they do not (T5's decoder
    forks from the encoder's output, GCNII's x0 feeds every layer) the section says so."""
    name, _, _, d = diagnosed
    if name in ("t5", "gcnii"):
        assert "gradient" not in d.paths
        assert any("do not form a chain" in n for n in d.paths["notes"])
    else:
        grad = d.paths["gradient"]
        assert grad["n"] == RESIDUALS[name] and _finite(grad["total"]) and sum(grad["total"]) > 0


def test_blocks_are_named_by_module(diagnosed):
    name, model, _, d = diagnosed
    assert len(d.blocks) == zoo.BLOCKS.get(name, len(d.blocks)) > 0
    modules = dict(model.named_modules())
    assert all(b in modules for b in d.blocks)


def test_the_model_is_left_as_it_was(diagnosed):
    _, model, before, _ = diagnosed
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_page_has_a_figure_or_a_sentence_for_every_probe(diagnosed):
    _, _, _, d = diagnosed
    html = d.page.read_text()
    for probe in ("skips", "signal", "gradflow", "jacobian", "paths", "landscape", "lesion"):
        fig = "landscape_line" if probe == "landscape" else probe
        assert (d.page.parent / "figures" / f"{fig}.png").stat().st_size > 1000
        assert f'id="{probe}"' in html
    assert "recorded forward pass" in html or "torch.fx" in html
    assert d.blocks[0] in html


def test_without_a_loss_the_gradient_probes_say_why_and_the_others_run():
    model, inputs, _ = zoo.build("bert")  # sequence logits: no labels, no loss to infer
    d = skiplab.diagnose(model, inputs)
    assert set(d.errors) == {"gradflow", "lesion"}
    assert all(e.startswith("no loss:") and "target=" in e for e in d.errors.values())
    assert _finite(d.jacobian["sigma"]) and d.skips is not None


def test_bad_inputs_and_probe_names_are_refused():
    model, inputs, _ = zoo.build("gpt2")
    with pytest.raises(ValueError, match=r"unknown probe\(s\) bogus"):
        skiplab.diagnose(model, inputs, probes="bogus")
    with pytest.raises(ValueError, match=r"does not run on inputs \(2, 8, 3\)"):
        skiplab.diagnose(model, torch.randn(2, 8, 3))
    d = skiplab.diagnose(model, Inputs(inputs.args), probes=["skips"])
    assert d.signal is None and d.skips is not None and d.errors == {}
