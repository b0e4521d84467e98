"""Skips and blocks of torchvision and timm models, where those libraries import beside torch.

The torchvision wheel the registry serves for torch 2.13 is a CUDA build that does not import
beside the CPU torch (``operator torchvision::nms does not exist``), and timm imports
torchvision: there these tests skip and say why. They run where both import (a CUDA machine,
or torch 2.14.1 with torchvision 0.29.1).
"""

import importlib
import math

import pytest
import torch


def _library(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        pytest.skip(
            f"{name.split('.')[0]} is not installed: it is no dependency, because the registry's "
            "torchvision for torch 2.13 is a CUDA build that does not import beside the CPU torch"
        )
    except Exception as err:  # not only ImportError: the CUDA build raises RuntimeError
        why = str(err).strip().splitlines()[0] if str(err).strip() else ""
        pytest.skip(f"{name} does not import beside this torch ({type(err).__name__}: {why})")


def _counts_and_blocks(model, x):
    from skiplab.diagnostics import find_blocks, find_skips

    model.eval()
    report = find_skips(model, (x,))
    return report.as_dict()["counts"], [n for n, _ in find_blocks(model, merges=report.merges)]


def _stages(depths, first=1, fmt="layer{s}.{b}"):
    return [fmt.format(s=s, b=b) for s, n in enumerate(depths, start=first) for b in range(n)]


@pytest.mark.parametrize(
    ("factory", "depths"), [("resnet18", [2, 2, 2, 2]), ("resnet50", [3, 4, 6, 3])]
)
def test_torchvision_resnets_one_add_per_block(factory, depths):
    models = _library("torchvision.models")
    torch.manual_seed(0)
    counts, blocks = _counts_and_blocks(
        getattr(models, factory)(weights=None), torch.randn(2, 3, 64, 64)
    )
    assert counts["residual"] == sum(depths)  # out += identity, once per block
    assert blocks == _stages(depths)


def test_torchvision_densenet121_concatenates_once_per_layer():
    models = _library("torchvision.models")
    torch.manual_seed(0)
    counts, blocks = _counts_and_blocks(models.densenet121(weights=None), torch.randn(2, 3, 64, 64))
    # each dense layer concatenates the features before it (the first has one: no merge), and
    # each dense block its layers' outputs at the end: 6 + 12 + 24 + 16 merges
    assert counts["concat"] == 58 and counts["residual"] == 0
    assert blocks == [f"features.denseblock{i}" for i in range(1, 5)]


def test_torchvision_vit_two_adds_per_encoder_layer():
    models = _library("torchvision.models")
    torch.manual_seed(0)
    vit = models.vit_b_16(weights=None, image_size=32)
    counts, blocks = _counts_and_blocks(vit, torch.randn(2, 3, 32, 32))
    assert counts["residual"] == 24  # attention and MLP, 12 layers
    assert blocks == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]


def test_skiplab_diagnose_on_a_torchvision_resnet():
    models = _library("torchvision.models")
    import skiplab

    torch.manual_seed(0)
    model = models.resnet18(weights=None, num_classes=10)
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    d = skiplab.diagnose(model, x, target=y, probes="skips,gradflow,jacobian,lesion")
    assert d.errors == {}, d.errors
    assert d.blocks == _stages([2, 2, 2, 2])
    assert len(d.gradient_split["merges"]) == 8
    assert all(math.isfinite(s) and s > 0 for s in d.jacobian["sigma"])
    assert sorted(d.lesion.single) == sorted(d.blocks)  # each block's residual branch deleted


def test_timm_resnet_and_convnext():
    timm = _library("timm")
    torch.manual_seed(0)
    counts, blocks = _counts_and_blocks(timm.create_model("resnet18"), torch.randn(2, 3, 64, 64))
    assert counts["residual"] == 8 and blocks == _stages([2, 2, 2, 2])
    convnext = timm.create_model("convnext_atto")  # depths (2, 2, 6, 2)
    counts, blocks = _counts_and_blocks(convnext, torch.randn(2, 3, 64, 64))
    assert counts["residual"] == 12
    assert blocks == _stages([2, 2, 6, 2], first=0, fmt="stages.{s}.blocks.{b}")
