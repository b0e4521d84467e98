"""A small claim for the runner's tests: seconds per run, every outcome a run can have.

Importing it registers claim ``X01``; the ``toy_claim`` fixture removes it again after each
test so other tests see only the catalogue. Workers of the local pool import it through the
run spec's ``module``, like any claim defined outside skiplab.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from skiplab.claims import Check, Claim, Comparison, Run, Runs, Summary, register_claim
from skiplab.train import Classification, TrainConfig


@dataclass(frozen=True)
class Settings:
    widths: tuple[int, ...] = (4, 32)  # one condition per hidden width
    steps: int = 20  # optimiser steps per run
    lr: float = 0.1  # SGD
    sleep_s: float = 0.0  # wall time added to each run, for interruption tests
    fail_width: int | None = None  # the run of this width raises
    diverge_width: int | None = None  # the run of this width trains at lr 1e38 and diverges
    pid_dir: str = ""  # each run writes its process id here when it starts (to kill workers)


SCALES = {"tiny": Settings(), "quick": Settings(steps=40), "full": Settings(steps=80)}


@dataclass(frozen=True)
class Condition:
    width: int


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, float]:
    if c.width == s.fail_width:
        raise RuntimeError(f"toy run asked to fail (width {c.width})")
    if s.pid_dir:
        Path(s.pid_dir, f"{c.width}-{seed}-{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(s.sleep_s)
    gen = run.generator()
    x = torch.randn(256, 8, generator=gen)
    y = (x[:, 0] > 0).long()
    data = TensorDataset(x, y)
    model = run.build(
        lambda: nn.Sequential(nn.Linear(8, c.width), nn.Tanh(), nn.Linear(c.width, 2))
    )
    cfg = TrainConfig(epochs=1, max_steps=s.steps, batch_size=32, lr=1e38 if c.width == s.diverge_width else s.lr,
                      schedule="constant", weight_decay=0.0)  # fmt: skip
    fit = run.fit(model, Classification(data, data), cfg)
    run.log(0, draw=float(torch.rand(1)))
    return {
        "loss": fit.last.get("train_loss", float("nan")),
        "draw": float(torch.rand(1)),  # the global generator, seeded by the runner
        "steps": fit.steps,
    }


@dataclass
class Result(Summary):
    loss: dict[int, list[float]]
    draws: list[float]
    diverged: int


@register_claim
class ToyClaim(Claim[Settings, Condition, Result]):
    id = "X01"
    slug = "toy"
    title = "A toy claim for the runner's tests"
    statement = "Wider toy networks train at least as well."
    method = "Two widths, a few SGD steps."
    criterion = "Holds when the wide network's mean loss is not above the narrow one's."
    scales = SCALES
    default_seeds = {"tiny": 2, "quick": 2, "full": 3}
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(w) for w in s.widths]

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        loss = {w: runs.values("loss", width=w) for w in sorted({r.condition.width for r in runs})}
        return Result(loss, [r.get("draw") for r in runs], sum(r.diverged for r in runs))

    def checks(self, r: Result) -> list[Check]:
        narrow, wide = min(r.loss), max(r.loss)
        mean = {w: sum(v) / len(v) for w, v in r.loss.items()}
        return [Check("wide trains at least as well", mean[wide] <= mean[narrow], f"{mean}")]

    def literature(self, r: Result) -> list[Comparison]:
        wide = max(r.loss)
        mean = sum(r.loss[wide]) / len(r.loss[wide])
        return [Comparison("Toy et al. 2026", "loss below 1", f"loss {mean:.3f}", mean < 1)]
