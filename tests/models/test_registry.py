"""The registry sweep: every model builds, runs, backprops, and its plain twin has no skip."""

import pytest
import torch

import skiplab
from skiplab.models import create_model, example_inputs, list_models, model_family
from skiplab.nn import count_skips


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list):
        return _first_tensor(out[0])
    if isinstance(out, dict):
        return _first_tensor(next(iter(out.values())))
    raise TypeError(type(out))


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_backprops_and_has_a_plain_twin(name):
    torch.manual_seed(0)
    model = create_model(name)
    inputs = example_inputs(name)
    out = _first_tensor(model(*inputs))
    assert torch.isfinite(out).all(), name
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name

    residual = create_model(name, skip=True)
    plain = create_model(name, skip=False)
    assert count_skips(residual) > 0, f"{name} with skip=True has no active skip"
    assert count_skips(plain) == 0, f"{name} with skip=False still has a skip"
    plain_out = _first_tensor(plain(*example_inputs(name)))
    assert plain_out.shape == out.shape


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet57'.*resnet56"):
        create_model("resnet57")


def test_bad_argument_names_the_model():
    with pytest.raises(ValueError, match="resnet20"):
        create_model("resnet20", no_such_option=1)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        create_model("resnet_cifar", depth=21)


@pytest.mark.parametrize(
    ("name", "millions"), [("resnet20", 0.27), ("resnet56", 0.85), ("resnet110", 1.7)]
)
def test_parameter_counts_match_he_et_al(name, millions):
    n = sum(p.numel() for p in create_model(name).parameters())
    assert abs(n / 1e6 - millions) / millions < 0.02, n


def test_plain_twin_has_same_parameters_with_option_a():
    res = sum(p.numel() for p in create_model("resnet56").parameters())
    plain = sum(p.numel() for p in create_model("plain56").parameters())
    assert res == plain


def test_top_level_api():
    assert "resnet56" in skiplab.list_models("resnet*")
    assert model_family("plain56") == "resnet"
    net = skiplab.create_model("resnet20", dim=1, in_channels=1, num_classes=10)
    assert net(torch.randn(4, 1, 40)).shape == (4, 10)
    with pytest.raises(ValueError, match=r"\(B, C, L\) with C=1"):
        net(torch.randn(4, 3, 40))
