"""Learning to solve optimisation problems: a :class:`~skiplab.train.tasks.Task` for learned solvers.

A learned solver (Gregor & LeCun 2010, LISTA; here :class:`skiplab.models.primal_dual.LearnedSolver`)
maps a problem's parameters to iterates ``y_0, ..., y_K``; it is trained on fresh problems of a
:class:`~skiplab.models.primal_dual.QPFamily` every step to bring the last iterate to the
solution.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from skiplab.models.primal_dual import QPBatch, QPFamily, alignment, relative_sq_error
from skiplab.train.distributed import shard
from skiplab.train.tasks import StepLoss, Task, move

__all__ = ["SolveQPs"]


class SolveQPs(Task):
    """Relative squared error ``|y_K - y*|^2 / |y*|^2`` of the final iterate, on a fresh batch
    of the family's problems every step (drawn with the Trainer's seeded generator).

    The model is called as ``model(params) -> (K + 1, B, n)`` iterates.

    Args:
        family: the problems to learn.
        test: held-out problems of the same family for the metrics.
        steps_per_epoch: steps between evaluations (an "epoch" of an endless stream).

    Metrics: ``test_error``, the mean relative error ``|y_K - y*| / |y*|`` on ``test``.
    """

    def __init__(self, family: QPFamily, test: QPBatch, steps_per_epoch: int = 100) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.family, self.test, self._steps = family, test, steps_per_epoch

    def setup(self, device: torch.device) -> None:
        self.test = QPBatch._make(move(tuple(self.test), device))  # one held-out set: move it once

    def steps_per_epoch(self, batch_size: int) -> int:
        return self._steps

    def batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self._steps):
            p = self.family.sample(batch_size, generator)  # every rank draws the same batch
            idx = shard(torch.arange(batch_size), rank, world)
            yield p.params[idx], p.y[idx]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepLoss:
        params, y = batch
        return StepLoss(relative_sq_error(model(params)[-1], y).mean(), len(y), {})

    def metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return {"test_error": float(alignment(model, self.test)["error"])}
