"""``skiplab diagnose``: every probe on one model, a page with one section per probe.

Probes that describe the network at initialisation (skips, signal propagation, gradient flow,
Jacobians, paths) run on the freshly built model; the model is then trained briefly with the
gradient-flow probe attached, and the probes that need a trained model (loss landscape, lesions)
run on the result. The numbers are stored as a run of kind ``diagnose``.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplab import _plot
from skiplab._files import check_regular_target
from skiplab.claims import Figure, Table
from skiplab.data import Splits
from skiplab.diagnostics import (
    GradientFlowProbe,
    SkipReport,
    block_spectral_norms,
    find_blocks,
    find_skips,
    gradient_flow_at_init,
    gradient_split,
    graph_paths,
    lesion_study,
    loss_line,
    loss_plane,
    model_block_paths,
    path_gradient_contribution,
    plot_line,
    plot_plane,
    signal_propagation,
)
from skiplab.diagnostics.diagnosis import Diagnosis
from skiplab.nn import Residual
from skiplab.report.builder import _ENV, report_lock, write_page
from skiplab.store import Store

PROBES = ("skips", "signal", "gradflow", "jacobian", "paths", "landscape", "lesion")

_ABOUT = {
    "skips": "Every merge found in the traced graph: residual adds, concatenations and gated "
    "mixes, with the per-example L2 norm of the branch and shortcut operands (at init, batch "
    "statistics).",
    "signal": "Brock et al. 2021: per block, average channel squared mean, average channel "
    "variance of the block output, and variance of the residual branch, at init.",
    "gradflow": "Gradient norm of each block's parameters at init and over training, and the "
    "split of the gradient reaching each residual block's input between shortcut and branch.",
    "jacobian": "Spectral norm of each block's input-output Jacobian (Lanczos bidiagonalisation "
    "with torch.func jvp/vjp, one example, batch statistics, attention on the math SDPA kernel; "
    "'converged' means the estimate settled and passed a singular-vector residual check); 1 "
    "means the block neither amplifies nor damps any input direction.",
    "paths": "Veit et al. 2016: number and length distribution of input-output paths in the "
    "traced graph (in weight layers) and in the block chain, and how much gradient paths of "
    "each length carry.",
    "landscape": "Li et al. 2018: loss along one and two filter-normalised random directions "
    "around the trained weights, on a fixed batch (biases and norm parameters not moved).",
    "lesion": "Veit et al. 2016: test accuracy after deleting each block (a residual block "
    "keeps its shortcut; a plain block becomes the identity) and k random blocks at once.",
}
_TITLES = {
    "skips": "Skips",
    "signal": "Signal propagation",
    "gradflow": "Gradient flow",
    "jacobian": "Jacobian spectral norms",
    "paths": "Paths",
    "landscape": "Loss landscape",
    "lesion": "Lesion study",
}


def parse_probes(spec: str | None) -> list[str]:
    """Probe names from ``"all"`` or a comma list; unknown names raise listing the allowed."""
    if spec is None or spec.strip().lower() == "all":
        return list(PROBES)
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in PROBES]
    if bad or not names:
        raise ValueError(
            f"unknown probe(s) {', '.join(bad) or '(none given)'}; allowed: all, {', '.join(PROBES)}"
        )
    return [p for p in PROBES if p in names]


@dataclass
class Section:
    key: str
    title: str
    about: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0


def run_diagnose(
    model: nn.Module,
    splits: Splits,
    *,
    name: str,
    probes: list[str],
    out_dir: Path,
    store: Store,
    epochs: int = 1,
    seed: int = 0,
    command: str = "",
    log: Callable[[str], None] = lambda _m: None,
    train_fn: Callable[..., dict[str, Any]] | None = None,
) -> Path:
    """Run ``probes`` on ``model`` with data ``splits``, write ``out_dir/index.html``, store a run.

    Args:
        train_fn: ``train_fn(model, splits, epochs, seed)`` trains in place and returns the
            final metrics (default :func:`train_briefly`); the gradient-flow probe is attached
            meanwhile.

    Raises:
        LockedError: another process is writing ``out_dir``; nothing was run or stored.
        FileTargetError: ``out_dir/index.html`` is a directory, FIFO or device; likewise.
    """
    with report_lock(out_dir):
        check_regular_target(out_dir / "index.html", "report file")
        return _diagnose(
            model, splits, name=name, probes=probes, out_dir=out_dir, store=store, epochs=epochs,
            seed=seed, command=command, log=log, train_fn=train_fn,
        )  # fmt: skip


def _diagnose(
    model: nn.Module,
    splits: Splits,
    *,
    name: str,
    probes: list[str],
    out_dir: Path,
    store: Store,
    epochs: int,
    seed: int,
    command: str,
    log: Callable[[str], None],
    train_fn: Callable[..., dict[str, Any]] | None,
) -> Path:
    figdir = out_dir / "figures"
    torch.manual_seed(seed)
    xb, yb = splits.train.tensors[0][:128], splits.train.tensors[1][:128]
    xt, yt = splits.test.tensors[0][:1000], splits.test.tensors[1][:1000]
    _check_inputs(model, name, splits, xb)
    config = {"model": name, "data": splits.name, "probes": probes, "epochs": epochs, "seed": seed}
    run_id = store.start_run(f"diagnose {name} on {splits.name}", "diagnose", config, seed=seed)
    results: dict[str, Any] = {}
    sections: list[Section] = []

    def do(key: str, fn: Callable[[Section], None]) -> None:
        if key not in probes:
            return
        sec = Section(key, _TITLES[key], _ABOUT[key])
        log(f"diagnose: {key}")
        t0 = time.perf_counter()
        try:
            fn(sec)
        except Exception as err:  # one failing probe must not hide the others
            sec.error = f"{type(err).__name__}: {err}"
            results[f"{key}_error"] = traceback.format_exc(limit=6)
        sec.wall_s = time.perf_counter() - t0
        sections.append(sec)

    try:
        do("skips", lambda s: _skips(s, model, xb, results, figdir))
        do("signal", lambda s: _signal(s, model, xb, results, figdir))
        do("jacobian", lambda s: _jacobian(s, model, xb, results, figdir))
        do("paths", lambda s: _paths(s, model, xb, yb, results, figdir))
        probe = GradientFlowProbe(split=True) if "gradflow" in probes else None
        init_flow = _flow_at_init(model, xb, yb, results) if probe is not None else {}
        training = ""
        if epochs > 0:
            log(f"diagnose: training {epochs} epoch(s)")
            training = _train(model, splits, epochs, seed, probe, train_fn, results)
        do("gradflow", lambda s: _gradflow(s, init_flow, probe, results, figdir))
        do("landscape", lambda s: _landscape(s, model, xb, yb, results, figdir))
        do("lesion", lambda s: _lesion(s, model, xt, yt, results, figdir))
    except BaseException as err:
        store.finish_run(run_id, "failed", error=f"{type(err).__name__}: {err}")
        raise
    store.finish_run(run_id, "completed", results=results)
    html = _ENV.get_template("diagnose.html").render(
        model=name, data=splits.name, epochs=epochs, run_id=run_id, training=training,
        params=sum(p.numel() for p in model.parameters()), sections=sections,
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), store_path=str(store.path),
        command=command,
    )  # fmt: skip
    index = out_dir / "index.html"
    write_page(index, html)
    return index


def _check_inputs(model: nn.Module, name: str, splits: Splits, xb: torch.Tensor) -> None:
    """Raise a clear error when the model does not take the dataset's inputs."""
    try:
        with torch.no_grad():
            model.eval()
            model(xb[:2])
    except Exception as err:
        raise ValueError(
            f"model {name!r} does not accept dataset {splits.name!r} inputs of shape "
            f"{tuple(xb.shape[1:])} ({type(err).__name__}: {err}); pass a matching --data"
        ) from err
    model.train()


def _flow_at_init(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, results: dict[str, Any]
) -> dict[str, Any]:
    """Gradient flow at init; for hand-written skips, the split from the traced graph."""
    init_flow = gradient_flow_at_init(model, (xb,), yb, F.cross_entropy)
    if init_flow.get("split_blocks"):
        return init_flow
    try:
        split = gradient_split(model, (xb,), yb, F.cross_entropy)
    except Exception as err:  # the probe section says so; the others go on
        split = {"error": f"{type(err).__name__}: {err}"}
        results["gradient_split_error"] = split["error"]
    if split.get("merges"):
        init_flow.update(
            split_blocks=split["merges"], shortcut_grad=[split["shortcut_grad"]],
            branch_grad=[split["branch_grad"]],
        )  # fmt: skip
    return init_flow


def _train(
    model: nn.Module,
    splits: Splits,
    epochs: int,
    seed: int,
    probe: GradientFlowProbe | None,
    train_fn: Callable[..., dict[str, Any]] | None,
    results: dict[str, Any],
) -> str:
    """Train in place (the gradient-flow probe attached if asked); a sentence saying how."""
    train_fn = train_fn or train_briefly
    with probe.attached(model) if probe is not None else nullcontext():
        final = train_fn(model, splits, epochs, seed)
    results["training"] = final
    return (
        f"Trained {epochs} epoch(s) on {splits.name} ({splits.num_train} examples): "
        f"train loss {final.get('train_loss', math.nan):.4f}, "
        f"test accuracy {final.get('test_acc', math.nan):.4f}."
    )


# -- one function per probe ---------------------------------------------------------------
def _fig(figdir: Path, name: str, caption: str) -> Figure:
    return Figure(f"figures/{name}", caption)


def _skips(
    sec: Section, model: nn.Module, x: torch.Tensor, res: dict[str, Any], figdir: Path
) -> None:
    report = find_skips(model, (x,))
    res["skips"] = report.as_dict()
    _skips_page(sec, report, figdir)


def _skips_page(sec: Section, report: SkipReport, figdir: Path) -> None:
    counts = report.as_dict()["counts"]
    by = {m.method for m in report.merges}
    methods = " and ".join(
        {"fx": "torch.fx tracing", "forward": "the recorded forward pass"}[k] for k in sorted(by)
    )
    sec.notes.append(
        f"Found by {methods or 'neither method'}: {counts['residual']} residual add(s), "
        f"{counts['concat']} concatenation(s), {counts['gated']} gated mix(es)."
        + (f" {report.note}." if report.note else "")
    )
    rows = [
        [m.kind, m.module or "(root)", m.branch_module or "-", m.scale or "-", m.method,
         m.shortcut_layers, m.branch_layers, m.shortcut_norm, m.branch_norm, m.ratio]
        for m in report.merges
    ]  # fmt: skip
    sec.tables.append(
        Table(
            "Merges", ["kind", "module", "branch module", "scaled", "found by", "layers (s)",
                       "layers (b)", "|shortcut|", "|branch|", "|branch| / |shortcut|"], rows,
            "module: the module whose forward performs the merge; layers: weight layers between "
            "the fork and the operand; norms are mean per-example L2",
        )
    )  # fmt: skip
    if not report.merges:
        sec.notes.append("No merge was found, so there is no ratio plot: the model has no skips.")
        return
    fig, axes = _plot.subplots(1, 1, width=max(5.0, 0.3 * len(report.merges) + 2), height=3.8)
    ax = axes[0][0]
    ratios = [m.ratio for m in report.merges]
    colors = [
        {"residual": _plot.RESIDUAL, "concat": "#2ca02c", "gated": "#9467bd"}[m.kind]
        for m in report.merges
    ]
    ax.bar(range(len(ratios)), ratios, color=colors)
    ax.axhline(1.0, color=_plot.REFERENCE, ls="--", lw=1)
    _name_ticks(ax, [m.module or "(root)" for m in report.merges])
    ax.set(ylabel="|branch| / |shortcut|", title="branch-to-shortcut ratio per merge")
    ax.set_yscale("log")
    _plot.save(fig, figdir / "skips.png")
    sec.figures.append(
        _fig(
            figdir,
            "skips.png",
            "Branch-to-shortcut norm ratio of every merge, labelled by its module (log scale; "
            "blue residual, green concatenation, purple gated).",
        )
    )


def _name_ticks(ax: Any, names: list[str], limit: int = 40) -> None:
    """Label the x axis with module names (every k-th one when there are many)."""
    step = max(1, math.ceil(len(names) / limit))
    ax.set_xticks(range(0, len(names), step))
    ax.set_xticklabels(names[::step], rotation=60, ha="right", fontsize=7)


def _signal(
    sec: Section, model: nn.Module, x: torch.Tensor, res: dict[str, Any], figdir: Path
) -> None:
    sp = signal_propagation(model, (x,))
    res["signal"] = sp
    _signal_page(sec, sp, figdir)


def _signal_page(sec: Section, sp: dict[str, Any], figdir: Path) -> None:
    blocks = list(sp["blocks"])
    if not blocks:
        sec.notes.append("The model has no blocks to measure, so there is no plot.")
        return
    fig, axes = _plot.subplots(1, 3, width=4.0, height=3.8)
    idx = np.arange(len(blocks))
    for ax, key, label in zip(
        axes[0], ("sq_mean", "var", "branch_var"),
        ("average channel squared mean", "average channel variance", "residual branch variance"),
    ):  # fmt: skip
        vals = np.asarray(sp[key], dtype=float)
        ax.plot(idx, vals, "o-", color=_plot.RESIDUAL, ms=3)
        ax.set(title=label)
        _name_ticks(ax, blocks, limit=16)
        finite = vals[np.isfinite(vals) & (vals > 0)]
        if finite.size and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        if not finite.size:
            ax.text(0.5, 0.5, "no finite value:\nsee the reasons below", ha="center",
                    va="center", transform=ax.transAxes)  # fmt: skip
    _plot.save(fig, figdir / "signal.png")
    sec.figures.append(
        _fig(
            figdir,
            "signal.png",
            "Signal propagation plot at init (Brock et al. 2021), block outputs in forward order; branch variance is missing for blocks without a residual branch.",
        )
    )
    reasons = sp.get("reasons") or [""] * len(blocks)
    sec.tables.append(Table("Per block", ["block", "squared mean", "variance", "branch variance", "why a value is missing"],
                            [[b, s, v, bv, r] for b, s, v, bv, r in zip(blocks, sp["sq_mean"], sp["var"], sp["branch_var"], reasons)]))  # fmt: skip


def _jacobian(
    sec: Section, model: nn.Module, x: torch.Tensor, res: dict[str, Any], figdir: Path
) -> None:
    jac = block_spectral_norms(model, (x,), tol=1e-3)
    res["jacobian"] = jac
    _jacobian_page(sec, jac, figdir)


def _jacobian_page(sec: Section, jac: dict[str, Any], figdir: Path) -> None:
    blocks = list(jac["blocks"])
    if blocks:
        fig, axes = _plot.subplots(1, 1, width=max(6.0, 0.3 * len(blocks) + 2), height=3.8)
        ax = axes[0][0]
        ax.plot(range(len(blocks)), jac["sigma"], "o-", color=_plot.RESIDUAL, ms=3)
        ax.axhline(1.0, color=_plot.REFERENCE, ls="--", lw=1, label="1 (norm-preserving)")
        ax.set(ylabel="sigma_max(dy/dx)", title="block Jacobian spectral norms", yscale="log")
        _name_ticks(ax, blocks)
        ax.legend()
        _plot.save(fig, figdir / "jacobian.png")
        sec.figures.append(
            _fig(
                figdir,
                "jacobian.png",
                "Largest singular value of each block's input-output Jacobian, by block.",
            )
        )
    else:
        sec.notes.append("The model has no blocks to measure, so there is no plot.")
    if "network" in jac:
        sec.notes.append(
            f"Whole network (input to output): spectral norm {jac['network']:.4g} after "
            f"{jac['network_iterations']} Lanczos iterations"
            + ("." if jac.get("network_converged") else " (not converged: a lower bound).")
        )
    if jac.get("network_note"):
        sec.notes.append(str(jac["network_note"]))
    errors = jac.get("errors") or [""] * len(blocks)
    sec.tables.append(
        Table(
            "Per block",
            ["block", "sigma_max", "iterations", "converged", "error"],
            [
                list(r)
                for r in zip(blocks, jac["sigma"], jac["iterations"], jac["converged"], errors)
            ],
        )
    )


def _split_page(sec: Section, split: dict[str, Any], figdir: Path) -> None:
    """The shortcut/branch split of dL/dx at each residual merge (Python API page)."""
    merges = list(split.get("merges", []))
    labels = list(split.get("modules", merges))
    if not merges:
        sec.notes.append("No residual merge was found, so there is no gradient split to plot.")
        return
    fig, axes = _plot.subplots(1, 1, width=max(6.0, 0.3 * len(merges) + 2), height=3.8)
    ax = axes[0][0]
    ax.semilogy(split["shortcut_grad"], "o-", color=_plot.RESIDUAL, label="via shortcut", ms=3)
    ax.semilogy(split["branch_grad"], "s-", color=_plot.PLAIN, label="via branch", ms=3)
    ax.set(title="gradient reaching each merge's fork", ylabel="norm")
    _name_ticks(ax, [m or "(root)" for m in labels])
    ax.legend()
    _plot.save(fig, figdir / "gradflow.png")
    sec.figures.append(
        _fig(
            figdir,
            "gradflow.png",
            "Norm of the part of dL/dx that arrives through the shortcut and through the branch of each residual merge, labelled by the merge's module.",
        )
    )
    sec.tables.append(
        Table(
            "Per merge",
            ["module", "via shortcut", "via branch"],
            [list(r) for r in zip(labels, split["shortcut_grad"], split["branch_grad"])],
        )
    )


def _paths(
    sec: Section,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    res: dict[str, Any],
    figdir: Path,
) -> None:
    report = find_skips(model, (x[:2],))
    out: dict[str, Any] = {}
    panels = []
    if report.traced is not None:
        gp = graph_paths(report.traced)
        out["graph"] = gp.as_dict()
        panels.append(("computation graph", gp.as_dict()))
        sec.notes.append(
            f"Computation graph: {gp.total:.6g} input-output paths, length (weight layers) {gp.shortest}..{gp.longest}, mean {gp.mean:.2f}."
        )
    else:
        sec.notes.append(f"No traced graph ({report.note}); block-chain paths only.")
    has_residual = any(isinstance(b, Residual) for _, b in find_blocks(model))
    if has_residual:
        bp = model_block_paths(model)
        out["blocks"] = bp.as_dict()
        panels.append(("block chain", bp.as_dict()))
        sec.notes.append(
            f"Block chain: {bp.total:.6g} paths, mean length {bp.mean:.2f} blocks of {bp.longest}."
        )
    contrib = None
    if any(isinstance(b, Residual) and b.shortcut is not None for b in model.modules()):
        contrib = path_gradient_contribution(model, (x[:16],), y[:16], F.cross_entropy, samples=3)
        out["gradient"] = contrib
    res["paths"] = out
    ncols = len(panels) + (1 if contrib else 0)
    if ncols:
        fig, axes = _plot.subplots(1, ncols, width=4.3, height=3.4)
        for ax, (title, d) in zip(axes[0], panels):
            counts = np.asarray(d["counts"], dtype=float)
            ax.bar(np.arange(len(counts)), counts / counts.sum(), color=_plot.RESIDUAL)
            ax.set(
                title=f"{title}: {d['total']:.3g} paths",
                xlabel=f"path length ({d['unit']})",
                ylabel="fraction of paths",
            )
        if contrib:
            ax = axes[0][-1]
            tot = np.asarray(contrib["total"])
            ax.bar(contrib["lengths"], tot / tot.sum(), color=_plot.RESIDUAL)
            ax.set(
                title="gradient contribution by path length",
                xlabel="path length (blocks)",
                ylabel="share of total gradient",
            )
        _plot.save(fig, figdir / "paths.png")
        sec.figures.append(
            _fig(
                figdir,
                "paths.png",
                "Path-length distributions and, for residual blocks, the share of the input gradient carried by paths of each length (Veit et al. 2016, Fig. 6), at init.",
            )
        )


def _gradflow(
    sec: Section,
    init: dict[str, Any],
    probe: GradientFlowProbe | None,
    res: dict[str, Any],
    figdir: Path,
) -> None:
    trained = probe.collect() if probe is not None else {}
    res["gradflow"] = {"init": init, "training": trained}
    groups = init["groups"]
    fig, axes = _plot.subplots(1, 2, width=5.0, height=3.5)
    ax = axes[0][0]
    ax.semilogy(
        range(len(groups)), init["grad_norm"][0], "o-", color=_plot.RESIDUAL, label="init", ms=3
    )
    steps = trained.get("grad_norm", [])
    if steps:
        ax.semilogy(
            range(len(groups)),
            np.mean(steps[-5:], axis=0),
            "s-",
            color=_plot.PLAIN,
            label="end of training (last 5 steps)",
            ms=3,
        )
    ax.set(
        title="parameter-gradient norm per block",
        xlabel="group (0 = before blocks, last = after)",
        ylabel="||dL/dW||",
    )
    ax.legend()
    ax = axes[0][1]
    if init.get("split_blocks"):
        ax.semilogy(
            init["shortcut_grad"][0], "o-", color=_plot.RESIDUAL, label="via shortcut", ms=3
        )
        ax.semilogy(init["branch_grad"][0], "s-", color=_plot.PLAIN, label="via branch", ms=3)
        ax.set(
            title="gradient reaching each block input, at init",
            xlabel="residual merge (forward order)",
            ylabel="norm",
        )
        ax.legend()
    else:
        ax.text(
            0.5,
            0.5,
            "no skiplab Residual blocks:\nno shortcut/branch split",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    _plot.save(fig, figdir / "gradflow.png")
    sec.figures.append(
        _fig(
            figdir,
            "gradflow.png",
            "Left: gradient norm of each block's parameters at init and at the end of the short training. Right: norm of the part of dL/dx that arrives through the shortcut and through the branch of each residual block.",
        )
    )
    if steps:
        sec.notes.append(f"Recorded {len(steps)} training step(s) with the probe attached.")


def _landscape(
    sec: Section,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    res: dict[str, Any],
    figdir: Path,
) -> None:
    line = loss_line(model, F.cross_entropy, (x,), y, alphas=np.linspace(-1, 1, 31))
    plane = loss_plane(model, F.cross_entropy, (x,), y, span=1.0, steps=15)
    res["landscape"] = {"line": line.as_dict(), "plane": plane.as_dict()}
    plot_line(
        {"model": line.as_dict()},
        figdir / "landscape_line.png",
        "1-D loss along a filter-normalised direction",
    )
    plot_plane({"model": plane.as_dict()}, figdir / "landscape_plane.png")
    sec.figures.append(
        _fig(
            figdir,
            "landscape_line.png",
            "Loss along one filter-normalised direction (0 = trained weights).",
        )
    )
    sec.figures.append(
        _fig(
            figdir,
            "landscape_plane.png",
            "Loss on the plane of two filter-normalised directions: contours and surface (log10 loss).",
        )
    )
    z = np.asarray(plane.loss)
    sec.notes.append(
        f"Centre loss {z[z.shape[0] // 2, z.shape[1] // 2]:.4g}, grid max {np.nanmax(z):.4g}, on {len(x)} fixed training examples."
    )


def _lesion(
    sec: Section,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    res: dict[str, Any],
    figdir: Path,
) -> None:
    n_blocks = len(find_blocks(model))
    ks = sorted({k for k in (1, 2, n_blocks // 4, n_blocks // 2) if k >= 1})
    les = lesion_study(model, x, y, ks=ks, draws=4)
    res["lesion"] = les.as_dict()
    _lesion_page(sec, les, figdir)


def _lesion_page(sec: Section, les: Any, figdir: Path) -> None:
    metric = getattr(les, "metric", "accuracy")
    names = list(les.single)
    if les.not_deletable:
        sec.notes.append(
            f"Not deletable (output shape differs from input, no shortcut): {', '.join(les.not_deletable)}."
        )
    if not names:
        sec.notes.append("Nothing could be deleted, so there is no lesion plot.")
        return
    bounded = metric.endswith("accuracy")
    fig, axes = _plot.subplots(1, 2, width=5.0, height=3.8)
    ax = axes[0][0]
    ax.plot(range(len(names)), [les.single[n] for n in names], "o-", color=_plot.RESIDUAL, ms=3)
    ax.axhline(les.base, color=_plot.REFERENCE, ls="--", label=f"intact {les.base:.3f}")
    ax.set(title="delete one", ylabel=metric, **({"ylim": (0, 1)} if bounded else {}))
    _name_ticks(ax, names, limit=20)
    ax.legend()
    ax = axes[0][1]
    if les.random:
        kk = sorted(les.random)
        ax.errorbar(
            kk,
            [np.mean(les.random[k]) for k in kk],
            yerr=[np.std(les.random[k]) for k in kk],
            fmt="o-",
            color=_plot.RESIDUAL,
            capsize=3,
        )
    else:
        ax.text(0.5, 0.5, "fewer than two deletable units:\nno random subsets", ha="center",
                va="center", transform=ax.transAxes)  # fmt: skip
    ax.set(title="delete k at random", xlabel="k", ylabel=metric,
           **({"ylim": (0, 1)} if bounded else {}))  # fmt: skip
    _plot.save(fig, figdir / "lesion.png")
    sec.figures.append(
        _fig(
            figdir,
            "lesion.png",
            f"Test {metric} after deleting one block or residual branch (left) and k random ones at once (right, mean and spread over draws).",
        )
    )
    sec.tables.append(
        Table(
            "Delete one",
            ["deleted", metric, "change"],
            [[n, a, a - les.base] for n, a in les.single.items()],
        )
    )


def write_diagnosis(diagnosis: Diagnosis, out: Path) -> Path:
    """The page of a :func:`skiplab.diagnose` result: ``out/index.html`` and its figures."""
    figdir = out / "figures"
    with report_lock(out):
        check_regular_target(out / "index.html", "report file")
        sections = []
        pages: dict[str, tuple[Any, Callable[[Section, Any, Path], None]]] = {
            "skips": (diagnosis.skips, _skips_page),
            "signal": (diagnosis.signal, _signal_page),
            "gradflow": (diagnosis.gradient_split, _split_page),
            "jacobian": (diagnosis.jacobian, _jacobian_page),
            "lesion": (diagnosis.lesion, _lesion_page),
        }
        for key, (value, page) in pages.items():
            if value is None and key not in diagnosis.errors:
                continue
            sec = Section(key, _TITLES[key], _ABOUT[key], wall_s=diagnosis.wall_s.get(key, 0.0))
            if key == "gradflow":
                sec.about = (
                    "The split of the gradient reaching each residual merge's fork between "
                    "its shortcut and its branch, at the current weights."
                )
            if value is not None:
                page(sec, value, figdir)
            sec.error = diagnosis.errors.get(key)
            sections.append(sec)
        note = f"Blocks: {', '.join(diagnosis.blocks) or 'none found'}."
        html = _ENV.get_template("diagnose.html").render(
            model=diagnosis.model, data=f"inputs {diagnosis.inputs}", epochs=None, run_id=None,
            training=f"{note} Loss: {diagnosis.task or 'none'}.", params=diagnosis.params, sections=sections,
            generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), store_path="", command="",
        )  # fmt: skip
        index = out / "index.html"
        write_page(index, html)
    return index


def load_factory(spec: str) -> Any:
    """Build a model from ``package.module:factory`` (the current directory is importable, as
    with ``python -m``): the factory returns a model, ``(model, example_inputs)`` or
    ``(model, example_inputs, target)``."""
    import importlib
    import os
    import sys

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model {spec!r}: expected a registry name or package.module:factory")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model {spec!r}: cannot import module {module_name!r} ({err})") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: {module_name} has no callable {attr!r}")
    built = factory()
    model = built[0] if isinstance(built, tuple) and 2 <= len(built) <= 3 else built
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model {spec!r}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    return built


def train_briefly(model: nn.Module, splits: Splits, epochs: int, seed: int) -> dict[str, Any]:
    """Train ``model`` in place with skiplab's Trainer (SGD, cosine, lr 0.05) for the probes
    that need a trained model; returns the last epoch's metrics."""
    from skiplab.train import TrainConfig, Trainer

    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, seed=seed, weight_decay=5e-4)
    history = Trainer(model, cfg, progress=False).fit(splits.train, splits.test)
    return dict(history.last)
