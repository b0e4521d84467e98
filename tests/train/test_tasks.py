"""The Trainer's task protocol: every task learns, and divergence, checkpoints and resume
apply to every task, not only classification."""

import pytest
import torch
from torch import nn

from skiplab.data import adding_problem, load_cells, load_cora, sequence_copy
from skiplab.models.gnn import GNN, GNNConfig
from skiplab.models.seq2seq import Seq2Seq, Seq2SeqConfig
from skiplab.train import (
    DivergedError,
    NodeClassification,
    Segmentation,
    SequenceRegression,
    SequenceToSequence,
    TrainConfig,
    Trainer,
)

BASELINE_MSE = 1 / 6  # the adding problem's mean predictor


class _Adder(nn.Module):
    """An MLP on the flattened (value, marker) sequence: enough for the adding problem at T=5."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * length, 64), nn.Tanh(),
                                 nn.Linear(64, 1))  # fmt: skip

    def forward(self, x):
        return self.net(x)  # (B, 1)


def _adding(length=5, steps_per_epoch=50):
    return SequenceRegression(
        lambda n, seed: adding_problem(n, length, seed=seed % 2**31),
        adding_problem(500, length, seed=999), steps_per_epoch=steps_per_epoch, tolerance=0.04,
    )  # fmt: skip


def _adam(**kw):
    base = dict(epochs=1, batch_size=64, lr=3e-3, optimizer="adam", weight_decay=0.0,
                schedule="constant")  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_sequence_regression_learns_the_adding_problem():
    torch.manual_seed(0)
    hist = Trainer(_Adder(5), _adam(epochs=20), tensorboard=False).fit(_adding())
    first, last = hist.epochs[0]["test_mse"], hist.last["test_mse"]
    assert last < 0.5 * BASELINE_MSE and last < 0.5 * first, (first, last)
    assert {"train_loss", "test_mse", "test_acc", "lr", "epoch_s"} <= set(hist.last)


def test_sequence_to_sequence_learns_to_copy():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=5, embed_size=16, hidden_size=32))
    task = SequenceToSequence(
        lambda n, seed: sequence_copy(n, 3, vocab=5, seed=seed % 2**31),
        sequence_copy(200, 3, vocab=5, seed=999), steps_per_epoch=50,
    )  # fmt: skip
    hist = Trainer(model, _adam(epochs=6, lr=1e-2), tensorboard=False).fit(task)
    assert hist.last["test_token_acc"] > 0.9, hist.last  # chance is 0.2
    assert hist.last["test_seq_acc"] > 0.7
    assert hist.last["train_token_acc"] > hist.epochs[0]["train_token_acc"]


def test_node_classification_on_cora_reaches_the_gcn_range():
    data = load_cora()
    torch.manual_seed(0)
    model = GNN(GNNConfig(hidden=16, num_layers=2))
    cfg = _adam(epochs=100, lr=0.01, weight_decay=5e-4, eval_every=10)
    hist = Trainer(model, cfg, tensorboard=False).fit(NodeClassification(data))
    evaluated = [e for e in hist.epochs if "val_acc" in e]
    assert len(evaluated) == 10  # every 10th epoch, the last included
    best = max(evaluated, key=lambda e: e["val_acc"])
    assert best["test_acc"] > 0.75, best  # Kipf & Welling: 81.5 after 200 epochs
    assert hist.last["train_acc"] > 0.9


def test_segmentation_learns_cell_masks():
    cells = load_cells(16, 8, 32, seed=0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(16, 2, 1))  # fmt: skip
    torch.manual_seed(0)
    hist = Trainer(model, _adam(epochs=15, batch_size=4, lr=3e-3), tensorboard=False).fit(
        Segmentation(cells.train, cells.test)
    )
    assert {"test_dice", "test_iou", "test_boundary_f1", "train_pixel_acc"} <= set(hist.last)
    assert hist.last["test_dice"] > hist.epochs[0]["test_dice"]
    assert hist.last["test_dice"] > 0.5, hist.last


def test_divergence_stops_any_task():
    torch.manual_seed(0)
    with pytest.raises(DivergedError, match="at step"):
        Trainer(_Adder(5), _adam(epochs=3, optimizer="sgd", lr=1e38), tensorboard=False).fit(
            _adding()
        )


class _Killed(Exception):
    pass


def _kill_at(step):
    def hook(trainer, at, loss):
        if at == step:
            raise _Killed

    return hook


def test_resume_of_a_stream_task_is_exact(tmp_path):
    torch.manual_seed(0)
    ref = _Adder(5)
    Trainer(ref, _adam(epochs=4), tensorboard=False).fit(_adding(steps_per_epoch=10))
    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    with pytest.raises(_Killed):  # dies in epoch 3, after the epoch-2 checkpoint
        Trainer(_Adder(5), _adam(epochs=4), checkpoint=ckpt, hooks=[_kill_at(25)],
                tensorboard=False).fit(_adding(steps_per_epoch=10))  # fmt: skip
    resumed = _Adder(5)  # a fresh process builds the model again
    hist = Trainer(resumed, _adam(epochs=4), checkpoint=ckpt, tensorboard=False).fit(
        _adding(steps_per_epoch=10), resume=True
    )
    assert len(hist.epochs) == 4
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_test_split_beside_a_task_is_refused():
    cells = load_cells(4, 2, 32, seed=0)
    with pytest.raises(ValueError, match="inside the task"):
        Trainer(nn.Conv2d(1, 2, 1), _adam()).fit(Segmentation(cells.train), cells.test)


def test_stream_classification_stops_early_once_until_holds():
    from skiplab.data.recall import first_symbol_recall
    from skiplab.models.rnn import RecurrentNet, RNNConfig
    from skiplab.train import StreamClassification

    task = StreamClassification(
        lambda n, seed: first_symbol_recall(n, 5, 4, seed=seed % 2**31),
        first_symbol_recall(500, 5, 4, seed=999), steps_per_epoch=4,
    )  # fmt: skip
    torch.manual_seed(0)
    model = RecurrentNet(RNNConfig(input_size=8, hidden_size=16, out_features=4, skip=False))
    cfg = _adam(epochs=1, max_steps=600, lr=1e-2, grad_clip=1.0, eval_every=1000)
    trainer = Trainer(model, cfg, tensorboard=False, until=lambda h: h.last["train_acc"] >= 0.99)
    hist = trainer.fit(task)
    assert trainer.stopped_early and trainer.step < 600  # T=5 is learnt within 600 steps
    assert hist.last["train_acc"] >= 0.99
    assert hist.last["test_acc"] > 0.9  # evaluated at the epoch it stopped, not only at the end
    assert all("test_acc" not in e for e in hist.epochs[:-1])  # eval_every was not due before


def test_early_stopping_waits_for_patience_after_the_minimum():
    from skiplab.train import EarlyStopping, History

    rule = EarlyStopping("val_acc", patience=2, min_evaluations=4)

    def hist(vals):
        return History([{"val_acc": v} if v is not None else {} for v in vals])

    assert not rule(hist([0.5, 0.4, 0.3]))  # below the minimum number of evaluations
    assert rule(hist([0.5, 0.4, 0.3, 0.2]))  # the best is 3 evaluations back
    assert not rule(hist([0.5, 0.4, 0.6, 0.2]))  # a new best 1 evaluation back
    assert not rule(hist([0.5, None, 0.4, None, 0.6, None, 0.6]))  # ties keep the first best
    assert rule(hist([0.5, None, 0.4, None, 0.6, None, 0.6, None, 0.5]))
    assert EarlyStopping("val_loss", patience=1, mode="min")(hist([])) is False
    with pytest.raises(ValueError, match="mode must be"):
        EarlyStopping(mode="best")
