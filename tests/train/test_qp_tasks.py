import pytest
import torch

from skiplab.models.primal_dual import LearnedSolver, QPFamily, alignment
from skiplab.train import TrainConfig, Trainer
from skiplab.train.qp_tasks import SolveQPs


def _task(steps_per_epoch=50):
    family = QPFamily(4, 1, torch.Generator().manual_seed(0))
    return SolveQPs(family, family.sample(500, torch.Generator().manual_seed(1)), steps_per_epoch)


def test_a_learned_solver_improves_on_fresh_problems():
    torch.manual_seed(0)
    net = LearnedSolver(4, 9, hidden=32, steps=4, skip=True)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3, optimizer="adam", weight_decay=0.0,
                      schedule="cosine", log_every=10)  # fmt: skip
    task = _task()
    before = alignment(net, task.test)["error"]
    hist = Trainer(net, cfg, tensorboard=False).fit(task)
    first, last = hist.epochs[0]["test_error"], hist.last["test_error"]
    assert last < first < before and last < 0.5 * before, (before, first, last)
    assert hist.last["train_loss"] < hist.epochs[0]["train_loss"]


def test_batches_are_drawn_from_the_generator_and_sharded():
    task = _task(steps_per_epoch=2)
    one = list(task.batches(8, torch.Generator().manual_seed(3)))
    two = list(task.batches(8, torch.Generator().manual_seed(3)))
    assert len(one) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(one, two))
    (half, _), _ = task.batches(8, torch.Generator().manual_seed(3), rank=1, world=2)
    assert torch.equal(half, one[0][0][4:])


def test_steps_per_epoch_is_checked():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _task(steps_per_epoch=0)
