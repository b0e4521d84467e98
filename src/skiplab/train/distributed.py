"""torch.distributed for skiplab: one process per device under ``torchrun``.

``torchrun --nproc-per-node=N`` starts N copies of a command with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` in their environment. :func:`init_distributed` reads
them and joins the process group (gloo on CPU, nccl on CUDA); without them it does nothing, so
the same command runs on one process too.

Sharding: every rank draws the *same* seeded permutation of the training set (the generator
is seeded identically), cuts each global batch of ``batch_size`` examples into ``world_size``
contiguous shards and takes its own. DistributedDataParallel averages the shard gradients, so
with shards of equal size a step equals a single-process step on the whole global batch
(BatchNorm aside, whose statistics are per shard unless converted to SyncBatchNorm on CUDA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the store, checkpoints, TensorBoard files and the report."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str | torch.device = "cpu") -> DistInfo:
    """Join the process group torchrun describes in the environment, if any.

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"`` (nccl; each rank takes ``cuda:LOCAL_RANK``).

    Returns:
        This process's :class:`DistInfo`; ``world_size == 1`` without torchrun.

    Raises:
        ValueError: a device type with no backend (the message lists the supported ones).
    """
    device = torch.device(device)
    world = env_world_size()
    if world <= 1:
        return DistInfo(device=device)
    if device.type not in BACKENDS:
        raise ValueError(
            f"distributed training supports devices {sorted(BACKENDS)}, got {device.type!r}"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _join(BACKENDS[device.type], world)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def _join(backend: str, world: int) -> None:
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None or "MASTER_ADDR" not in os.environ:
        dist.init_process_group(backend=backend)
        return
    # After `torchrun --max-restarts` restarts the workers, the agent's key-value store still
    # holds the dead attempt's gloo addresses under the same keys, and the new ranks connect to
    # ports nobody listens on (measured: "connectFullMesh failed ... Connection refused", then
    # a hang). A prefix per attempt gives every attempt fresh keys.
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size=world,
        is_master=False,
        timeout=timedelta(minutes=10),
    )
    dist.init_process_group(
        backend=backend,
        store=dist.PrefixStore(f"skiplab/attempt{restart}/", store),
        rank=int(os.environ["RANK"]),
        world_size=world,
    )


def current() -> DistInfo:
    """The process group already joined (rank 0 of 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of one global batch of ``indices``.

    Shapes:
        - indices: ``(B,)``; returns ``(ceil or floor of B / world_size,)``
    """
    if world_size == 1:
        return indices
    return indices.tensor_split(world_size)[rank]


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
