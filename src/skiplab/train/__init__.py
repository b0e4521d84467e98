"""Training: a deterministic Trainer with atomic checkpoints and exact resume."""

from skiplab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from skiplab.train.trainer import (
    DivergedError,
    History,
    TrainConfig,
    Trainer,
    evaluate,
    lr_factor,
)

__all__ = [
    "CheckpointError",
    "DivergedError",
    "History",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "load_checkpoint",
    "lr_factor",
    "save_checkpoint",
]
