"""What the :class:`~skiplab.train.Trainer` learns: a task owns batches, loss and metrics.

The Trainer owns the loop (optimiser, schedule, divergence stop, checkpoints, resume, DDP); a
task fills three hooks, in the way PyG's ``MessagePassing`` fills ``message / aggregate /
update``:

- :meth:`Task.batches`: one epoch of training batches, drawn with the Trainer's seeded
  generator (so a resumed run draws the same batches), this rank's shard of each global batch;
- :meth:`Task.loss`: the mean loss of a batch, the batch's size and sums of per-example
  statistics (``"acc"``: correct predictions) that become epoch metrics ``train_<stat>``;
- :meth:`Task.metrics`: evaluation after an epoch (the Trainer calls it in eval mode, without
  gradients), e.g. ``test_loss`` and ``test_acc``.

Tasks: :class:`Classification`, :class:`NodeClassification` (full-batch masks),
:class:`SequenceRegression` (e.g. the adding problem), :class:`SequenceToSequence`
(copy / reverse with teacher forcing, greedy decoding for the metrics),
:class:`StreamClassification` (fresh synthetic batches, e.g. recall a symbol) and
:class:`Segmentation` (per-pixel classes, Dice / IoU / boundary F1).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from skiplab.train import distributed as _dist

__all__ = [
    "Classification",
    "NodeClassification",
    "Segmentation",
    "SequenceRegression",
    "SequenceToSequence",
    "StepLoss",
    "StreamClassification",
    "Task",
    "move",
]

#: ``make_batch(n, seed) -> tensors``: a generator of fresh synthetic examples.
MakeBatch = Callable[[int, int], tuple[torch.Tensor, ...]]


class StepLoss(NamedTuple):
    """What :meth:`Task.loss` returns for one (local) batch.

    Attributes:
        loss: the mean loss over the batch, a scalar tensor with a graph.
        n: examples (or nodes) the mean is over.
        stats: sums of per-example statistics named in ``Task.stats`` (e.g. correct count).
    """

    loss: torch.Tensor
    n: int
    stats: dict[str, float]


def move(batch: Any, device: torch.device) -> Any:
    """``batch`` on ``device``: a tensor, a tuple/list of tensors, or anything with ``.to``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(b, device) for b in batch)
    return batch.to(device)


class Task(ABC):
    """A learning problem for the Trainer (see the module docstring).

    Class attributes:
        stats: names of the per-batch sums :meth:`loss` returns; each becomes the epoch
            metric ``train_<name>`` (sum over the epoch / examples).
    """

    stats: ClassVar[tuple[str, ...]] = ()

    def setup(self, device: torch.device) -> None:  # noqa: B027  (an optional hook)
        """Called once before training; a task whose data lives on the device moves it here."""

    @abstractmethod
    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimiser steps in one epoch."""

    @abstractmethod
    def batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
    ) -> Iterator[Any]:
        """One epoch of training batches (on the CPU unless :meth:`setup` moved the data)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> StepLoss:
        """Forward ``batch`` (already on the model's device) and return its loss."""

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Evaluation metrics after an epoch (eval mode, no gradients); none by default."""
        return {}


def _shard_tensors(tensors: tuple[torch.Tensor, ...], rank: int, world: int) -> tuple[Any, ...]:
    """This rank's share of a global synthetic batch (every rank draws the same one)."""
    if world == 1:
        return tensors
    idx = _dist.shard(torch.arange(len(tensors[0])), rank, world)
    return tuple(t[idx] for t in tensors)


class _TensorTask(Task):
    """Batches drawn from in-memory tensors by a seeded permutation per epoch."""

    def __init__(self, train: TensorDataset) -> None:
        self.train = train

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.train) / batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        tensors = self.train.tensors
        order = torch.randperm(len(self.train), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = _dist.shard(order[i : i + batch_size], rank, world)
            yield tuple(t[idx] for t in tensors)


class Classification(_TensorTask):
    """Cross-entropy on ``(x, y)`` tensors; evaluation on ``test`` (loss and accuracy).

    Args:
        train: ``TensorDataset(x, y)``, ``y`` class indices ``(N,)``.
        test: evaluated after every ``eval_every`` epochs as ``test_loss`` / ``test_acc``.
        eval_batch_size: batch size of the evaluation (no effect on the numbers).
    """

    stats = ("acc",)

    def __init__(
        self, train: TensorDataset, test: TensorDataset | None = None, eval_batch_size: int = 1000
    ) -> None:
        super().__init__(train)
        self.test = test
        self.eval_batch_size = eval_batch_size

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepLoss:
        x, y = batch
        out = model(x)
        loss = F.cross_entropy(out, y)
        return StepLoss(loss, len(y), {"acc": float((out.argmax(1) == y).sum())})

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if self.test is None:
            return {}
        from skiplab.train.trainer import evaluate

        ev = evaluate(model, self.test, self.eval_batch_size, device)
        return {"test_loss": ev["loss"], "test_acc": ev["acc"]}


class Segmentation(_TensorTask):
    """Per-pixel cross-entropy; Dice, IoU and boundary F1 of the argmax on ``test``.

    Args:
        train: ``TensorDataset(images, masks)``: images ``(N, C, H, W)``, masks ``(N, h, w)``
            int64 matching the model's output size (crop them for a valid-convolution U-Net).
        test: the same for evaluation.
        tolerance: boundary-F1 tolerance in pixels.
        eval_batch_size: batch size of the evaluation.

    Metrics: ``test_dice``, ``test_iou``, ``test_boundary_f1`` (foreground = class 1).
    """

    stats = ("pixel_acc",)

    def __init__(
        self,
        train: TensorDataset,
        test: TensorDataset | None = None,
        tolerance: float = 1.0,
        eval_batch_size: int = 8,
    ) -> None:
        super().__init__(train)
        self.test = test
        self.tolerance = tolerance
        self.eval_batch_size = eval_batch_size

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepLoss:
        x, y = batch
        logits = model(x)  # (B, K, h, w)
        loss = F.cross_entropy(logits, y)
        correct = float((logits.argmax(1) == y).float().mean(dim=(1, 2)).sum())
        return StepLoss(loss, len(y), {"pixel_acc": correct})

    @torch.no_grad()
    def predict(self, model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Argmax masks ``(N, h, w)`` on the CPU, in eval mode, in batches of
        ``eval_batch_size``."""
        from skiplab.diagnostics import eval_mode

        with eval_mode(model):
            parts = [
                model(move(images[i : i + self.eval_batch_size], device)).argmax(1).cpu()
                for i in range(0, len(images), self.eval_batch_size)
            ]
        return torch.cat(parts)

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if self.test is None:
            return {}
        from skiplab.diagnostics.segmentation import segmentation_scores

        images, masks = self.test.tensors
        pred = self.predict(model, images, device)
        scores = segmentation_scores(pred, masks, tolerance=self.tolerance)
        return {f"test_{k}": v for k, v in scores.items()}


class NodeClassification(Task):
    """Full-batch node classification on one graph with train / val / test masks.

    One epoch is one optimiser step on the whole graph (Kipf & Welling 2017); the loss is the
    cross-entropy of the training nodes. The model is called as ``model(x, edge_index)``.

    Args:
        data: a ``torch_geometric.data.Data`` with ``x, edge_index, y, train_mask, val_mask,
            test_mask`` (see :func:`skiplab.data.load_cora`).

    Metrics: ``train_acc`` / ``val_acc`` / ``test_acc`` and ``val_loss``, in eval mode.
    """

    stats = ("acc",)

    def __init__(self, data: Any) -> None:
        for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
            if getattr(data, key, None) is None:
                raise ValueError(f"NodeClassification needs a graph with {key!r}; it has none")
        self.data = data

    def setup(self, device: torch.device) -> None:
        self.data = self.data.to(device)  # the whole graph is one batch: move it once

    def steps_per_epoch(self, batch_size: int) -> int:
        return 1

    def batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
    ) -> Iterator[Any]:
        yield self.data

    def loss(self, model: nn.Module, batch: Any) -> StepLoss:
        mask = batch.train_mask
        out = model(batch.x, batch.edge_index)[mask]
        y = batch.y[mask]
        correct = float((out.argmax(1) == y).sum())
        return StepLoss(F.cross_entropy(out, y), int(mask.sum()), {"acc": correct})

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        d = self.data
        out = model(d.x, d.edge_index)
        pred = out.argmax(1)
        scores = {
            f"{split}_acc": float((pred[m] == d.y[m]).float().mean())
            for split, m in (("train", d.train_mask), ("val", d.val_mask), ("test", d.test_mask))
        }
        scores["val_loss"] = float(F.cross_entropy(out[d.val_mask], d.y[d.val_mask]))
        return scores


class _StreamTask(Task):
    """Fresh synthetic batches every step from ``make_batch(n, seed)``, the seeds drawn with
    the Trainer's generator (so a resumed run draws the same stream); a fixed test set."""

    def __init__(
        self,
        make_batch: MakeBatch,
        test: tuple[torch.Tensor, torch.Tensor],
        steps_per_epoch: int = 100,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.make_batch = make_batch
        self.test = test
        self._steps = steps_per_epoch

    def steps_per_epoch(self, batch_size: int) -> int:
        return self._steps

    def batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[Any, ...]]:
        for _ in range(self._steps):
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            yield _shard_tensors(self.make_batch(batch_size, seed), rank, world)


class StreamClassification(_StreamTask):
    """Cross-entropy of ``model(x)`` on fresh synthetic batches (e.g. recall a symbol).

    Args:
        make_batch: ``make_batch(n, seed) -> (x, y)``, ``y`` class indices ``(n,)``.
        test: fixed held-out ``(x, y)`` for ``test_loss`` / ``test_acc``.
        steps_per_epoch: steps between evaluations (an "epoch" of an endless stream); the
            epoch's ``train_acc`` scores each batch before the step that learns from it.
    """

    stats = ("acc",)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepLoss:
        x, y = batch
        out = model(x)
        return StepLoss(F.cross_entropy(out, y), len(y), {"acc": float((out.argmax(1) == y).sum())})

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        x, y = (t.to(device) for t in self.test)
        out = model(x)
        return {
            "test_loss": float(F.cross_entropy(out, y)),
            "test_acc": float((out.argmax(1) == y).float().mean()),
        }


class SequenceRegression(_StreamTask):
    """Mean squared error of ``model(x).squeeze(-1)`` on fresh synthetic batches.

    Args:
        make_batch: ``make_batch(n, seed) -> (x, y)``, e.g.
            ``lambda n, s: adding_problem(n, 50, seed=s)``; every step draws a new batch.
        test: fixed held-out ``(x, y)`` for ``test_mse`` (and ``test_acc``).
        steps_per_epoch: steps between evaluations (an "epoch" of an endless stream).
        tolerance: also report ``test_acc``, the fraction with ``|error| < tolerance``.
    """

    def __init__(
        self,
        make_batch: MakeBatch,
        test: tuple[torch.Tensor, torch.Tensor],
        steps_per_epoch: int = 100,
        tolerance: float | None = None,
    ) -> None:
        super().__init__(make_batch, test, steps_per_epoch)
        self.tolerance = tolerance

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepLoss:
        x, y = batch
        return StepLoss(F.mse_loss(model(x).squeeze(-1), y), len(y), {})

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        x, y = (t.to(device) for t in self.test)
        pred = model(x).squeeze(-1)
        scores = {"test_mse": float(F.mse_loss(pred, y))}
        if self.tolerance is not None:
            scores["test_acc"] = float(((pred - y).abs() < self.tolerance).float().mean())
        return scores


class SequenceToSequence(_StreamTask):
    """Token cross-entropy with teacher forcing, ``model(src, tgt) -> (B, T, V)`` logits.

    The metrics decode greedily (``model.generate(src, T)``) on the fixed test pairs.

    Args:
        make_batch: ``make_batch(n, seed) -> (src, tgt)``, e.g. a copy or reversal task.
        test: held-out ``(src, tgt)``.
        steps_per_epoch: steps between evaluations.

    Metrics: ``test_token_acc``, ``test_seq_acc`` (every token right), ``test_loss``
    (teacher-forced).
    """

    stats = ("token_acc",)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepLoss:
        src, tgt = batch
        logits = model(src, tgt)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        hits = float((logits.argmax(-1) == tgt).float().mean(dim=1).sum())
        return StepLoss(loss, len(tgt), {"token_acc": hits})

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        src, tgt = (t.to(device) for t in self.test)
        out = model.generate(src, tgt.shape[1])  # type: ignore[operator]
        loss = F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten())
        return {
            "test_token_acc": float((out == tgt).float().mean()),
            "test_seq_acc": float((out == tgt).all(dim=1).float().mean()),
            "test_loss": float(loss),
        }
