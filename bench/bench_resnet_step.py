"""A ResNet-20 training step: skiplab's parts against a hand-written PyTorch ResNet-20.

He et al. 2015's CIFAR ResNet-20 (3x3 stem, 3 stages of 3 basic blocks with 16/32/64 channels,
option-A zero-padding shortcuts, post-activation) is written out below with nothing but
``torch.nn``; skiplab's ``resnet20`` is built from ``Residual``, ``make_shortcut`` and friends.
Both take SGD steps on a batch of 128 32x32 images; runs alternate so load changes hit both
alike, and the fastest round of each is compared (on a shared machine the minimum is the
estimate least disturbed by other processes). Target: skiplab / hand-written <= 1.02 (the parts cost
nothing). Also measured: the speed-up of ``channels_last`` and of ``torch.compile`` on the
skiplab model, and the achieved FLOP/s of the step as a fraction of this machine's float32
matmul peak, measured in the same run.

Run alone: ``python -m bench bench_resnet_step``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skiplab.models import create_model

BATCH = 128
ROUNDS = 7
STEPS = 2


class _HandShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (He et al. 2015, CIFAR)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.pad, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad))


class _HandBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _HandShortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(self.shortcut(x) + out)


class HandResNet20(nn.Module):
    """The straightforward PyTorch ResNet-20 a reader would write from the paper."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(_HandBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.conv(x))))  # (B, 64, 8, 8)
        return self.fc(x.mean((2, 3)))


def _trainer(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def steps() -> float:
        t0 = time.perf_counter()
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return (time.perf_counter() - t0) / STEPS

    return steps


def _step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def matmul_peak(n: int = 1024, repeats: int = 10) -> float:
    """Best float32 FLOP/s of an ``n x n`` matmul over ``repeats`` tries (2 n^3 per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _alternate(fns: dict[str, Callable[[], float]]) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm-up (allocations, compilation)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(ROUNDS):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: min(v) for k, v in times.items()}


def main() -> list[dict[str, Any]]:
    torch.manual_seed(0)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    hand = HandResNet20()
    ours = create_model("resnet20")
    n_hand = sum(p.numel() for p in hand.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    assert n_hand == n_ours, f"not the same network: {n_hand} vs {n_ours} parameters"
    ours_cl = create_model("resnet20").to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    t = _alternate(
        {
            "hand": _trainer(hand, x, y),
            "skiplab": _trainer(ours, x, y),
            "channels_last": _trainer(ours_cl, x_cl, y),
        }
    )
    flops = _step_flops(create_model("resnet20"), x, y)
    peak = matmul_peak()
    achieved = flops / t["skiplab"]
    rows = [
        {
            "benchmark": "resnet20 step: skiplab / hand-written",
            "ratio": t["skiplab"] / t["hand"],
            "target": "<= 1.02",
            "detail": f"{1e3 * t['skiplab']:.0f} ms vs {1e3 * t['hand']:.0f} ms per step "
            f"(batch {BATCH}, 32x32, {n_ours} params)",
        },
        {
            "benchmark": "resnet20 step: channels_last speed-up",
            "ratio": t["skiplab"] / t["channels_last"],
            "target": "report (>1 faster)",
            "detail": f"{1e3 * t['channels_last']:.0f} ms per step",
        },
        {
            "benchmark": "resnet20 step: FLOP/s / fp32 matmul peak",
            "ratio": achieved / peak,
            "target": "report",
            "detail": f"{flops / 1e9:.2f} GFLOP per step, {achieved / 1e9:.1f} GFLOP/s "
            f"of {peak / 1e9:.1f} GFLOP/s (1024^2 matmul, {torch.get_num_threads()} threads)",
        },
    ]
    try:
        compiled = torch.compile(create_model("resnet20"))
        tc = _alternate({"skiplab": _trainer(ours, x, y), "compiled": _trainer(compiled, x, y)})
        rows.append(
            {
                "benchmark": "resnet20 step: torch.compile speed-up",
                "ratio": tc["skiplab"] / tc["compiled"],
                "target": "report (>1 faster)",
                "detail": f"{1e3 * tc['compiled']:.0f} ms vs {1e3 * tc['skiplab']:.0f} ms eager",
            }
        )
    except Exception as err:  # no C++ compiler for inductor, for example
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        rows.append(
            {
                "benchmark": "resnet20 step: torch.compile speed-up",
                "ratio": float("nan"),
                "target": "report (>1 faster)",
                "detail": f"torch.compile unavailable here: {first[:80]}",
            }
        )
    return rows


if __name__ == "__main__":
    for row in main():
        print(f"{row['benchmark']:<44} {row['ratio']:>7.3f}  {row['target']:<20} {row['detail']}")
