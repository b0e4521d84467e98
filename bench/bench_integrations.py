"""What the training-loop callbacks cost: a Lightning fit with ``SkipDiagnostics`` against the
same fit without it.

A 1-D ResNet-20 (9 residual blocks, batch norm) on batches of 64 MNIST-1D-sized inputs, 40
optimizer steps per fit; the callback measures every 10th step (4 measurements) and every step.
Fits alternate with and without the callback so load changes hit both alike; medians of the
rounds are compared. Single-threaded. Target: reported (a measurement is one recorded forward
and backward pass for the split plus one forward pass for the signal statistics, on the step's
batch).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch
import torch.nn.functional as F

ROUNDS = 3
STEPS = 40


def _fit(every: int | None, root: str) -> float:
    import lightning as L

    from skiplab.integrations.lightning import SkipDiagnostics
    from skiplab.models import create_model

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = create_model("resnet20", dim=1, in_channels=1, num_classes=10)

        def training_step(self, batch: Any, _idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64 * STEPS, 1, 40),
                                          torch.randint(0, 10, (64 * STEPS,)))  # fmt: skip
    callbacks = [SkipDiagnostics(every_n_steps=every, module="net")] if every else []
    trainer = L.Trainer(
        max_steps=STEPS, accelerator="cpu", logger=False, callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(data, batch_size=64)
    t0 = time.perf_counter()
    trainer.fit(Classifier(), loader)
    return time.perf_counter() - t0


def main() -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        _fit(None, root)  # warm-up: imports, first-call allocations
        times: dict[Any, list[float]] = {None: [], 10: [], 1: []}
        for _ in range(ROUNDS):
            for every in times:
                times[every].append(_fit(every, root))
    bare = statistics.median(times[None])
    for every in (10, 1):
        t = statistics.median(times[every])
        rows.append(
            {
                "benchmark": f"Lightning fit with SkipDiagnostics every {every} step(s) / without",
                "ratio": t / bare,
                "target": "reported",
                "detail": f"{t:.2f} s vs {bare:.2f} s for {STEPS} steps of ResNet-20 (1-D), "
                f"batch 64, median of {ROUNDS}",
            }
        )
    return rows


if __name__ == "__main__":
    for r in main():
        print(r)
