import contextlib

import pytest
import torch
from torch.utils.data import TensorDataset

from skiplab.models import create_model
from skiplab.store import Store
from skiplab.train import (
    CheckpointError,
    DivergedError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    lr_factor,
    save_checkpoint,
)


def toy_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 40, generator=g)
    y = (x[:, :5].sum(1) > 0).long()
    return TensorDataset(x, y)


def build(seed=0):
    torch.manual_seed(seed)
    return create_model("resmlp", depth=4, width=16, in_features=40, num_classes=2)


def test_training_reduces_loss_and_logs_to_store(tmp_path):
    data = toy_data()
    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("t", "train", {})
        cfg = TrainConfig(epochs=20, batch_size=32, lr=0.05, seed=0)
        hist = Trainer(build(), cfg, store=store, run_id=rid).fit(data, data)
        losses = hist.series("train_loss")
        assert losses[-1] < 0.5 * losses[0]
        assert len(store.metrics(rid, "train_loss")) == 20
        assert hist.last["test_acc"] > 0.8


def test_resume_matches_uninterrupted_run_exactly(tmp_path):
    data = toy_data()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, seed=1)
    full = Trainer(build(), cfg).fit(data)
    full_model = build()
    Trainer(full_model, cfg).fit(data)

    ckpt = tmp_path / "c.pt"
    # First process: stop after 2 of 4 epochs (same config, so the schedule is the 4-epoch one).
    first = Trainer(build(), cfg, checkpoint=ckpt)
    hist_a = _fit_epochs(first, data, stop_after=2)
    assert len(hist_a.epochs) == 2
    # Second process: a fresh model and trainer, resumed from the checkpoint.
    second_model = build(seed=123)  # different init: everything must come from the checkpoint
    hist_b = Trainer(second_model, cfg, checkpoint=ckpt).fit(data, resume=True)
    assert hist_b.series("train_loss") == full.series("train_loss")
    for (k, a), b in zip(full_model.state_dict().items(), second_model.state_dict().values()):
        assert torch.equal(a, b), k


def _fit_epochs(trainer, data, stop_after):
    class Stop(Exception):
        pass

    def hook(tr, step, loss):
        if tr.epoch >= stop_after:
            raise Stop

    trainer.hooks.append(hook)
    with contextlib.suppress(Stop):
        trainer.fit(data)
    return trainer.history


def test_divergence_names_the_step_and_marks_the_run(tmp_path):
    data = toy_data()
    model = build()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("d", "train", {})
        with pytest.raises(DivergedError, match="at step 0"):
            Trainer(model, TrainConfig(epochs=1), store=store, run_id=rid).fit(data)
        assert store.run(rid).status == "diverged"


def test_checkpoint_is_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    bad = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()
    good = save_checkpoint({"w": torch.ones(2), "step": 3}, tmp_path / "ok.pt")
    assert load_checkpoint(good)["step"] == 3
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_schedules():
    cfg = TrainConfig(schedule="step", milestones=(0.5, 0.75))
    assert lr_factor(cfg, 0, 100) == 1.0
    assert lr_factor(cfg, 50, 100) == pytest.approx(0.1)
    assert lr_factor(cfg, 80, 100) == pytest.approx(0.01)
    cos = TrainConfig(schedule="cosine")
    assert lr_factor(cos, 0, 100) == 1.0 and lr_factor(cos, 100, 100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lbfgs")
