"""The paper recipes: He et al. 2015's CIFAR-10 schedule, step for step."""

import pytest
import torch
from torch.utils.data import TensorDataset

from skiplab.models import create_model, list_models
from skiplab.train import Trainer, lr_factor
from skiplab.train.configs import HE2015, HE2015_WARM, paper_recipe, paper_runs


def test_he2015_schedule_divides_by_10_at_32k_and_48k_of_64k():
    total = HE2015.max_steps
    assert total == 64_000 and HE2015.batch_size == 128 and HE2015.lr == 0.1
    assert HE2015.momentum == 0.9 and HE2015.weight_decay == 1e-4
    assert lr_factor(HE2015, 31_999, total) == 1.0
    assert lr_factor(HE2015, 32_000, total) == pytest.approx(0.1)
    assert lr_factor(HE2015, 47_999, total) == pytest.approx(0.1)
    assert lr_factor(HE2015, 48_000, total) == pytest.approx(0.01)
    assert lr_factor(HE2015_WARM, 0, total) == pytest.approx(1 / 400)
    assert lr_factor(HE2015_WARM, 399, total) == 1.0


def test_paper_runs_name_registered_models_and_recipes():
    known = set(list_models())
    runs = paper_runs()
    assert {r.model for r in runs} >= {"plain20", "plain56", "resnet20", "resnet110"}
    for r in runs:
        assert r.model in known and paper_recipe(r.recipe).max_steps == 64_000
    with pytest.raises(ValueError, match="known recipes: he2015, he2015-warmup"):
        paper_recipe("he2016")


def test_max_steps_stops_mid_epoch():
    from dataclasses import replace

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 8, 8, generator=g)
    data = TensorDataset(x, torch.randint(0, 10, (40,), generator=g))
    cfg = replace(HE2015, batch_size=16, max_steps=7)  # 3 steps per epoch: 2 epochs + 1 step
    torch.manual_seed(0)
    trainer = Trainer(create_model("resnet_cifar", depth=8), cfg)
    hist = trainer.fit(data)
    assert trainer.step == 7 and len(hist.epochs) == 3
