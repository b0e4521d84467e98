"""Token spectra over a grid of image patches, and Park & Kim's high-frequency change."""

import numpy as np
import pytest
import torch

from skiplab.diagnostics.token_spectrum import (
    high_frequency_change,
    log_amplitude,
    low_fraction,
    power_spectrum,
    residual_spectra,
)
from skiplab.models.transformer import Transformer, TransformerConfig


def _checkerboard(rows: int, cols: int) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return ((-1.0) ** (r + c)).double().reshape(1, rows * cols, 1)  # (pi, pi): the top corner


def test_grid_spectrum_sums_to_the_energy_and_bins_by_radius():
    h = torch.randn(3, 16, 5, dtype=torch.float64)
    p = power_spectrum(h, grid=(4, 4))
    assert len(p) == 4  # radii 0, 1/4, 1/2 (and the corner's 0.71 -> 3/4)
    assert np.isclose(p.sum(), 16 * h.square().sum().item() / 15)  # Parseval
    const = torch.ones(2, 16, 3)
    assert np.isclose(low_fraction(power_spectrum(const, (4, 4)), 4), 1.0)
    board = power_spectrum(_checkerboard(4, 4), (4, 4))
    assert int(np.argmax(board)) == 3 and np.isclose(board[:3].sum(), 0.0)
    rows = torch.cos(torch.pi * torch.arange(4)).double().repeat_interleave(4).view(1, 16, 1)
    assert int(np.argmax(power_spectrum(rows, (4, 4)))) == 2  # (1/2, 0): radius 1/2
    with pytest.raises(ValueError, match="does not hold"):
        power_spectrum(h, grid=(3, 5))


def test_high_frequency_change_is_negative_for_smoothing_and_positive_for_sharpening():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 40, 4, generator=g, dtype=torch.float64)
    smooth = (x + x.roll(1, dims=1) + x.roll(-1, dims=1)) / 3  # a 3-tap box filter: low-pass
    sharp = x - smooth  # its complement: high-pass
    assert high_frequency_change(x, smooth) < -1.0
    assert high_frequency_change(x, sharp) > 0.2
    assert abs(high_frequency_change(x, 3.0 * x)) < 1e-4  # a gain moves every bin alike
    a = log_amplitude(x)
    assert a.shape == (21,)  # DC .. Nyquist
    img = torch.randn(4, 36, 2, generator=g, dtype=torch.float64)
    assert log_amplitude(img, (6, 6)).shape == (4,)  # the diagonal (k, k), k = 0..3
    blurred = img.reshape(4, 6, 6, 2)
    blurred = (blurred + blurred.roll(1, 1) + blurred.roll(1, 2) + blurred.roll((1, 1), (1, 2))) / 4
    assert high_frequency_change(img, blurred.reshape(4, 36, 2), (6, 6)) < -1.0


def test_residual_spectra_on_a_grid_of_patches():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=None, in_features=4, out_features=3, block_size=16,
                            n_layer=2, n_head=2, n_embd=8, causal=False, readout="mean")  # fmt: skip
    model = Transformer(cfg)
    x, y = torch.randn(4, 16, 4), torch.tensor([0, 1, 2, 0])
    m = residual_spectra(model, x, y, ["blocks.0.attn", "blocks.1.attn"], cutoff=0.25, grid=(4, 4))
    assert m.grid == [4, 4] and m.length == 4
    assert all(len(s) == 4 for s in m.stream + m.branch)
    assert all(0 <= v <= 1 for v in m.low_stream + m.low_branch)
    assert len(m.hf_change) == 2 and all(np.isfinite(m.hf_change))
    flat = residual_spectra(model, x, y, ["blocks.0.attn"])
    assert flat.grid == [] and flat.length == 16 and len(flat.stream[0]) == 9
