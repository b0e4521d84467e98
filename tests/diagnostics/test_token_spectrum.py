import numpy as np
import pytest
import torch

from skiplab import _plot
from skiplab.diagnostics.token_spectrum import (
    TokenSpectrumProbe,
    low_fraction,
    plot_token_spectra,
    power_spectrum,
    residual_spectra,
)
from skiplab.models.transformer import Transformer, TransformerConfig


def _encoder(n_layer: int = 2) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=None, in_features=1, out_features=3, block_size=16,
                            n_layer=n_layer, n_head=2, n_embd=8, causal=False, readout="mean")  # fmt: skip
    return Transformer(cfg)


def test_power_spectrum_sums_to_the_energy_and_finds_the_frequency():
    t = torch.arange(40, dtype=torch.float64)
    h = torch.cos(2 * torch.pi * 10 * t / 40).view(1, 40, 1)  # 0.25 cycles/token
    p = power_spectrum(h)
    assert np.isclose(p.sum(), 40 * h.square().sum().item())  # Parseval, one-sided
    assert int(np.argmax(p)) == 10
    assert low_fraction(p, 40) < 1e-12
    const = torch.ones(2, 40, 3)
    assert np.isclose(low_fraction(power_spectrum(const), 40), 1.0)
    odd = torch.randn(3, 41, 2, dtype=torch.float64)  # no Nyquist bin: every bin but DC doubled
    assert np.isclose(power_spectrum(odd).sum(), 41 * odd.square().sum().item() / 6)


def test_low_fraction_without_dc_ignores_the_mean():
    t = torch.arange(40, dtype=torch.float64)
    h = (5.0 + torch.cos(2 * torch.pi * 10 * t / 40)).view(1, 40, 1)
    p = power_spectrum(h)
    assert low_fraction(p, 40) > 0.9
    assert low_fraction(p, 40, dc=False) < 1e-12


def test_residual_spectra_names_sublayers_and_splits_the_gradient():
    model = _encoder()
    x, y = torch.randn(4, 16, 1), torch.tensor([0, 1, 2, 0])
    names = ["blocks.0.attn", "blocks.1.attn"]
    m = residual_spectra(model, x, y, names)
    assert m.names == names and m.length == 16
    assert len(m.stream) == len(m.branch) == 2 and len(m.stream[0]) == 9
    assert all(0 <= v <= 1 for v in m.low_stream + m.low_branch + m.low_stream_ac)
    assert all(g > 0 for g in m.grad_skip + m.grad_branch)
    assert all(p.grad is None for p in model.parameters())  # no parameter gradient kept
    # the skip's share is dL/dy at the sublayer output, measured here without the probe
    outs = []
    handle = model.blocks[1].attn.register_forward_hook(lambda _m, _a, out: outs.append(out))
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), outs)
    handle.remove()
    assert np.isclose(m.grad_skip[1], float(g.flatten(1).norm(dim=1).mean()))
    default = residual_spectra(model, x, y)
    assert default.names == [f"blocks.{i}.{s}" for i in range(2) for s in ("attn", "mlp")]


def test_the_probe_refuses_a_module_that_is_not_a_residual_and_leaves_no_hook():
    model = _encoder()
    probe = TokenSpectrumProbe(["blocks.0.attn.branch"])
    with pytest.raises(TypeError, match=r"'blocks.0.attn.branch' is Sequential"):
        probe.attach(model)
    assert probe.num_hooks == 0 and probe.model is None
    with pytest.raises(TypeError, match="not a module of the model"):
        TokenSpectrumProbe(["blocks.9.attn"]).attach(model)
    probe = TokenSpectrumProbe(["blocks.0.attn"])
    with probe.attached(model):
        assert probe.num_hooks == 2
    assert probe.num_hooks == 0


def test_plot_token_spectra_draws_three_panels(tmp_path):
    model = _encoder()
    x, y = torch.randn(4, 16, 1), torch.tensor([0, 1, 2, 0])
    m = residual_spectra(model, x, y, ["blocks.0.attn", "blocks.1.attn"])
    fig, axes = _plot.subplots(1, 3)
    plot_token_spectra(axes[0], {"trained": [m, m], "init": [m]})
    assert all(ax.get_legend() is not None for ax in axes[0])
    _plot.save(fig, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000
