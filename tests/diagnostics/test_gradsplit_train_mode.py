"""gradient_split on a model in training mode (inside a training loop) updates nothing."""

from __future__ import annotations

import torch

from skiplab.diagnostics.gradflow import gradient_split
from skiplab.models import create_model


def test_batch_norm_statistics_of_a_training_model_are_left_alone():
    # the loss is inferred from one forward pass; in training mode that pass must not move the
    # running statistics either (it did: infer_task ran outside batch_statistics)
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1, num_classes=4).train()
    x, y = torch.randn(8, 1, 16), torch.randint(0, 4, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = gradient_split(model, x, y)
    assert len(out["merges"]) == 9 and all(s > 0 for s in out["shortcut_grad"])
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == []
    assert model.training and all(m.training for m in model.modules())


def test_a_frozen_submodule_stays_in_eval_mode():
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1, num_classes=4).train()
    model.blocks[0].branch[1].eval()
    gradient_split(model, torch.randn(8, 1, 16), torch.randint(0, 4, (8,)))
    assert not model.blocks[0].branch[1].training
