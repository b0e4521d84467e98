"""What ``skiplab.diagnose`` costs: peak memory on a ResNet-50 with a (16, 3, 224, 224) batch, and
each probe's time as a multiple of one forward + backward of the same model on the same batch.

Memory: ``diagnose(model, x, target=y)`` (every probe; the landscape is the CLI's, not run here)
in a fresh subprocess, its peak resident set size (``ru_maxrss``) read when it returns; the
reference is another fresh subprocess doing one forward + backward of the same model on the same
batch. Target: under 4 GB.

Time: per probe, ``Diagnosis.wall_s[probe]`` over the median of three forward + backward passes
timed in the same process after it (ratios, reported). The same for a 2-layer GPT-2 built from
its ``transformers`` config (width 32, two sequences of 8 tokens), so transformer costs show
too. Every subprocess runs single-threaded (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``):
the development machine has 2 cores shared with other jobs.

``python -m bench bench_diagnose``; one worker: ``python -m bench.bench_diagnose --worker
resnet50-diagnose`` (prints one JSON line).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: torchvision's ``resnet50()`` parameter count (1000 classes)
RESNET50_PARAMS = 25_557_032
BATCH = (16, 3, 224, 224)
TARGET_GB = 4.0


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (v1.5: the stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's ``resnet50()`` written out: stem, bottleneck stages [3, 4, 6, 3] of widths
    64/128/256/512 (x4 expansion), global pooling, 1000 classes; its init (Kaiming fan-out for
    convolutions, BatchNorm weight 1 and bias 0)."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(64, layers[0], 1)
        self.layer2 = self._stage(128, layers[1], 2)
        self.layer3 = self._stage(256, layers[2], 2)
        self.layer4 = self._stage(512, layers[3], 2)
        self.fc = nn.Linear(512 * Bottleneck.expansion, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [Bottleneck(self.inplanes, planes, stride)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet50_entry() -> tuple[nn.Module, Any, torch.Tensor]:
    """(ResNet-50, its (16, 3, 224, 224) batch, 1000-class labels), seeded."""
    torch.manual_seed(0)
    model = ResNet50()
    n = sum(p.numel() for p in model.parameters())
    if n != RESNET50_PARAMS:
        raise AssertionError(f"ResNet-50 replica has {n} parameters, not {RESNET50_PARAMS}")
    return model, torch.randn(*BATCH), torch.randint(0, 1000, (BATCH[0],))


def gpt2_entry() -> tuple[nn.Module, Any, None]:
    """A 2-layer GPT-2 from its config (the test zoo's: width 32, 2 heads, 100 tokens), two
    sequences of 8 token ids; next-token loss (no target)."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    return transformers.GPT2LMHeadModel(cfg), (ids,), None


ENTRIES = {"resnet50": resnet50_entry, "gpt2": gpt2_entry}


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def _forward_backward(model: nn.Module, inputs: Any, target: Any) -> None:
    from skiplab.diagnostics._inputs import Inputs, infer_task

    ins = Inputs.of(inputs)
    task = infer_task(model, ins, target=target)
    model.zero_grad(set_to_none=True)
    task.loss(ins(model), ins).backward()
    model.zero_grad(set_to_none=True)


def worker(name: str) -> dict[str, Any]:
    """One measurement, run in a fresh process: ``<model>-fb`` (one forward + backward, its peak
    RSS) or ``<model>-diagnose`` (``diagnose``'s peak RSS and probe times, then the median
    forward + backward time in the same process)."""
    import skiplab

    torch.set_num_threads(1)
    model_name, what = name.rsplit("-", 1)
    model, inputs, target = ENTRIES[model_name]()
    model.train()  # how a model at init is probed (and how it trains)
    base_gb = _peak_gb()
    if what == "fb":
        t0 = time.perf_counter()
        _forward_backward(model, inputs, target)
        return {"peak_gb": _peak_gb(), "base_gb": base_gb, "fb_s": time.perf_counter() - t0}
    marks: dict[str, float] = {}  # probe -> peak RSS before it ran (the earlier ones' peak)

    def log(message: str) -> None:
        marks[message.removeprefix("diagnose: ")] = _peak_gb()

    t0 = time.perf_counter()
    diag = skiplab.diagnose(model, inputs, target=target, log=log)
    total = time.perf_counter() - t0
    peak = _peak_gb()
    _forward_backward(model, inputs, target)  # warm-up
    fb = []
    for _ in range(3):
        t0 = time.perf_counter()
        _forward_backward(model, inputs, target)
        fb.append(time.perf_counter() - t0)
    jac = diag.jacobian or {}
    return {
        "peak_gb": peak,
        "base_gb": base_gb,
        "peak_before_gb": marks,
        "total_s": total,
        "wall_s": diag.wall_s,
        "errors": diag.errors,
        "fb_s": statistics.median(fb),
        "blocks": len(diag.blocks),
        "jacobian_iterations": sum(jac.get("iterations", [])) + jac.get("network_iterations", 0),
        "jacobian_converged": sum(jac.get("converged", [])) + bool(jac.get("network_converged")),
        "jacobian_norms": len(jac.get("converged", [])) + ("network" in jac),
    }


def _run_worker(name: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_diagnose", "--worker", name],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _probe_rows(label: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for probe, seconds in d["wall_s"].items():
        rows.append(
            {
                "benchmark": f"diagnose probe {probe} on {label}",
                "ratio": seconds / d["fb_s"],
                "target": "reported",
                "detail": f"{seconds:.2f} s vs {d['fb_s']:.3f} s forward+backward"
                + (f"; error {d['errors'][probe]}" if probe in d["errors"] else ""),
            }
        )
    rows.append(
        {
            "benchmark": f"diagnose all probes on {label}",
            "ratio": d["total_s"] / d["fb_s"],
            "target": "reported",
            "detail": f"{d['total_s']:.1f} s in all ({d['blocks']} blocks; "
            f"{d['jacobian_norms']} spectral norms, {d['jacobian_converged']} converged, in "
            f"{d['jacobian_iterations']} Lanczos iterations)",
        }
    )
    return rows


def main() -> list[dict[str, Any]]:
    ref = _run_worker("resnet50-fb")
    diag = _run_worker("resnet50-diagnose")
    label = "ResNet-50 (16×3×224²)"
    rows = [
        {
            "benchmark": f"diagnose peak RSS on {label}, GB",
            "ratio": diag["peak_gb"],
            "target": f"< {TARGET_GB:g} GB",
            "detail": f"{diag['peak_gb'] / ref['peak_gb']:.2f}x the {ref['peak_gb']:.2f} GB of "
            f"one forward+backward; {diag['base_gb']:.2f} GB before diagnose; peak so far "
            "when each probe started: "
            + ", ".join(f"{k} {v:.2f}" for k, v in diag["peak_before_gb"].items()),
        },
        {
            "benchmark": f"diagnose peak RSS / forward+backward, {label}",
            "ratio": diag["peak_gb"] / ref["peak_gb"],
            "target": "reported",
            "detail": f"{diag['peak_gb']:.2f} vs {ref['peak_gb']:.2f} GB",
        },
    ]
    rows += _probe_rows(label, diag)
    rows += _probe_rows("GPT-2 2 layers (2×8 tokens)", _run_worker("gpt2-diagnose"))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2])))
    else:
        for r in main():
            print(r)
