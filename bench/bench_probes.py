"""Overhead of the gradient-flow and signal-propagation probes on training steps.

A ResNet-20 (1-D, MNIST-1D-sized batches of 128) takes SGD steps with and without both probes
attached; runs alternate so load changes hit both alike, and the medians are compared.
Target: at most 5% more time per step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from skiplab.diagnostics import GradientFlowProbe, SignalPropagationProbe
from skiplab.models import create_model

ROUNDS = 7
STEPS = 10


def _steps(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    t0 = time.perf_counter()
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / STEPS


def measure(split: bool, every: int, grad_every: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 1, 40), torch.randint(0, 10, (128,))
    _steps(model, opt, x, y)  # warm-up
    bare, probed = [], []
    for _ in range(ROUNDS):
        bare.append(_steps(model, opt, x, y))
        grad = GradientFlowProbe(split=split, every=grad_every)
        sig = SignalPropagationProbe(every=every)
        with grad.attached(model), sig.attached(model):
            probed.append(_steps(model, opt, x, y))
    b, p = statistics.median(bare), statistics.median(probed)
    return {"bare_ms": 1e3 * b, "probed_ms": 1e3 * p, "ratio": p / b}


def main() -> list[dict[str, Any]]:
    rows = []
    for split, every, grad_every, label in (
        (False, 10, 10, "both recording every 10th step"),
        (False, 10, 1, "grad norms every step, signal every 10th"),
        (False, 1, 1, "grad norms and signal every step"),
        (True, 10, 1, "+ shortcut/branch split every step"),
    ):
        m = measure(split, every, grad_every)
        rows.append(
            {
                "benchmark": f"probes on ResNet-20 training step ({label})",
                "ratio": m["ratio"],
                "target": "<= 1.05",
                "detail": f"{m['probed_ms']:.1f} ms vs {m['bare_ms']:.1f} ms per step (median of {ROUNDS})",
            }
        )
    return rows


if __name__ == "__main__":
    for r in main():
        print(r)
