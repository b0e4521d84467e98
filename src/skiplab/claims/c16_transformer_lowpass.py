"""C16 transformer-lowpass: what the residual stream and the attention branch carry, by frequency.

In a pre-LN block ``x_{l+1} = x_l + Attn(LN(x_l))`` the residual stream ``x_l`` and the attention
branch's output are both sequences over token positions. Taking the FFT along the positions
gives each a power spectrum; the article says the residual path carries the low-frequency
(global, slowly varying) content and attention adds the high-frequency detail. The claim
measures both spectra in a trained Transformer, the gradient each path carries back, and --
since the skip's placement decides how a deep Transformer trains -- post-LN against pre-LN
under learning-rate warm-up (Xiong et al. 2020).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplab import _plot
from skiplab.claims._base import (
    Claim,
    Context,
    Evidence,
    Figure,
    Table,
    Verdict,
    register_claim,
)
from skiplab.claims._stats import clearly_greater, summarize
from skiplab.data import load_mnist1d_sequence
from skiplab.models.transformer import Transformer, TransformerConfig
from skiplab.nn import Residual

CUTOFF = 0.125  # cycles per token: "low" = periods of 8 tokens or longer (5 of 40 positions)


def power_spectrum(h: torch.Tensor) -> np.ndarray:
    """One-sided power spectrum over positions, averaged over batch and channels.

    Shapes:
        ``h``: ``(B, T, C)``; returns ``(T // 2 + 1,)`` with the bins that stand for two
        frequencies (``+f`` and ``-f``) doubled, so that it sums to the total energy.
    """
    power = torch.fft.rfft(h.double(), dim=1).abs().square().mean(dim=(0, 2))  # (F,)
    weights = torch.full_like(power, 2.0)
    weights[0] = 1.0
    if h.shape[1] % 2 == 0:
        weights[-1] = 1.0  # the Nyquist bin has no mirror
    return (power * weights).numpy()


def low_fraction(power: np.ndarray, length: int, cutoff: float = CUTOFF, dc: bool = True) -> float:
    """Fraction of the energy at frequencies ``<= cutoff`` (cycles per token).

    Args:
        dc: count the zero frequency (the mean over positions); False measures how the
            *varying* part of the signal is spread.
    """
    freqs = np.arange(len(power)) / length
    if not dc:
        power, freqs = power[1:], freqs[1:]
    return float(power[freqs <= cutoff + 1e-12].sum() / power.sum())


def _keep(ins: list[torch.Tensor] | None, outs: list[torch.Tensor]) -> Any:
    """A forward hook that appends the module's input (if ``ins``) and output."""

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if ins is not None:
            ins.append(args[0])
        outs.append(out)

    return hook


def probe_blocks(model: Transformer, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Spectra and gradient norms of every attention sublayer ``x_l + F(x_l)``.

    Returns per block: the spectra of the residual stream ``x_l`` and of ``F(x_l)``, and the
    norms of the gradient the block's input receives along the skip (``dL/dy``) and through
    the branch (``J_F^T dL/dy``), averaged over the batch.
    """
    inputs: list[torch.Tensor] = []
    branches: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    handles = []
    for block in model.blocks:
        sub = block.attn
        if not isinstance(sub, Residual):
            raise TypeError(
                "probe_blocks needs residual (pre-/post-LN, ReZero) attention sublayers"
            )
        handles.append(sub.register_forward_hook(_keep(inputs, outputs)))
        handles.append(sub.branch.register_forward_hook(_keep(None, branches)))
    try:
        loss = F.cross_entropy(model(x), y)
    finally:
        for h in handles:
            h.remove()
    grads_y = torch.autograd.grad(loss, outputs, retain_graph=True)
    skip_norm, branch_norm = [], []
    for x_l, b_l, g in zip(inputs, branches, grads_y):
        (g_branch,) = torch.autograd.grad(b_l, x_l, grad_outputs=g, retain_graph=True)
        skip_norm.append(float(g.flatten(1).norm(dim=1).mean()))
        branch_norm.append(float(g_branch.flatten(1).norm(dim=1).mean()))
    length = x.shape[1]
    return {
        "stream": [power_spectrum(h.detach()).tolist() for h in inputs],
        "branch": [power_spectrum(b.detach()).tolist() for b in branches],
        "low_stream": [low_fraction(power_spectrum(h.detach()), length) for h in inputs],
        "low_branch": [low_fraction(power_spectrum(b.detach()), length) for b in branches],
        "low_stream_ac": [
            low_fraction(power_spectrum(h.detach()), length, dc=False) for h in inputs
        ],
        "low_branch_ac": [
            low_fraction(power_spectrum(b.detach()), length, dc=False) for b in branches
        ],
        "grad_skip": skip_norm,
        "grad_branch": branch_norm,
    }


def train(
    model: nn.Module, splits: Any, steps: int, lr: float, warmup: int, seed: int, batch: int = 64
) -> tuple[float, float]:
    """Adam (betas 0.9, 0.98 as in Vaswani et al.) with linear warm-up over ``warmup`` steps,
    then constant; returns test accuracy and the mean training loss of the last 10% of steps."""
    x, y = splits.train.tensors
    xt, yt = splits.test.tensors
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item() if torch.isfinite(loss) else float("inf"))
    with torch.no_grad():
        acc = (model(xt).argmax(-1) == yt).float().mean().item()
    tail = losses[-max(1, steps // 10) :]
    return acc, float(np.mean(tail))


def layer_grad_norms(model: Transformer, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Gradient norm of each block's last MLP weight at init (Xiong et al. 2020, Fig. 3)."""
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    norms = []
    for block in model.blocks:
        # the block's last linear layer is its MLP's output projection
        weight = [m for m in block.modules() if isinstance(m, nn.Linear)][-1].weight
        norms.append(float(weight.grad.norm()) if weight.grad is not None else 0.0)
    return norms


def _config(variant: str, n_layer: int, n_embd: int) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=None, in_features=1, out_features=10, block_size=40, n_layer=n_layer,
        n_head=4, n_embd=n_embd, variant=variant, causal=False, readout="mean",
    )  # fmt: skip


@register_claim
class TransformerLowpass(Claim):
    id = "C16"
    slug = "transformer-lowpass"
    title = "The residual stream carries the low frequencies, attention the high ones"
    statement = (
        "In a Transformer block the residual path carries the low-frequency (global) content of "
        "the token sequence, while attention learns the high-frequency detail."
    )
    method = (
        "A bidirectional pre-LN Transformer encoder classifies MNIST-1D read as 40 scalar tokens "
        "(learned positions, mean-pooled head). After training, the FFT over token positions of "
        "the residual stream x_l entering each block and of the attention branch Attn(LN(x_l)) "
        f"gives power spectra; the fraction of energy at <= {CUTOFF:g} cycles/token (DC "
        "included) is compared per block, and at init for reference. The gradient reaching x_l "
        "along the skip (dL/dy) and through the branch (J^T dL/dy) is measured per block. "
        "Separately, deeper post-LN and pre-LN encoders are trained with and without linear "
        "learning-rate warm-up (Xiong et al. 2020), and the gradient norm of each block's last "
        "MLP weight is measured at init."
    )
    criterion = (
        "Holds when, in the trained models, the residual stream's low-frequency fraction "
        "(averaged over blocks) exceeds the attention branch's in every seed (ranges over seeds "
        "do not overlap); fails when the branch's exceeds the stream's in every seed; otherwise "
        "inconclusive. The gradient split and the warm-up comparison are reported beside it and "
        "do not enter this verdict (they test different statements)."
    )
    math = (
        "x_{l+1} = x_l + A_l(LN(x_l))  =>  X_{l+1}(f) = X_l(f) + A_l(f) for every frequency f "
        "(the FFT is linear): the stream's spectrum is the sum of the branches' contributions "
        "and their cross terms.\n"
        "low(h) = sum_{f <= f_c} |H(f)|^2 / sum_f |H(f)|^2, with H the FFT over positions.\n"
        "Gradient: dL/dx_l = dL/dy + J_A^T dL/dy (pre-LN: the skip passes dL/dy unchanged).\n"
        "Xiong et al. 2020: in post-LN the expected gradient of the last layers' weights is "
        "O(d sqrt(ln d)) independent of depth, in pre-LN O(d sqrt(ln d / L)): post-LN needs "
        "warm-up."
    )
    references = (
        "Vaswani et al. 2017, Attention Is All You Need",
        "Xiong et al. 2020, On Layer Normalization in the Transformer Architecture",
        "Wang et al. 2022, Anti-Oversmoothing in Deep Vision Transformers via the Fourier Domain",
        "Park & Kim 2022, How Do Vision Transformers Work?",
    )
    default_seeds = {"tiny": 1, "quick": 2, "full": 5}
    single_threaded = True

    def run(self, ctx: Context) -> Evidence:
        steps = ctx.pick(tiny=30, quick=300, full=4000)
        n_layer = ctx.pick(tiny=2, quick=4, full=6)
        n_embd = ctx.pick(tiny=32, quick=64, full=128)
        deep = ctx.pick(tiny=3, quick=6, full=18)
        warm_steps = ctx.pick(tiny=30, quick=200, full=4000)
        warm_batch = ctx.pick(tiny=32, quick=32, full=64)
        warm_lr = 2e-3  # high enough for Adam without warm-up to be risky for post-LN at this width
        n_train = ctx.pick(tiny=500, quick=4000, full=4000)
        splits = load_mnist1d_sequence().subset(n_train=n_train)
        probe_x, probe_y = (t[:256] for t in splits.test.tensors)
        ev = Evidence(seeds=ctx.seeds)
        probes: dict[str, list[dict[str, Any]]] = {"init": [], "trained": []}
        accs: list[float] = []
        warm: dict[str, list[float]] = {}
        grad_init: dict[str, list[float]] = {}
        for seed in ctx.seeds:
            cfg: dict[str, Any] = {
                "steps": steps,
                "n_layer": n_layer,
                "n_embd": n_embd,
                "lr": 1e-3,
                "warmup": steps // 10,
            }
            with ctx.run(f"C16 spectra seed {seed}", cfg, seed=seed) as run_id:
                ctx.seed_everything(seed)
                model = Transformer(_config("pre_ln", n_layer, n_embd))
                probes["init"].append(probe_blocks(model, probe_x, probe_y))
                acc, loss = train(model, splits, steps, 1e-3, steps // 10, seed)
                probes["trained"].append(probe_blocks(model, probe_x, probe_y))
                accs.append(acc)
                ctx.store.finish_run(
                    run_id, "completed", results={"test_acc": acc, "train_loss": loss}
                )
            for variant in ("post_ln", "pre_ln"):
                ctx.seed_everything(seed)
                model = Transformer(_config(variant, deep, n_embd))
                if seed == ctx.seeds[0]:
                    grad_init[variant] = layer_grad_norms(model, probe_x, probe_y)
                for warmup in (0, warm_steps // 4):
                    cfg = {
                        "variant": variant,
                        "n_layer": deep,
                        "lr": warm_lr,
                        "warmup": warmup,
                        "steps": warm_steps,
                    }
                    with ctx.run(
                        f"C16 warmup {variant} w={warmup} seed {seed}", cfg, seed=seed
                    ) as run_id:
                        ctx.seed_everything(seed)
                        model = Transformer(_config(variant, deep, n_embd))
                        acc_w, loss_w = train(
                            model, splits, warm_steps, warm_lr, warmup, seed, warm_batch
                        )
                        ctx.store.finish_run(
                            run_id, "completed", results={"test_acc": acc_w, "train_loss": loss_w}
                        )
                    warm.setdefault(f"{variant}|{warmup > 0}", []).append(acc_w)
        low_rows = []
        for stage in ("init", "trained"):
            for layer in range(n_layer):
                s = [p["low_stream"][layer] for p in probes[stage]]
                b = [p["low_branch"][layer] for p in probes[stage]]
                gs = [p["grad_skip"][layer] for p in probes[stage]]
                gb = [p["grad_branch"][layer] for p in probes[stage]]
                sa = [p["low_stream_ac"][layer] for p in probes[stage]]
                ba = [p["low_branch_ac"][layer] for p in probes[stage]]
                low_rows.append([stage, layer, f"{np.mean(s):.3f}", f"{np.mean(b):.3f}", f"{np.mean(sa):.3f}",
                                 f"{np.mean(ba):.3f}", f"{np.mean(gs):.3g}",
                                 f"{np.mean(gb):.3g}", f"{np.mean(gb) / np.mean(gs):.2f}"])  # fmt: skip
        ev.tables.append(
            Table(
                f"Per block: energy fraction at <= {CUTOFF:g} cycles/token and gradient reaching the block input",
                ["model", "block", "low-freq stream", "low-freq attention", "stream, no DC",
                 "attention, no DC", "|grad| via skip",
                 "|grad| via attention", "attention / skip"],
                low_rows,
                f"pre-LN encoder, {n_layer} blocks, width {n_embd}, MNIST-1D (40 tokens); trained "
                f"{steps} steps, test accuracy {np.mean(accs):.1%}; means over {len(ctx.seeds)} seed(s)",
            )
        )  # fmt: skip
        warm_rows = []
        for variant in ("post_ln", "pre_ln"):
            no, yes = warm[f"{variant}|False"], warm[f"{variant}|True"]
            warm_rows.append([variant, deep, f"{np.mean(no):.3f}", f"{np.mean(yes):.3f}",
                              f"{np.mean(yes) - np.mean(no):+.3f}"])  # fmt: skip
            ev.numbers[f"warmup_gain_{variant}"] = float(np.mean(yes) - np.mean(no))
        ev.tables.append(
            Table(
                f"Warm-up sensitivity at depth {deep} (Adam lr {warm_lr:g}, {warm_steps} steps, "
                f"warm-up {warm_steps // 4} steps): test accuracy",
                ["variant", "blocks", "no warm-up", "with warm-up", "gain from warm-up"],
                warm_rows,
            )
        )  # fmt: skip
        for stage in ("init", "trained"):
            for part in ("stream", "branch"):
                ev.numbers[f"low_{part}_ac_{stage}"] = float(
                    np.mean([np.mean(p[f"low_{part}_ac"]) for p in probes[stage]])
                )
            ev.numbers[f"low_stream_{stage}"] = float(
                np.mean([np.mean(p["low_stream"]) for p in probes[stage]])
            )
            ev.numbers[f"low_branch_{stage}"] = float(
                np.mean([np.mean(p["low_branch"]) for p in probes[stage]])
            )
        ev.numbers["test_acc"] = float(np.mean(accs))
        ev.series.update(probes=probes, warm=warm, grad_init=grad_init, length=40, deep=deep)
        ev.notes.append(
            "Xiong et al.'s gradient analysis assumes blocks fed with O(1)-scale inputs; here the "
            "embeddings start at N(0, 0.02) (GPT-2 init), so the per-block gradients at init need "
            "not follow their Fig. 3."
        )
        if ctx.scale != "full":
            ev.notes.append(
                "Small models and short training on one task: the spectra describe this encoder on "
                "MNIST-1D, not Transformers in general."
            )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        trained = evidence.series["probes"]["trained"]
        stream = [float(np.mean(p["low_stream"])) for p in trained]
        branch = [float(np.mean(p["low_branch"])) for p in trained]
        ratio = [
            float(np.mean(np.asarray(p["grad_branch"]) / np.asarray(p["grad_skip"])))
            for p in trained
        ]
        n = evidence.numbers
        detail = (
            f"low-frequency energy fraction (<= {CUTOFF:g} cycles/token), trained, mean over blocks: "
            f"residual stream {summarize(stream)}, attention branch {summarize(branch)} "
            f"(at init: {n['low_stream_init']:.3f} vs {n['low_branch_init']:.3f}); without the DC "
            f"bin, trained: stream {n['low_stream_ac_trained']:.3f} vs attention "
            f"{n['low_branch_ac_trained']:.3f}; gradient via "
            f"attention / via skip {np.mean(ratio):.2f}; warm-up gain post-LN "
            f"{n['warmup_gain_post_ln']:+.3f} vs pre-LN {n['warmup_gain_pre_ln']:+.3f} "
            f"(Xiong et al. predict post-LN > pre-LN)."
        )
        if clearly_greater(stream, branch):
            return Verdict("holds", detail)
        if clearly_greater(branch, stream):
            return Verdict(
                "fails", f"the attention branch is the more low-pass of the two. {detail}"
            )
        return Verdict("inconclusive", f"the two overlap across seeds. {detail}")

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        probes = evidence.series["probes"]
        length = evidence.series["length"]
        fig, axes = _plot.subplots(2, 3, width=4.4, height=3.6)
        ax = axes[0][0]
        for stage, ls in (("trained", "-"), ("init", ":")):
            for part, color in (("stream", _plot.RESIDUAL), ("branch", _plot.PLAIN)):
                spec = np.mean(
                    [np.mean(np.asarray(p[part]), axis=0) for p in probes[stage]], axis=0
                )
                spec = spec / spec.sum()
                freqs = np.arange(len(spec)) / length
                label = f"{'residual stream' if part == 'stream' else 'attention branch'}, {stage}"
                ax.semilogy(freqs, spec, ls, color=color, label=label)
        ax.axvline(CUTOFF, color=_plot.REFERENCE, ls="--", label=f"cut-off {CUTOFF:g}")
        ax.set(title="token-axis power spectrum (mean over blocks)", xlabel="frequency (cycles / token)",
               ylabel="share of energy")  # fmt: skip
        ax.legend(fontsize=7)
        ax = axes[0][1]
        n_layer = len(probes["trained"][0]["low_stream"])
        layers = np.arange(n_layer)
        for part, color, label in (("low_stream", _plot.RESIDUAL, "residual stream"),
                                   ("low_branch", _plot.PLAIN, "attention branch")):  # fmt: skip
            vals = np.asarray([p[part] for p in probes["trained"]])
            ax.plot(layers, vals.mean(0), "o-", color=color, label=f"{label}, trained")
            ax.fill_between(layers, vals.min(0), vals.max(0), color=color, alpha=0.2)
            init = np.asarray([p[part] for p in probes["init"]]).mean(0)
            ax.plot(layers, init, "x:", color=color, label=f"{label}, init")
        ax.set(title=f"energy fraction at <= {CUTOFF:g} cycles/token", xlabel="block", ylabel="low-frequency fraction",
               ylim=(0, 1.02), xticks=layers)  # fmt: skip
        ax.legend(fontsize=7)
        ax = axes[0][2]
        for part, color, label in (("grad_skip", _plot.RESIDUAL, "via skip: dL/dy"),
                                   ("grad_branch", _plot.PLAIN, "via attention: J^T dL/dy")):  # fmt: skip
            for stage, ls in (("trained", "o-"), ("init", "x:")):
                vals = np.asarray([p[part] for p in probes[stage]]).mean(0)
                ax.semilogy(layers, vals, ls, color=color, label=f"{label}, {stage}")
        ax.set(title="gradient reaching each block's input", xlabel="block", ylabel="mean per-example norm",
               xticks=layers)  # fmt: skip
        ax.legend(fontsize=7)
        ax = axes[1][0]
        warm = evidence.series["warm"]
        for i, variant in enumerate(("post_ln", "pre_ln")):
            for j, flag in enumerate(("False", "True")):
                vals = warm[f"{variant}|{flag}"]
                xpos = i * 3 + j
                color = _plot.PLAIN if variant == "post_ln" else _plot.RESIDUAL
                ax.bar(xpos, np.mean(vals), color=color, alpha=0.5 if flag == "False" else 1.0)
                ax.plot([xpos] * len(vals), vals, "k.", ms=6)
        ax.set_xticks(
            [0, 1, 3, 4], ["no\nwarm-up", "warm-up", "no\nwarm-up", "warm-up"], fontsize=8
        )
        ax.text(0.5, 0.95, "post-LN", ha="center", transform=ax.get_xaxis_transform())
        ax.text(3.5, 0.95, "pre-LN", ha="center", transform=ax.get_xaxis_transform())
        ax.set(
            title=f"warm-up sensitivity, {evidence.series['deep']} blocks",
            ylabel="test accuracy",
            ylim=(0, 1),
        )
        ax = axes[1][1]
        for variant, color in (("post_ln", _plot.PLAIN), ("pre_ln", _plot.RESIDUAL)):
            g = evidence.series["grad_init"].get(variant, [])
            ax.semilogy(
                np.arange(len(g)),
                g,
                "o-",
                color=color,
                label=variant.replace("_", "-").replace("ln", "LN"),
            )
        ax.set(
            title="grad norm of each block's last MLP weight at init",
            xlabel="block",
            ylabel="||dL/dW||",
        )
        ax.legend(fontsize=8)
        axes[1][2].axis("off")
        _plot.save(fig, outdir / "transformer_lowpass.png")
        return [
            Figure(
                "transformer_lowpass.png",
                "Top: power spectra over token positions of the residual stream entering each block "
                "and of the attention branch output (normalised, mean over blocks; dotted: at init); "
                "the low-frequency energy fraction per block (band: range over seeds); the gradient "
                "reaching each block's input along the skip and through attention. Bottom: test "
                "accuracy of deep post-LN and pre-LN encoders with and without warm-up (dots: seeds); "
                "per-block gradient norm of the last MLP weight at init (Xiong et al. 2020, Fig. 3).",
            )
        ]
