"""Cost of one Lanczos iteration for a ResNet-56's Jacobian spectral norm, against one forward
and backward pass on the same input (CPU, one CIFAR-sized image).

One iteration is a JVP (forward mode) and a VJP through the saved graph; the target is a small
multiple (<= 4x) of one forward + backward.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from skiplab.diagnostics import spectral_norm
from skiplab.diagnostics._probe import batch_statistics
from skiplab.models import create_model


def main() -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = create_model("resnet56")
    x = torch.randn(1, 3, 32, 32)
    with batch_statistics(model):
        fb = []
        for _ in range(5):
            xi = x.clone().requires_grad_(True)
            t0 = time.perf_counter()
            model(xi).sum().backward()
            fb.append(time.perf_counter() - t0)
        spectral_norm(model, x, iters=1, tol=0.0)  # warm-up
        t0 = time.perf_counter()
        spectral_norm(model, x, iters=1, tol=0.0)  # the one-off vjp setup + one iteration
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = spectral_norm(model, x, iters=11, tol=0.0)
        per_iter = (time.perf_counter() - t0 - one) / 10  # the setup cancels out
    base = statistics.median(fb)
    return [
        {
            "benchmark": "Jacobian Lanczos iteration, ResNet-56",
            "ratio": per_iter / base,
            "target": "small multiple (<= 4)",
            "detail": f"{1e3 * per_iter:.1f} ms per iteration (jvp + vjp; one-off setup "
            f"{1e3 * one:.0f} ms incl. one iteration) vs {1e3 * base:.1f} ms forward+backward; "
            f"sigma {res.sigma:.3g}",
        }
    ]


if __name__ == "__main__":
    for r in main():
        print(r)
