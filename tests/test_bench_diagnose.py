"""A smoke test of ``bench/bench_diagnose.py``'s code (the benchmark itself runs with ``python -m
bench bench_diagnose``, never in ``make test``): its ResNet-50 is torchvision's, and its rows
are well formed."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_diagnose


def test_resnet50_replica_and_rows():
    model, x, y = bench_diagnose.resnet50_entry()  # asserts torchvision's 25,557,032 parameters
    assert x.shape == (16, 3, 224, 224) and y.shape == (16,)
    assert len([m for m in model.modules() if isinstance(m, bench_diagnose.Bottleneck)]) == 16
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    fake = {
        "wall_s": {"signal": 2.0, "lesion": 5.0},
        "errors": {"lesion": "no loss"},
        "fb_s": 0.5,
        "total_s": 8.0,
        "blocks": 16,
        "jacobian_norms": 17,
        "jacobian_converged": 17,
        "jacobian_iterations": 300,
    }
    rows = bench_diagnose._probe_rows("M", fake)
    assert [r["ratio"] for r in rows] == [4.0, 10.0, 16.0]
    assert rows[0]["benchmark"] == "diagnose probe signal on M"
    assert "no loss" in rows[1]["detail"]
    assert all(set(r) == {"benchmark", "ratio", "target", "detail"} for r in rows)
