"""Frequency content over token positions of a residual stream and of the branch it adds.

In a residual sublayer ``y_l = x_l + F(x_l)`` over a sequence ``(B, T, C)`` both the stream
``x_l`` and the branch output ``F(x_l)`` are signals along the positions ``T``. The FFT along
``T`` gives each a power spectrum ``|H(f)|^2`` (averaged over batch and channels); the share of
energy at low frequencies says how global (slowly varying) the signal is (Wang et al. 2022,
"Anti-Oversmoothing in Deep Vision Transformers via the Fourier Domain"; Park & Kim 2022, "How
Do Vision Transformers Work?"). The FFT is linear, so ``Y_l(f) = X_l(f) + F_l(f)``.

Image patches as tokens lie on a ``(rows, cols)`` grid (``T = rows * cols`` in raster order):
with ``grid`` given, the FFT is two-dimensional and the power is binned by radial frequency
``|f| = sqrt(f_r^2 + f_c^2)`` (cycles per token) to the nearest ``1 / max(rows, cols)``.

Park & Kim measure something else beside the energy split: the log amplitude of the
Fourier-transformed feature map at the highest frequency relative to the zero frequency
(their Fig. 2a and Fig. 8, averaged over batch and channels), and how it changes across a
sublayer ``x_l -> y_l``: a drop means the sublayer takes high frequencies out of the stream
(a low-pass filter), a rise that it adds them. :func:`high_frequency_change` is that change.

:class:`TokenSpectrumProbe` records ``x_l``, ``F(x_l)`` and ``y_l`` at named residual sublayers
during one forward pass and gives their spectra and the gradient each path carries back:
along the skip ``dL/dy_l`` and through the branch ``J_F^T dL/dy_l``. :func:`residual_spectra`
runs it once on a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.diagnostics._probe import AbstractProbe
from skiplab.nn import Residual

__all__ = [
    "CUTOFF",
    "TokenSpectra",
    "TokenSpectrumProbe",
    "high_frequency_change",
    "log_amplitude",
    "low_fraction",
    "plot_token_spectra",
    "power_spectrum",
    "residual_spectra",
]

CUTOFF = 0.125  # cycles per token: "low" = periods of 8 tokens or longer


@dataclass
class TokenSpectra:
    """What :func:`residual_spectra` measures, per probed sublayer (in ``names`` order)."""

    names: list[str]  # qualified names of the residual sublayers
    length: int  # positions T of the sequence (a grid: max(rows, cols), bins are k / length)
    stream: list[list[float]]  # one-sided power spectrum of the stream x_l entering it
    branch: list[list[float]]  # ... and of its branch output F(x_l)
    low_stream: list[float]  # energy fraction at <= cutoff cycles/token
    low_branch: list[float]
    low_stream_ac: list[float]  # the same without the DC bin
    low_branch_ac: list[float]
    grad_skip: list[float]  # mean per-example norm of dL/dy (the skip's share of dL/dx_l)
    grad_branch: list[float]  # ... of J_F^T dL/dy (the branch's share)
    hf_change: list[float] = field(default_factory=list)  # Park & Kim's change across it
    grid: list[int] = field(default_factory=list)  # (rows, cols) of image patches; [] for 1-D


def power_spectrum(h: torch.Tensor, grid: Sequence[int] | None = None) -> np.ndarray:
    """One-sided power spectrum over positions, averaged over batch and channels.

    Args:
        h: ``(B, T, C)`` activations.
        grid: ``(rows, cols)`` when the ``T = rows * cols`` positions are image patches in
            raster order: the 2-D FFT's power, binned by radial frequency.

    Shapes:
        1-D: returns ``(T // 2 + 1,)`` with the bins that stand for two frequencies (``+f``
        and ``-f``) doubled, so that it sums to the total energy. Grid: returns one bin per
        radius ``k / max(rows, cols)``, ``k = 0, 1, ...``, each the energy of the 2-D
        frequencies that round to it (it sums to the total energy too).
    """
    if h.dim() != 3:
        raise ValueError(f"power_spectrum needs (B, T, C) activations, got {tuple(h.shape)}")
    if grid is not None:
        power2d = _fft2(h, grid).abs().square().mean(dim=(0, 3))  # (rows, cols)
        bins = _radial_bins(*power2d.shape)
        out = torch.zeros(int(bins.max()) + 1, dtype=power2d.dtype)
        return out.index_add_(0, bins.flatten(), power2d.flatten()).cpu().numpy()
    power = torch.fft.rfft(h.detach().double(), dim=1).abs().square().mean(dim=(0, 2))  # (F,)
    weights = torch.full_like(power, 2.0)
    weights[0] = 1.0
    if h.shape[1] % 2 == 0:
        weights[-1] = 1.0  # the Nyquist bin has no mirror
    return (power * weights).cpu().numpy()


def _fft2(h: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """The 2-D FFT over a ``(rows, cols)`` grid of positions: ``(B, rows, cols, C)``."""
    rows, cols = (int(g) for g in grid)
    b, t, c = h.shape
    if rows * cols != t:
        raise ValueError(f"grid {rows}x{cols} does not hold the sequence's {t} positions")
    return torch.fft.fft2(h.detach().double().reshape(b, rows, cols, c), dim=(1, 2))


def _radial_bins(rows: int, cols: int) -> torch.Tensor:
    """Radial frequency of every 2-D FFT bin, in units of ``1 / max(rows, cols)``, rounded."""
    fr = torch.fft.fftfreq(rows, dtype=torch.float64)[:, None]  # cycles per token
    fc = torch.fft.fftfreq(cols, dtype=torch.float64)[None, :]
    return torch.round((fr.square() + fc.square()).sqrt() * max(rows, cols)).long()


def log_amplitude(h: torch.Tensor, grid: Sequence[int] | None = None) -> np.ndarray:
    """Park & Kim's curve: ``log |FFT|`` averaged over batch and channels, from the zero
    frequency up to the highest (1-D: ``0..T // 2``; grid: the diagonal ``(k, k)``,
    ``k = 0..min(rows, cols) // 2``, ending at ``(pi, pi)`` for an even grid).

    Their notebook adds 1e-6 to the amplitude before the log and stops the diagonal one bin
    short of ``pi``; here the curve ends at the highest frequency the grid has.
    """
    if grid is not None:
        amp = _fft2(h, grid).abs()
        logs = (amp + 1e-6).log().mean(dim=(0, 3))  # (rows, cols)
        k = torch.arange(min(logs.shape) // 2 + 1)
        return logs[k, k].cpu().numpy()
    amp = torch.fft.rfft(h.detach().double(), dim=1).abs()
    return (amp + 1e-6).log().mean(dim=(0, 2)).cpu().numpy()


def high_frequency_change(
    x: torch.Tensor, y: torch.Tensor, grid: Sequence[int] | None = None
) -> float:
    """How a sublayer ``x -> y`` changes the high-frequency log amplitude relative to the
    zero frequency (Park & Kim 2022, Fig. 8): ``[a_y(hi) - a_y(0)] - [a_x(hi) - a_x(0)]`` with
    ``a`` from :func:`log_amplitude`. Negative: the sublayer is a low-pass filter of the
    stream; positive: it adds high frequencies."""
    ax, ay = log_amplitude(x, grid), log_amplitude(y, grid)
    return float((ay[-1] - ay[0]) - (ax[-1] - ax[0]))


def low_fraction(power: np.ndarray, length: int, cutoff: float = CUTOFF, dc: bool = True) -> float:
    """Fraction of the energy at frequencies ``<= cutoff`` (cycles per token).

    Args:
        power: a one-sided spectrum from :func:`power_spectrum` of a length-``length`` signal
            (of a grid: ``length = max(rows, cols)``, the radial bins are ``k / length``).
        dc: count the zero frequency (the mean over positions); False measures how the
            *varying* part of the signal is spread.
    """
    freqs = np.arange(len(power)) / length
    if not dc:
        power, freqs = power[1:], freqs[1:]
    return float(power[freqs <= cutoff + 1e-12].sum() / power.sum())


class TokenSpectrumProbe(AbstractProbe):
    """Spectra of the stream and the branch, and the gradient split, at residual sublayers.

    Args:
        names: qualified names of :class:`~skiplab.nn.Residual` sublayers, e.g.
            ``["blocks.0.attn", "blocks.1.attn"]``; default every outermost ``Residual``.
        cutoff: the low-frequency cut-off of the ``low_*`` fractions (cycles per token).
        grid: ``(rows, cols)`` when the positions are image patches (2-D spectra).

    The gradient split is exact for ``y = x + F(x)`` (pre-LN, no scale): with a ``post`` norm
    or a branch scale, ``dL/dy`` is taken at the sublayer's output.
    """

    def __init__(
        self,
        names: Sequence[str] | None = None,
        cutoff: float = CUTOFF,
        grid: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.names = list(names) if names is not None else None
        self.cutoff = cutoff
        self.grid = [int(g) for g in grid] if grid is not None else None
        self._inputs: dict[str, torch.Tensor] = {}
        self._branches: dict[str, torch.Tensor] = {}
        self._outputs: dict[str, torch.Tensor] = {}
        self._order: list[str] = []

    def __repr__(self) -> str:
        grid = f", grid={self.grid}" if self.grid else ""
        return f"TokenSpectrumProbe(names={self.names}, cutoff={self.cutoff:g}{grid})"

    def _attach(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        names = self.names if self.names is not None else _outer_residuals(model)
        self._inputs, self._branches, self._outputs = {}, {}, {}
        self._order = list(names)
        for name in names:
            sub = modules.get(name)
            if not isinstance(sub, Residual):
                raise TypeError(
                    f"TokenSpectrumProbe needs Residual sublayers; {name!r} is "
                    f"{type(sub).__name__ if sub is not None else 'not a module of the model'}"
                )
            self._keep(sub.register_forward_hook(self._record(name)))
            self._keep(sub.branch.register_forward_hook(self._record_branch(name)))

    def _record(self, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self._inputs[name], self._outputs[name] = args[0], out

        return hook

    def _record_branch(self, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self._branches[name] = out

        return hook

    def collect(self) -> dict[str, Any]:
        """Per sublayer (in ``names`` order): spectra of the stream ``x_l`` and the branch
        ``F(x_l)``, their low-frequency fractions with (``low_*``) and without the DC bin
        (``low_*_ac``), and Park & Kim's high-frequency change from ``x_l`` to the
        sublayer's output ``y_l`` (``hf_change``)."""
        names = [n for n in self._order if n in self._inputs]
        grid = self.grid
        if grid is not None:
            length = max(grid)
        else:
            length = int(self._inputs[names[0]].shape[1]) if names else 0
        out: dict[str, Any] = {"names": names, "length": length, "grid": list(grid or [])}
        for part, store in (("stream", self._inputs), ("branch", self._branches)):
            spectra = [power_spectrum(store[n], grid) for n in names]
            out[part] = [p.tolist() for p in spectra]
            out[f"low_{part}"] = [low_fraction(p, length, self.cutoff) for p in spectra]
            out[f"low_{part}_ac"] = [
                low_fraction(p, length, self.cutoff, dc=False) for p in spectra
            ]
        out["hf_change"] = [
            high_frequency_change(self._inputs[n], self._outputs[n], grid) for n in names
        ]
        return out

    def gradient_split(self, loss: torch.Tensor) -> dict[str, Any]:
        """Mean per-example norms of the gradient reaching each sublayer's input along the
        skip (``grad_skip``: ``dL/dy``) and through the branch (``grad_branch``:
        ``J_F^T dL/dy``), from ``loss`` of the recorded forward pass."""
        names = [n for n in self._order if n in self._inputs]
        grads_y = torch.autograd.grad(loss, [self._outputs[n] for n in names], retain_graph=True)
        skip, branch = [], []
        for name, g in zip(names, grads_y):
            (g_branch,) = torch.autograd.grad(
                self._branches[name], self._inputs[name], grad_outputs=g, retain_graph=True
            )
            skip.append(float(g.flatten(1).norm(dim=1).mean()))
            branch.append(float(g_branch.flatten(1).norm(dim=1).mean()))
        return {"grad_skip": skip, "grad_branch": branch}


def _outer_residuals(model: nn.Module) -> list[str]:
    found: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, Residual) and not any(name.startswith(f + ".") for f in found):
            found.append(name)
    return found


def residual_spectra(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    names: Sequence[str] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    cutoff: float = CUTOFF,
    grid: Sequence[int] | None = None,
) -> TokenSpectra:
    """One forward and backward pass of ``loss_fn(model(x), target)`` through a
    :class:`TokenSpectrumProbe`: its :meth:`~TokenSpectrumProbe.collect` and
    :meth:`~TokenSpectrumProbe.gradient_split` (no parameter gradient is kept).

    Shapes:
        ``x``: what ``model`` takes; every probed sublayer sees ``(B, T, C)`` (with ``grid``,
        ``T = rows * cols`` patches in raster order).
    """
    probe = TokenSpectrumProbe(names, cutoff, grid)
    with probe.attached(model):
        loss = loss_fn(model(x), target)
    return TokenSpectra(**probe.collect(), **probe.gradient_split(loss))


STAGES = (("trained", "-", "o-"), ("init", ":", "x:"))  # stage, spectrum style, per-block style


def plot_token_spectra(
    axes: Sequence[Any],
    stages: dict[str, Sequence[TokenSpectra]],
    cutoff: float = CUTOFF,
    branch: str = "attention",
) -> None:
    """Three panels: the normalised spectra (mean over sublayers and runs), the low-frequency
    fraction per sublayer (band: range over trained runs) and the gradient split per sublayer.

    Args:
        axes: three matplotlib axes.
        stages: ``{"trained": [...], "init": [...]}``, each the measurements of several runs.
        branch: what the branch is called in the legends.
    """
    from skiplab import _plot

    colors = {"stream": _plot.RESIDUAL, "branch": _plot.PLAIN}
    names = {
        "stream": "residual stream", "branch": f"{branch} branch",
        "grad_skip": "via skip: dL/dy", "grad_branch": f"via {branch}: J^T dL/dy",
    }  # fmt: skip
    runs = {stage: list(stages.get(stage, [])) for stage, _, _ in STAGES}
    for stage, ls, _ in STAGES:
        for part in ("stream", "branch"):
            if runs[stage]:
                spec = np.mean([np.mean(getattr(m, part), axis=0) for m in runs[stage]], axis=0)
                freqs = np.arange(len(spec)) / runs[stage][0].length
                axes[0].semilogy(freqs, spec / spec.sum(), ls, color=colors[part],
                                 label=f"{names[part]}, {stage}")  # fmt: skip
    axes[0].axvline(cutoff, color=_plot.REFERENCE, ls="--", label=f"cut-off {cutoff:g}")
    axes[0].set(title="token-axis power spectrum (mean over blocks)",
                xlabel="frequency (cycles / token)", ylabel="share of energy")  # fmt: skip
    panels = ((axes[1], ("low_stream", "low_branch")), (axes[2], ("grad_skip", "grad_branch")))
    for ax, keys in panels:
        for key, part in zip(keys, ("stream", "branch")):
            label = names.get(key, names[part])
            for stage, _, style in STAGES:
                if not runs[stage]:
                    continue
                vals = np.asarray([getattr(m, key) for m in runs[stage]])  # (runs, sublayers)
                blocks = np.arange(vals.shape[1])
                ax.plot(blocks, vals.mean(0), style, color=colors[part], label=f"{label}, {stage}")
                if stage == "trained" and ax is axes[1]:
                    ax.fill_between(blocks, vals.min(0), vals.max(0), color=colors[part], alpha=0.2)
                ax.set_xticks(blocks)
    axes[1].set(title=f"energy fraction at <= {cutoff:g} cycles/token", xlabel="block",
                ylabel="low-frequency fraction", ylim=(0, 1.02))  # fmt: skip
    axes[2].set(title="gradient reaching each block's input", xlabel="block",
                ylabel="mean per-example norm", yscale="log")  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=7)
