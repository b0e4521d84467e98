"""C16 at tiny scale: spectra over token positions, gradient split and warm-up runs."""

import numpy as np
import torch

from skiplab.claims._base import Evidence, reproduce, select_claims
from skiplab.claims.c16_transformer_lowpass import low_fraction, power_spectrum
from skiplab.store import Store


def test_power_spectrum_sums_to_the_energy_and_finds_the_frequency():
    t = torch.arange(40, dtype=torch.float64)
    h = torch.cos(2 * torch.pi * 10 * t / 40).view(1, 40, 1)  # 0.25 cycles/token
    p = power_spectrum(h)
    assert np.isclose(p.sum(), 40 * h.square().sum().item())  # Parseval, one-sided
    assert int(np.argmax(p)) == 10
    assert low_fraction(p, 40) < 1e-12
    const = torch.ones(2, 40, 3)
    assert np.isclose(low_fraction(power_spectrum(const), 40), 1.0)


def test_c16_tiny_attention_averages_at_init(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    (claim,) = select_claims("C16")
    (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
    assert outcome.status in ("holds", "fails", "inconclusive")
    ev = Evidence.from_dict(store.latest_verdict("C16", "tiny").evidence)
    # at init (N(0, 0.02) weights) attention is near-uniform: its output is close to the mean
    # over positions, almost pure DC, while the stream holds the varying signal
    assert ev.numbers["low_branch_init"] > 0.9 > ev.numbers["low_stream_init"]
    trained = ev.series["probes"]["trained"][0]
    assert all(g > 0 for g in trained["grad_skip"] + trained["grad_branch"])
    assert set(ev.series["warm"]) == {
        "post_ln|False",
        "post_ln|True",
        "pre_ln|False",
        "pre_ln|True",
    }
    assert claim.figures(ev, tmp_path)
