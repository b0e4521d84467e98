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

import dataclasses
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

from skiplab.diagnostics import eval_mode
from skiplab.train import distributed as _dist
from skiplab.train.checkpoint import (
    CheckpointError,
    checkpoint_exists,
    checkpoint_lock,
    load_latest_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)
from skiplab.train.tasks import Classification, Segmentation, Task, move

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
    eval_every: int = 1  # evaluate the task's metrics every N epochs (and after the last)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW moments (Vaswani et al.: 0.9, 0.98)
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
        if self.eval_every < 1 or self.log_every < 0:
            raise ValueError(
                f"eval_every must be >= 1 and log_every >= 0, got {self.eval_every}, "
                f"{self.log_every}"
            )
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
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TensorDataset,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data`` in eval mode."""
    x_all, y_all = data.tensors[0], data.tensors[1]
    total_loss, correct, n = 0.0, 0, 0
    with eval_mode(model):
        for i in range(0, len(x_all), batch_size):
            x, y = x_all[i : i + batch_size].to(device), y_all[i : i + batch_size].to(device)
            out = model(x)
            total_loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
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


@dataclass(frozen=True)
class EarlyStopping:
    """A ``Trainer(until=...)`` rule: stop once ``metric`` has not improved for ``patience``
    evaluations, but not before ``min_evaluations`` of them (GCNII's protocol on Cora, there
    on the validation loss).

    Args:
        metric: an evaluation metric in the history, e.g. ``"val_acc"``.
        patience: evaluations without a new best before stopping.
        min_evaluations: evaluations always made first (deep GNNs sit at chance for a while).
        mode: ``"max"`` (accuracy) or ``"min"`` (a loss).
    """

    metric: str = "val_acc"
    patience: int = 10
    min_evaluations: int = 0
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {self.mode!r}")
        if self.patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {self.patience}")

    def __call__(self, history: History) -> bool:
        values = history.series(self.metric)
        if not values or len(values) < self.min_evaluations:
            return False
        sign = 1.0 if self.mode == "max" else -1.0
        best = max(range(len(values)), key=lambda i: (sign * values[i], -i))  # the first best
        return len(values) - 1 - best >= self.patience


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


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint records of the model it holds, to refuse resuming another one.

    The registry name (set by :func:`skiplab.models.create_model`), the class, the
    architecture config (a dataclass ``model.cfg``, as every zoo model has) and the name and
    shape of every parameter and buffer.
    """
    cls = type(model)
    cfg = getattr(model, "cfg", None)
    config = None
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        config = {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    return {
        "model": getattr(model, "skiplab_name", None),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": config,
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return repr(value)


def _identity_differences(saved: dict[str, Any], mine: dict[str, Any], most: int = 6) -> list[str]:
    """``key: saved -> mine`` for each difference, the config's before the shapes'."""
    diff = []
    for key in ("model", "class"):
        if saved.get(key) is not None and saved.get(key) != mine.get(key):
            diff.append(f"{key}: {saved.get(key)} -> {mine.get(key)}")
    old_cfg, new_cfg = saved.get("config") or {}, mine.get("config") or {}
    for key in sorted(set(old_cfg) | set(new_cfg)) if old_cfg and new_cfg else []:
        if old_cfg.get(key) != new_cfg.get(key):
            diff.append(f"{key}: {old_cfg.get(key)} -> {new_cfg.get(key)}")
    old, new = saved.get("shapes") or {}, mine.get("shapes") or {}
    for key in [k for k in old if k in new and old[k] != new[k]]:
        diff.append(f"'{key}' shape {old[key]} -> {new[key]}")
    for label, names in (
        ("only in the checkpoint", [k for k in old if k not in new]),
        ("only in this model", [k for k in new if k not in old]),
    ):
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            diff.append(f"{len(names)} tensors {label} ({shown})")
    return diff[:most] + ([f"and {len(diff) - most} more"] if len(diff) > most else [])


def _normalised(config: dict[str, Any]) -> dict[str, Any]:
    # Checkpoints turn tuples into lists; compare configs in one form.
    return {k: _plain(v) for k, v in config.items()}


#: What :meth:`Trainer.load_state_dict` needs of a checkpoint.
_STATE_KEYS = ("model", "optimizer", "scheduler", "step", "epoch", "history", "torch_rng",
               "shuffle_rng")  # fmt: skip


class Trainer:
    """Train a model on a :class:`~skiplab.train.tasks.Task` (default: classification).

    Args:
        model: the network (already seeded and built).
        cfg: the training configuration.
        store: a :class:`skiplab.store.Store` to log metrics to (with ``run_id``), optional.
        run_id: the run these metrics belong to.
        checkpoint: file written atomically after each epoch, the one before kept as
            ``<name>.prev`` (default: none).
        checkpoint_every_s: write the checkpoint after an epoch only when this many seconds
            have passed since the last one (default: after every epoch).
        device: where to train (default CPU; under torchrun each rank's own device).
        progress: show a progress bar; default only when stderr is a terminal.
        hooks: callables ``hook(trainer, step, loss)`` after every optimiser step.
        augment: ``(x, generator) -> x`` applied to each training batch, e.g.
            :func:`skiplab.data.cifar.flip_crop`; its generator is part of the checkpoint.
        tensorboard: directory for TensorBoard event files; ``None`` (default) puts them beside
            the store (``<store dir>/tensorboard/run<id>``) when there is one; ``False``: none.
        sync_batchnorm: under DDP on CUDA, convert BatchNorm to SyncBatchNorm so statistics
            are those of the global batch (default True; CPU/gloo has no SyncBatchNorm).
        log: ``log(step, metrics, epoch)`` receives every metric row instead of the store
            (the experiment runner's run handle buffers them for the driver to store).
        until: ``until(history) -> bool`` after every epoch (the epoch's metrics already in
            ``history``): stop early once it is true, e.g. :class:`EarlyStopping`; the task is
            evaluated at that epoch if it was not due; ``stopped_early`` says so. It sees the
            whole history, restored epochs included, so a resumed run stops where an
            uninterrupted one would.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        *,
        store: Any = None,
        run_id: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every_s: float | None = None,
        device: str | torch.device = "cpu",
        progress: bool | None = None,
        hooks: list[Callable[[Trainer, int, float], None]] | None = None,
        augment: Augment | None = None,
        tensorboard: str | os.PathLike[str] | bool | None = None,
        sync_batchnorm: bool = True,
        log: Callable[[int, dict[str, float], int | None], None] | None = None,
        until: Callable[[History], bool] | None = None,
    ) -> None:
        self.dist = _dist.current()
        self.cfg = cfg
        self.store = store if self.dist.is_main else None
        self.run_id = run_id
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every_s = checkpoint_every_s
        self.log = log
        self.until = until
        self.stopped_early = False
        self.device = torch.device(device)
        self.progress = (sys.stderr.isatty() if progress is None else progress) and (
            self.dist.is_main
        )
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
            "model_identity": model_identity(self.model),
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
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            where = f"checkpoint {self.checkpoint}" if self.checkpoint else "the checkpoint"
            raise CheckpointError(
                f"{where} is not a training checkpoint (it has no {', '.join(map(repr, missing))}"
                "); point --checkpoint at a file `skiplab train` wrote, or start afresh without "
                "--resume"
            )
        saved = state.get("config")
        mine = _normalised(asdict(self.cfg))
        if saved is not None and _normalised(saved) != mine:
            saved = _normalised(saved)
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise CheckpointError(
                "checkpoint was written with a different training config "
                f"(differs in {', '.join(diff)}); resume with the same options or start afresh"
            )
        self._check_identity(state)
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

    def _check_identity(self, state: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model, naming the differences (one line)."""
        mine = model_identity(self.model)
        saved = state.get("model_identity")
        if not isinstance(saved, dict):  # written before checkpoints carried an identity
            saved = {"shapes": {k: list(v.shape) for k, v in state["model"].items()}}
        diff = _identity_differences(saved, mine)
        if diff:
            where = f"checkpoint {self.checkpoint}" if self.checkpoint else "the checkpoint"
            raise CheckpointError(
                f"{where} holds another model ({'; '.join(diff)}); resume with the model "
                "options it was written with, or start afresh without --resume"
            )

    def _check_finite(self) -> None:
        """Raise :class:`DivergedError` if a parameter or buffer is NaN/Inf (the step that
        made it so had a finite loss and gradient); such weights are never checkpointed."""
        for kind, named in (("parameter", self.model.named_parameters()),
                            ("buffer", self.model.named_buffers())):  # fmt: skip
            for name, t in named:
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise DivergedError(
                        f"{kind} '{name}' became non-finite after step {self.step}", self.step
                    )

    # -- training -----------------------------------------------------------------------
    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the whole run for an epoch of ``steps_per_epoch`` steps."""
        if self.cfg.max_steps is not None:
            return self.cfg.max_steps
        return steps_per_epoch * self.cfg.epochs

    def fit(
        self,
        task: Task | TensorDataset,
        test: TensorDataset | None = None,
        *,
        resume: bool = False,
    ) -> History:
        """Train on ``task`` for ``cfg.epochs`` epochs (or ``cfg.max_steps`` steps).

        Args:
            task: a :class:`~skiplab.train.tasks.Task`, or a ``TensorDataset(x, y)`` for
                :class:`~skiplab.train.tasks.Classification` (with ``test`` its test split).
            resume: continue from the checkpoint (or, if it is damaged, the previous one)
                when one exists; the restored epochs are logged again so the run's metrics
                are complete.

        Raises:
            DivergedError: a non-finite loss or gradient, or weights that became non-finite
                at an epoch's end; the run is marked diverged in the store and the last good
                checkpoint (finite, always) is left as it was.
            LockedError: another live run trains with the same checkpoint path.
            CheckpointError: ``resume`` found only damaged checkpoints, or one written with
                a different config.
        """
        lock = None
        if self.checkpoint is not None and self.dist.is_main:
            lock = checkpoint_lock(self.checkpoint).acquire()  # LockedError if in use
            remove_stale_temps(self.checkpoint)  # of a killed writer: no live one has any
        try:
            return self._fit(task, test, resume)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, task: Task | TensorDataset, test: TensorDataset | None, resume: bool) -> History:
        task = self._task(task, test)
        task.setup(self.device)
        steps_per_epoch = task.steps_per_epoch(self.cfg.batch_size)
        total = self.total_steps(steps_per_epoch)
        epochs = math.ceil(total / steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(self.cfg, s, total)
        )
        if resume and self.checkpoint is not None and checkpoint_exists(self.checkpoint):
            self._restore(steps_per_epoch, total)
        self.net.train()
        bar = tqdm(
            total=total, initial=self.step, disable=not self.progress, leave=False, unit="step"
        )
        saved_at = time.perf_counter()
        try:
            while self.epoch < epochs and self.step < total:
                t0 = time.perf_counter()
                sums = self._epoch(task, total, bar)
                self._check_finite()
                self.epoch += 1
                metrics = self._epoch_metrics(task, sums, evaluate=self._eval_due(epochs))
                self.history.epochs.append(metrics)
                if self.until is not None and self.until(self.history):
                    self.stopped_early = True
                    if not self._eval_due(epochs):  # the run ends here: evaluate what it ends with
                        metrics.update(self._evaluate(task))
                metrics["epoch_s"] = time.perf_counter() - t0
                bar.set_postfix(loss=f"{metrics['train_loss']:.4f}")
                self._log(self.step, metrics, self.epoch)
                self._write_tensorboard(metrics)
                if self._checkpoint_due(saved_at):
                    assert self.checkpoint is not None
                    save_checkpoint(self.state_dict(), self.checkpoint)
                    saved_at = time.perf_counter()
                if self.stopped_early:
                    break
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

    def _epoch(self, task: Task, total: int, bar: Any) -> torch.Tensor:
        """Train one epoch (or up to ``total`` steps); the summed (loss * n, n, stats)."""
        sums = torch.zeros(2 + len(task.stats), dtype=torch.float64)
        world, rank = self.dist.world_size, self.dist.rank
        for batch in task.batches(self.cfg.batch_size, self.generator, rank, world):
            if self.step >= total:
                break
            if self.augment is not None:
                batch = (self.augment(batch[0], self.augment_generator), *batch[1:])
            sums += self._train_step(task, move(batch, self.device))
            bar.update(1)
        return sums

    def _task(self, task: Task | TensorDataset, test: TensorDataset | None) -> Task:
        if isinstance(task, TensorDataset):
            return Classification(task, test, eval_batch_size=self.cfg.eval_batch_size)
        if test is not None:
            raise ValueError("pass the test split inside the task, not beside it")
        if self.augment is not None and not isinstance(task, Classification | Segmentation):
            raise ValueError(f"augment applies to image tasks, not {type(task).__name__}")
        return task

    def _restore(self, steps_per_epoch: int, total: int) -> None:
        """Load the latest good checkpoint and log its epochs again."""
        assert self.checkpoint is not None
        state, _ = load_latest_checkpoint(self.checkpoint)
        self.load_state_dict(state)
        for e, metrics in enumerate(self.history.epochs, start=1):
            self._log(min(e * steps_per_epoch, total), metrics, e)

    def _epoch_metrics(self, task: Task, sums: torch.Tensor, evaluate: bool) -> dict[str, float]:
        """The epoch's training metrics, and the task's evaluation when due."""
        n = float(sums[1])
        metrics = {"train_loss": float(sums[0]) / n}
        metrics.update({f"train_{k}": float(v) / n for k, v in zip(task.stats, sums[2:])})
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        if evaluate:
            metrics.update(self._evaluate(task))
        return metrics

    def _eval_due(self, epochs: int) -> bool:
        return self.epoch % self.cfg.eval_every == 0 or self.epoch == epochs

    def _checkpoint_due(self, saved_at: float) -> bool:
        if self.checkpoint is None or not self.dist.is_main:
            return False
        every = self.checkpoint_every_s
        return every is None or time.perf_counter() - saved_at >= every

    @torch.no_grad()
    def _evaluate(self, task: Task) -> dict[str, float]:
        with eval_mode(self.model):
            return task.metrics(self.model, self.device)

    def _log(self, step: int, metrics: dict[str, float], epoch: int | None) -> None:
        if self.log is not None:
            self.log(step, metrics, epoch)
        elif self.store is not None and self.run_id is not None:
            self.store.log_metrics(self.run_id, step, metrics, epoch=epoch)

    def _train_step(self, task: Task, batch: Any) -> torch.Tensor:
        """One optimiser step; returns the global batch's (loss sum, count, stat sums...)."""
        assert self.scheduler is not None
        out = task.loss(self.net, batch)
        self.optimizer.zero_grad(set_to_none=True)
        # backward first: DDP all-reduces the gradients, so every rank sees the same
        # non-finite gradient and stops at the same step instead of hanging in a collective.
        out.loss.backward()
        sums = torch.tensor(
            [out.loss.detach().double().item() * out.n, out.n] + [out.stats[k] for k in task.stats],
            dtype=torch.float64,
        )
        if self.dist.distributed:
            import torch.distributed as dist

            dist.all_reduce(sums)
        value = float(sums[0]) / float(sums[1])
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
        if self.cfg.log_every and self.step % self.cfg.log_every == 0:
            self._log(self.step, {"step_loss": value}, self.epoch)
        for hook in self.hooks:
            hook(self, self.step, value)
        return sums

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
