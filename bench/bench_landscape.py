"""A 2-D loss-landscape plane: skiplab against the ``loss-landscapes`` package, same work.

Same model (ResNet-20, 1-D, eval mode), same fixed batch (128 MNIST-1D-sized examples), same
grid (``STEPS x STEPS`` points, filter-normalised directions). ``loss_landscapes.random_plane``
moves the model's parameters in place with a Python loop over them and evaluates point by
point; it is timed as shipped (autograd on, as its ``Loss`` metric leaves it) and under
``torch.no_grad``. skiplab moves the weights with fused ``_foreach`` calls under ``no_grad``
(and, reported too, its ``vmap(functional_call)`` path). Each variant runs in a fresh
subprocess so its peak memory (peak RSS above the RSS after setup, from Linux's /proc
counters) is its own. Target: ours faster (ratio = ours / theirs < 1). The forward passes
dominate both, so the gain is the per-point overhead only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

STEPS = 15


def _setup() -> tuple[Any, Any, Any]:
    import torch

    from skiplab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1).eval()
    with torch.no_grad():
        # loss-landscapes divides by each 1-D parameter's entries: BN shifts at their init
        # value 0 make it raise ZeroDivisionError, so both sides get small nonzero ones
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.01 * torch.randn_like(p))
    x, y = torch.randn(128, 1, 40), torch.randint(0, 10, (128,))
    return model, x, y


def run_one(which: str) -> dict[str, float]:
    import loss_landscapes
    import torch
    import torch.nn.functional as F
    from loss_landscapes.metrics import Loss

    from skiplab.diagnostics import loss_plane

    model, x, y = _setup()  # imports and setup before the clock and the memory baseline
    with torch.no_grad():
        model(x)  # warm-up: allocator and kernels, for both variants alike
    base = _reset_peak()
    t0 = time.perf_counter()
    if which == "ours":
        loss_plane(model, (x,), y, loss_fn=F.cross_entropy, span=1.0, steps=STEPS)
    elif which == "ours_vmap":
        loss_plane(model, (x,), y, loss_fn=F.cross_entropy, span=1.0, steps=STEPS, chunk=8)
    elif which == "loss_landscapes_as_shipped":
        loss_landscapes.random_plane(
            model, Loss(F.cross_entropy, x, y), distance=1, steps=STEPS,
            normalization="filter", deepcopy_model=True,
        )  # fmt: skip
    else:
        with torch.no_grad():
            loss_landscapes.random_plane(
                model, Loss(F.cross_entropy, x, y), distance=1, steps=STEPS,
                normalization="filter", deepcopy_model=True,
            )  # fmt: skip
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": (_status_kib("VmHWM") - base) / 1024}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the process's peak RSS (Linux: write 5 to clear_refs) and return the current RSS,
    so that VmHWM afterwards is the peak of what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def _spawn(which: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_landscape", "--one", which],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> list[dict[str, Any]]:
    ours, theirs = _spawn("ours"), _spawn("loss_landscapes")
    vmap, shipped = _spawn("ours_vmap"), _spawn("loss_landscapes_as_shipped")
    return [
        {
            "benchmark": f"loss plane {STEPS}x{STEPS}: vs loss-landscapes as shipped (grad on)",
            "ratio": ours["seconds"] / shipped["seconds"],
            "target": "< 1 (ours faster)",
            "detail": f"ours {ours['seconds']:.2f} s vs {shipped['seconds']:.2f} s; its peak "
            f"memory {shipped['peak_mib']:.1f} MiB",
        },
        {
            "benchmark": f"loss plane {STEPS}x{STEPS}: our vmap path (chunk 8) / in-place path",
            "ratio": vmap["seconds"] / ours["seconds"],
            "target": "reported",
            "detail": f"vmap {vmap['seconds']:.2f} s, peak {vmap['peak_mib']:.1f} MiB",
        },
        {
            "benchmark": f"loss plane {STEPS}x{STEPS}: vs loss-landscapes under no_grad",
            "ratio": ours["seconds"] / theirs["seconds"],
            "target": "< 1 (ours faster)",
            "detail": f"ours {ours['seconds']:.2f} s vs loss-landscapes {theirs['seconds']:.2f} s",
        },
        {
            "benchmark": f"loss plane {STEPS}x{STEPS}: peak memory vs no_grad loss-landscapes",
            "ratio": ours["peak_mib"] / max(theirs["peak_mib"], 1e-3),
            "target": "reported",
            "detail": f"peak RSS growth ours {ours['peak_mib']:.1f} MiB vs loss-landscapes "
            f"{theirs['peak_mib']:.1f} MiB",
        },
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2])))
    else:
        for r in main():
            print(r)
