"""A small, deterministic trainer with atomic per-epoch checkpoints and exact resume.

Batches are drawn from in-memory tensors with a seeded generator (no DataLoader workers), the
learning-rate schedule is stepped per iteration, and the checkpoint holds model, optimiser,
scheduler, RNG states, step and history, so ``resume=True`` continues to the same weights as an
uninterrupted run (bitwise on CPU), even after the process was killed with SIGKILL.

Under ``torchrun`` the model is wrapped in DistributedDataParallel and each rank trains on its
shard of every global batch (see :mod:`skiplab.train.distributed`); rank 0 alone writes the
store, the checkpoints and the TensorBoard files.
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

from skiplab.train import distributed as _dist
from skiplab.train.checkpoint import (
    CheckpointError,
    checkpoint_exists,
    load_latest_checkpoint,
    save_checkpoint,
)

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
    max_steps: int | None = None  # stop after this many steps (He et al. 2015: 64k); else epochs

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
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")


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


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def block_name(param_name: str) -> str:
    """The block a parameter belongs to: ``blocks.3.branch.0.weight`` -> ``blocks.3``.

    The first name component, plus the index when the component is a container
    (``nn.Sequential``/``nn.ModuleList``), so every residual block gets its own entry.
    """
    parts = param_name.split(".")
    if len(parts) > 2 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


def _normalised(config: dict[str, Any]) -> dict[str, Any]:
    # Checkpoints turn tuples into lists; compare configs in one form.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


class Trainer:
    """Train a classifier on in-memory tensors.

    Args:
        model: the network (already seeded and built).
        cfg: the training configuration.
        store: a :class:`skiplab.store.Store` to log metrics to (with ``run_id``), optional.
        run_id: the run these metrics belong to.
        checkpoint: file written atomically after each epoch, the one before kept as
            ``<name>.prev`` (default: none).
        device: where to train (default CPU; under torchrun each rank's own device).
        progress: show a progress bar; default only when stderr is a terminal.
        loss_fn: ``(logits, targets) -> loss`` (default cross-entropy).
        hooks: callables ``hook(trainer, step, loss)`` after every optimiser step.
        augment: ``(x, generator) -> x`` applied to each training batch, e.g.
            :func:`skiplab.data.cifar.flip_crop`; its generator is part of the checkpoint.
        tensorboard: directory for TensorBoard event files; ``None`` (default) puts them beside
            the store (``<store dir>/tensorboard/run<id>``) when there is one; ``False``: none.
        sync_batchnorm: under DDP on CUDA, convert BatchNorm to SyncBatchNorm so statistics
            are those of the global batch (default True; CPU/gloo has no SyncBatchNorm).
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
        augment: Augment | None = None,
        tensorboard: str | os.PathLike[str] | bool | None = None,
        sync_batchnorm: bool = True,
    ) -> None:
        self.dist = _dist.current()
        self.cfg = cfg
        self.store = store if self.dist.is_main else None
        self.run_id = run_id
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.device = torch.device(device)
        self.progress = (sys.stderr.isatty() if progress is None else progress) and (
            self.dist.is_main
        )
        self.loss_fn = loss_fn
        self.hooks = list(hooks or [])
        self.augment = augment
        if self.dist.distributed and sync_batchnorm and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.net: nn.Module = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.generator = torch.Generator().manual_seed(cfg.seed)
        # A separate stream for augmentation, so turning it on does not change the shuffling.
        self.augment_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.epoch = 0
        self.history = History()
        self.tb_dir = self._tensorboard_dir(tensorboard)
        self._writer: Any = None

    def _tensorboard_dir(self, tensorboard: str | os.PathLike[str] | bool | None) -> Path | None:
        if not self.dist.is_main or tensorboard is False:
            return None
        if tensorboard is None or tensorboard is True:
            if self.store is None or self.run_id is None:
                return None
            return Path(self.store.path).parent / "tensorboard" / f"run{self.run_id:05d}"
        return Path(tensorboard)

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
            "augment_rng": self.augment_generator.get_state(),
            "config": asdict(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.scheduler is not None
        saved = state.get("config")
        if saved is not None and _normalised(saved) != _normalised(asdict(self.cfg)):
            mine = _normalised(asdict(self.cfg))
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise CheckpointError(
                "checkpoint was written with a different training config "
                f"(differs in {', '.join(diff)}); resume with the same options or start afresh"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.history = History([dict(e) for e in state["history"]])
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["shuffle_rng"])
        if "augment_rng" in state:
            self.augment_generator.set_state(state["augment_rng"])

    # -- training -----------------------------------------------------------------------
    def total_steps(self, n_train: int) -> int:
        """Optimiser steps of the whole run on ``n_train`` examples."""
        if self.cfg.max_steps is not None:
            return self.cfg.max_steps
        return math.ceil(n_train / self.cfg.batch_size) * self.cfg.epochs

    def fit(
        self, train: TensorDataset, test: TensorDataset | None = None, *, resume: bool = False
    ) -> History:
        """Train for ``cfg.epochs`` epochs (or ``cfg.max_steps`` steps).

        Args:
            resume: continue from the checkpoint (or, if it is damaged, the previous one)
                when one exists; the restored epochs are logged to the store again so the
                run's metrics are complete.

        Raises:
            DivergedError: a non-finite loss or gradient; the run is marked diverged in the
                store and the last good checkpoint is left as it was.
            CheckpointError: ``resume`` found only damaged checkpoints, or one written with
                a different config.
        """
        x_all, y_all = train.tensors[0], train.tensors[1]
        n = len(x_all)
        steps_per_epoch = math.ceil(n / self.cfg.batch_size)
        total = self.total_steps(n)
        epochs = math.ceil(total / steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(self.cfg, s, total)
        )
        if resume and self.checkpoint is not None and checkpoint_exists(self.checkpoint):
            state, _ = load_latest_checkpoint(self.checkpoint)
            self.load_state_dict(state)
            if self.store is not None and self.run_id is not None:
                for e, metrics in enumerate(self.history.epochs, start=1):
                    step = min(e * steps_per_epoch, total)
                    self.store.log_metrics(self.run_id, step, metrics, epoch=e)
        self.net.train()
        bar = tqdm(
            total=total, initial=self.step, disable=not self.progress, leave=False, unit="step"
        )
        world, rank = self.dist.world_size, self.dist.rank
        try:
            while self.epoch < epochs and self.step < total:
                t0 = time.perf_counter()
                order = torch.randperm(n, generator=self.generator)
                sums = torch.zeros(3, dtype=torch.float64)  # loss * count, correct, count
                for i in range(0, n, self.cfg.batch_size):
                    if self.step >= total:
                        break
                    idx = _dist.shard(order[i : i + self.cfg.batch_size], rank, world)
                    x, y = x_all[idx], y_all[idx]
                    if self.augment is not None:
                        x = self.augment(x, self.augment_generator)
                    loss_sum, n_correct, count = self._train_step(
                        x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    )
                    sums += torch.tensor([loss_sum, n_correct, count], dtype=torch.float64)
                    bar.update(1)
                self.epoch += 1
                metrics = {
                    "train_loss": float(sums[0] / sums[2]),
                    "train_acc": float(sums[1] / sums[2]),
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
                self._write_tensorboard(metrics)
                if self.checkpoint is not None and self.dist.is_main:
                    save_checkpoint(self.state_dict(), self.checkpoint)
        except DivergedError as err:
            if self.store is not None and self.run_id is not None:
                self.store.finish_run(self.run_id, "diverged", error=str(err))
            raise
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return self.history

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        """One optimiser step; returns the global batch's (loss sum, correct, count)."""
        assert self.scheduler is not None
        out = self.net(x)
        loss = self.loss_fn(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        # backward first: DDP all-reduces the gradients, so every rank sees the same
        # non-finite gradient and stops at the same step instead of hanging in a collective.
        loss.backward()
        sums = torch.tensor(
            [loss.detach().double().item() * len(y), (out.argmax(1) == y).sum().item(), len(y)],
            dtype=torch.float64,
        )
        if self.dist.distributed:
            import torch.distributed as dist

            dist.all_reduce(sums)
        loss_sum, n_correct, count = float(sums[0]), int(sums[1]), int(sums[2])
        value = loss_sum / count
        if not math.isfinite(value):
            raise DivergedError(f"loss became {value} at step {self.step}", self.step)
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
        if (
            self.store is not None
            and self.run_id is not None
            and self.cfg.log_every
            and self.step % self.cfg.log_every == 0
        ):
            self.store.log_metrics(self.run_id, self.step, {"step_loss": value}, epoch=self.epoch)
        for hook in self.hooks:
            hook(self, self.step, value)
        return loss_sum, n_correct, count

    # -- TensorBoard --------------------------------------------------------------------
    def block_grad_norms(self) -> dict[str, float]:
        """L2 norm of the current gradient of each block (see :func:`block_name`)."""
        sq: dict[str, float] = {}
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                key = block_name(name)
                sq[key] = sq.get(key, 0.0) + float(p.grad.detach().double().pow(2).sum())
        return {k: math.sqrt(v) for k, v in sq.items()}

    def _write_tensorboard(self, metrics: dict[str, float]) -> None:
        if self.tb_dir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.tb_dir))
        w = self._writer
        for key, value in metrics.items():
            w.add_scalar(key, value, self.step)
        # The gradients of the epoch's last step are still in .grad (cleared at the next step).
        norms = self.block_grad_norms()
        if norms:
            w.add_histogram("grad_norm/blocks", torch.tensor(list(norms.values())), self.step)
            for block, value in norms.items():
                w.add_scalar(f"grad_norm/{block}", value, self.step)
        w.flush()
