"""Shared training step of claims that train a classifier from the zoo on a dataset.

``train_classifier`` is the one place where a claim seeds, builds a registered model, trains it
with :class:`~skiplab.train.Trainer` and records the run in the store, so that every claim's
training runs look the same in the report (config, per-epoch metrics, final results).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from skiplab.claims._base import Context
from skiplab.data import Splits
from skiplab.models import create_model
from skiplab.train import DivergedError, History, TrainConfig, Trainer, evaluate

__all__ = ["TrainResult", "train_classifier"]


@dataclass
class TrainResult:
    """What one training run of :func:`train_classifier` produced.

    Attributes:
        history: per-epoch metrics (``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
            ``lr``, ``epoch_s``); after a divergence, the epochs completed before it.
        run_id: the store id of the run.
        diverged: the error message if the loss or a gradient became non-finite, else ``None``.
        wall_s: seconds the run took (building, training and the final evaluation).
        final: ``history.last`` plus ``train_eval_loss`` / ``train_eval_acc``, the final model
            evaluated on the whole training split in eval mode (empty after a divergence).
    """

    history: History
    run_id: int
    diverged: str | None
    wall_s: float
    final: dict[str, float]


def train_classifier(
    ctx: Context,
    name: str,
    model_name: str,
    splits: Splits,
    train_cfg: TrainConfig,
    seed: int,
    *,
    eval_train: bool = False,
    **model_kw: Any,
) -> TrainResult:
    """Seed, build ``create_model(model_name, **model_kw)``, train it and record the run.

    The model's initialisation is seeded with ``seed`` and the batch order with ``train_cfg``
    re-seeded to ``seed`` too, so one ``seed`` fixes the whole run. Metrics are logged to
    ``ctx.store`` every epoch and the checkpoint lives under ``ctx.workdir``. A divergence
    (non-finite loss or gradient) does not raise: the run is stored as ``diverged`` and the
    caller gets the message in ``TrainResult.diverged`` to report it honestly.

    Args:
        ctx: the claim's context (store, scale, workdir, device).
        name: run name shown in the store and report, e.g. ``"C09 plain56 mnist1d seed 0"``.
        model_name: a registered model, e.g. ``"resnet56"``.
        splits: the data; the test split is evaluated after every epoch.
        train_cfg: optimiser, schedule and budget; its ``seed`` is replaced by ``seed``.
        seed: seeds the initialisation and the shuffling.
        eval_train: also evaluate the final model on the whole training split (eval mode).
        **model_kw: architecture arguments for ``create_model``, e.g. ``dim=1, in_channels=1``.

    Returns:
        A :class:`TrainResult`.
    """
    cfg = TrainConfig(**{**asdict(train_cfg), "seed": seed})
    record = {
        "model": model_name,
        "model_kw": model_kw,
        "data": repr(splits),
        "train": asdict(cfg),
    }
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    checkpoint = ctx.workdir / "checkpoints" / f"{slug}.pt"
    with ctx.run(name, record, seed=seed) as run_id:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = create_model(model_name, **model_kw)
        trainer = Trainer(
            model,
            cfg,
            store=ctx.store,
            run_id=run_id,
            checkpoint=checkpoint,
            device=ctx.device,
            progress=ctx.progress,
        )
        try:
            history = trainer.fit(splits.train, splits.test)
        except DivergedError as err:  # the trainer has marked the run diverged in the store
            return TrainResult(trainer.history, run_id, str(err), time.perf_counter() - t0, {})
        final = dict(history.last)
        if eval_train:
            ev = evaluate(model, splits.train, cfg.eval_batch_size, ctx.device)
            final.update(train_eval_loss=ev["loss"], train_eval_acc=ev["acc"])
        wall = time.perf_counter() - t0
        ctx.store.finish_run(run_id, "completed", results={**final, "wall_s": wall})
    return TrainResult(history, run_id, None, wall, final)
