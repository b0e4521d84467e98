"""A small, deterministic trainer with atomic per-epoch checkpoints and exact resume.

Batches are drawn from in-memory tensors with a seeded generator (no DataLoader workers), the
learning-rate schedule is stepped per iteration, and the checkpoint holds model, optimiser,
scheduler, RNG states, step and history, so ``resume=True`` continues to the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from skiplab.train.checkpoint import load_checkpoint, save_checkpoint

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "step", "onecycle", "constant")


class DivergedError(RuntimeError):
    """The loss or a gradient became NaN/Inf; the message names the step (and parameter)."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class TrainConfig:
    """How to train. Defaults follow He et al. 2015's CIFAR recipe where one applies."""

    epochs: int = 10
    batch_size: int = 128  # He et al. 2015
    lr: float = 0.1  # He et al. 2015 (SGD)
    optimizer: str = "sgd"  # "sgd" (momentum) or "adamw"/"adam"
    momentum: float = 0.9  # He et al. 2015
    weight_decay: float = 1e-4  # He et al. 2015
    schedule: str = "cosine"  # "cosine", "step" (/10 at milestones), "onecycle", "constant"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of all steps: 32k and 48k of 64k
    warmup_steps: int = 0  # linear warm-up (cosine/step/constant)
    grad_clip: float | None = None
    seed: int = 0  # shuffling; seed the model init yourself before building it
    eval_batch_size: int = 1000
    log_every: int = 0  # also store the training loss every N steps (0: per epoch only)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    t = step / max(total, 1)
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return warm * 0.1 ** sum(t >= m for m in cfg.milestones)
    if cfg.schedule == "onecycle":
        # Linear ramp to the peak over the first 30%, cosine down to ~0 (Smith & Topin 2019).
        if t < 0.3:
            return 0.04 + 0.96 * t / 0.3
        return 0.5 * (1.0 + math.cos(math.pi * (t - 0.3) / 0.7))
    return warm


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TensorDataset,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data`` in eval mode."""
    was_training = model.training
    model.eval()
    x_all, y_all = data.tensors[0], data.tensors[1]
    total_loss, correct, n = 0.0, 0, 0
    for i in range(0, len(x_all), batch_size):
        x, y = x_all[i : i + batch_size].to(device), y_all[i : i + batch_size].to(device)
        out = model(x)
        total_loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    model.train(was_training)
    return {"loss": total_loss / max(n, 1), "acc": correct / max(n, 1)}


@dataclass
class History:
    """Per-epoch metrics: ``epochs[i]`` maps metric names to values after epoch ``i + 1``."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def last(self) -> dict[str, float]:
        return self.epochs[-1] if self.epochs else {}


class Trainer:
    """Train a classifier on in-memory tensors.

    Args:
        model: the network (already seeded and built).
        cfg: the training configuration.
        store: a :class:`skiplab.store.Store` to log metrics to (with ``run_id``), optional.
        run_id: the run these metrics belong to.
        checkpoint: file written atomically after each epoch (default: none).
        device: where to train (default CPU).
        progress: show a progress bar; default only when stderr is a terminal.
        loss_fn: ``(logits, targets) -> loss`` (default cross-entropy).
        hooks: callables ``hook(trainer, step, loss)`` after every optimiser step.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        *,
        store: Any = None,
        run_id: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        progress: bool | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        hooks: list[Callable[[Trainer, int, float], None]] | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.store = store
        self.run_id = run_id
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.device = torch.device(device)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.loss_fn = loss_fn
        self.hooks = list(hooks or [])
        self.model.to(self.device)
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.epoch = 0
        self.history = History()

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        assert self.scheduler is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "history": self.history.epochs,
            "torch_rng": torch.get_rng_state(),
            "shuffle_rng": self.generator.get_state(),
            "config": asdict(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.scheduler is not None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.history = History([dict(e) for e in state["history"]])
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["shuffle_rng"])

    # -- training -----------------------------------------------------------------------
    def fit(
        self, train: TensorDataset, test: TensorDataset | None = None, *, resume: bool = False
    ) -> History:
        """Train for ``cfg.epochs`` epochs; with ``resume`` continue from the checkpoint.

        Raises:
            DivergedError: a non-finite loss or gradient (the run is marked diverged in the store).
        """
        x_all, y_all = train.tensors[0], train.tensors[1]
        n = len(x_all)
        steps_per_epoch = math.ceil(n / self.cfg.batch_size)
        total = steps_per_epoch * self.cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(self.cfg, s, total)
        )
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            self.load_state_dict(load_checkpoint(self.checkpoint))
        self.model.train()
        bar = tqdm(
            total=total, initial=self.step, disable=not self.progress, leave=False, unit="step"
        )
        try:
            while self.epoch < self.cfg.epochs:
                t0 = time.perf_counter()
                order = torch.randperm(n, generator=self.generator)
                loss_sum, correct = 0.0, 0
                for i in range(0, n, self.cfg.batch_size):
                    idx = order[i : i + self.cfg.batch_size]
                    x, y = x_all[idx].to(self.device), y_all[idx].to(self.device)
                    loss, n_correct = self._train_step(x, y)
                    loss_sum += loss * len(idx)
                    correct += n_correct
                    bar.update(1)
                self.epoch += 1
                metrics = {
                    "train_loss": loss_sum / n,
                    "train_acc": correct / n,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "epoch_s": time.perf_counter() - t0,
                }
                if test is not None:
                    ev = evaluate(self.model, test, self.cfg.eval_batch_size, self.device)
                    metrics.update(test_loss=ev["loss"], test_acc=ev["acc"])
                self.history.epochs.append(metrics)
                bar.set_postfix(loss=f"{metrics['train_loss']:.4f}")
                if self.store is not None and self.run_id is not None:
                    self.store.log_metrics(self.run_id, self.step, metrics, epoch=self.epoch)
                if self.checkpoint is not None:
                    save_checkpoint(self.state_dict(), self.checkpoint)
        except DivergedError as err:
            if self.store is not None and self.run_id is not None:
                self.store.finish_run(self.run_id, "diverged", error=str(err))
            raise
        finally:
            bar.close()
        return self.history

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        assert self.scheduler is not None
        out = self.model(x)
        loss = self.loss_fn(out, y)
        if not torch.isfinite(loss):
            raise DivergedError(f"loss became {loss.item()} at step {self.step}", self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, p in self.model.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise DivergedError(
                    f"gradient of parameter '{name}' became non-finite at step {self.step}",
                    self.step,
                )
        if self.cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        value = loss.item()
        logging = self.store is not None and self.run_id is not None
        if logging and self.cfg.log_every and self.step % self.cfg.log_every == 0:
            self.store.log_metrics(self.run_id, self.step, {"step_loss": value}, epoch=self.epoch)
        for hook in self.hooks:
            hook(self, self.step, value)
        return value, int((out.argmax(1) == y).sum().item())
