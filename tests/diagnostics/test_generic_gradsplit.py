"""gradient_split from the recorded forward pass on third-party models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import zoo

from skiplab.diagnostics.gradflow import gradient_split
from skiplab.models import create_model


def test_every_residual_merge_gets_finite_positive_norms():
    for name in ("gpt2", "bert", "t5", "deepgcn", "gcnii"):
        model, inputs, target = zoo.build(name)
        out = gradient_split(model, inputs, target)
        assert out["method"] == "forward" and out["merges"], name
        n = len(out["merges"])
        assert len(out["blocks"]) == len(out["shortcut_grad"]) == len(out["branch_grad"]) == n
        for s, b in zip(out["shortcut_grad"], out["branch_grad"]):
            assert math.isfinite(s) and math.isfinite(b) and s > 0 and b > 0, name


def test_skiplab_resnet20_agrees_with_the_old_fx_numbers():
    # gradflow.gradient_split at 778b024 (fx re-run), same seeds and call
    import json
    from pathlib import Path

    torch.manual_seed(0)
    m = create_model("resnet20", dim=1, in_channels=1, num_classes=10)
    x, y = torch.randn(64, 1, 16), torch.randint(0, 10, (64,))
    old = json.loads((Path(__file__).parent / "gradsplit_resnet20_778b024.json").read_text())
    got = gradient_split(m, (x[:16],), y[:16], F.cross_entropy)
    for key in ("shortcut_grad", "branch_grad"):
        assert len(got[key]) == len(old[key]) == 9
        for a, b in zip(got[key], old[key]):
            assert math.isclose(a, b, rel_tol=1e-5), key
