"""Training: a deterministic Trainer over a task protocol, with checksummed checkpoints, exact
resume and DDP."""

from skiplab.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)
from skiplab.train.distributed import DistInfo, init_distributed
from skiplab.train.tasks import (
    Classification,
    NodeClassification,
    Segmentation,
    SequenceRegression,
    SequenceToSequence,
    StepLoss,
    StreamClassification,
    Task,
)
from skiplab.train.trainer import (
    DivergedError,
    EarlyStopping,
    History,
    TrainConfig,
    Trainer,
    evaluate,
    lr_factor,
)

__all__ = [
    "CheckpointError",
    "Classification",
    "DistInfo",
    "DivergedError",
    "EarlyStopping",
    "History",
    "NodeClassification",
    "Segmentation",
    "SequenceRegression",
    "SequenceToSequence",
    "StepLoss",
    "StreamClassification",
    "Task",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "init_distributed",
    "load_checkpoint",
    "load_latest_checkpoint",
    "lr_factor",
    "previous_path",
    "save_checkpoint",
]
