"""C08 small-world: one shortcut makes a long chain a small world.

A chain of ``N = 101`` neurons has longest shortest path (diameter) ``N - 1 = 100`` hops and
average shortest path ``(N + 1) / 3 = 34``. One shortcut between the first and the last neuron
closes it into a ring: diameter ``floor(N / 2) = 50`` and average ``(N^2 - 1) / (4 (N - 1))``
``= 25.5`` for odd ``N``. The same counting on a network's computation graph: a plain network of
``L`` weight layers has one input-output path of length ``L``; a ResNet with ``n`` residual
blocks of two layers each has ``2^n`` paths whose lengths are ``2 + 2 k`` with
``k ~ Binomial(n, 1/2)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from scipy import stats

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.diagnostics import chain_path_stats, find_skips, graph_paths, model_block_paths
from skiplab.models import create_model

N_NEURONS = 101


@register_claim
class SmallWorld(Claim):
    id = "C08"
    slug = "small-world"
    title = "One shortcut turns a long chain into a small world"
    statement = (
        "One shortcut from the first to the last neuron of a 101-neuron chain cuts the longest "
        "path from 100 hops to 50 and the average path sharply; skip connections do the same to "
        "the computation graph of a deep network."
    )
    method = (
        "Exact shortest-path statistics with networkx on the 101-node chain with and without the "
        "edge (0, 100). Then the traced computation graphs (torch.fx) of a plain network and its "
        "ResNet twin (ResNet-56 and plain-56 at quick scale): number of input-output paths and "
        "their length distribution in weight layers, counted exactly by dynamic programming over "
        "the graph; the block-level distribution is compared with Binomial(n, 1/2)."
    )
    criterion = (
        "Holds when the shortcut halves the chain's longest path exactly (100 -> 50) and cuts "
        "its average shortest path by at least 20%; and, on the computation graphs, the ResNet "
        "keeps the plain network's longest path but its mean path is at most 0.6 of it, with a "
        "block-path distribution equal to Binomial(n, 1/2) (largest difference < 1e-12)."
    )
    math = (
        "Chain of N nodes: diameter N - 1, average (N + 1) / 3 (= 34 for N = 101).\n"
        "Ring of odd N: diameter (N - 1) / 2 = 50, average (N + 1) / 4 = 25.5.\n"
        "ResNet with n two-layer blocks, stem and head: lengths 2 + 2k with probability "
        "C(n, k) / 2^n; mean 2 + n, longest 2 + 2n = the plain twin's only path."
    )
    references = (
        "Watts & Strogatz 1998, Collective dynamics of small-world networks",
        "Veit, Wilber & Belongie 2016, Residual Networks Behave Like Ensembles of Relatively "
        "Shallow Networks",
    )
    default_seeds = {"tiny": 1, "quick": 1, "full": 1}

    def run(self, ctx: Context) -> Evidence:
        depths = ctx.pick(tiny=[20], quick=[56], full=[56, 110])
        ev = Evidence(seeds=ctx.seeds)
        with ctx.run("C08 chain", {"neurons": N_NEURONS}) as run_id:
            chain = chain_path_stats(N_NEURONS)
            ring = chain_path_stats(N_NEURONS, (0, N_NEURONS - 1))
            ctx.store.finish_run(run_id, "completed", results={"chain": chain, "ring": ring})
        ev.numbers.update(
            chain_diameter=chain["diameter"], chain_average=chain["average"],
            shortcut_diameter=ring["diameter"], shortcut_average=ring["average"],
        )  # fmt: skip
        ev.series["distance_chain"] = _distances(N_NEURONS, None)
        ev.series["distance_shortcut"] = _distances(N_NEURONS, (0, N_NEURONS - 1))
        rows: list[list[Any]] = [
            ["101-neuron chain", 1, chain["diameter"], chain["average"], "-"],
            ["chain + shortcut (0, 100)", "-", ring["diameter"], ring["average"], "-"],
        ]
        graphs: dict[str, Any] = {}
        for depth in depths:
            for skip in (False, True):
                name = f"{'resnet' if skip else 'plain'}{depth}"
                with ctx.run(f"C08 graph {name}", {"depth": depth, "skip": skip}) as run_id:
                    torch.manual_seed(0)
                    model = create_model("resnet_cifar", depth=depth, skip=skip)
                    report = find_skips(model, (torch.randn(2, 3, 16, 16),))
                    if report.traced is None:
                        raise RuntimeError(f"could not trace {name}: {report.note}")
                    gp = graph_paths(report.traced).as_dict()
                    bp = model_block_paths(model).as_dict()
                    ctx.store.finish_run(run_id, "completed", results={"graph": gp, "blocks": bp})
                graphs[name] = {"graph": gp, "blocks": bp, "merges": len(report.merges)}
                rows.append([f"{name} computation graph", gp["total"], gp["longest"], gp["mean"], gp["shortest"]])  # fmt: skip
                for key in ("total", "longest", "mean", "shortest"):
                    ev.numbers[f"{name}_paths_{key}"] = float(gp[key])
                if skip:
                    n = len(bp["counts"]) - 1
                    binom = stats.binom.pmf(np.arange(n + 1), n, 0.5)
                    counts = np.asarray(bp["counts"], dtype=float)
                    ev.numbers[f"{name}_binomial_maxdiff"] = float(
                        np.abs(counts / counts.sum() - binom).max()
                    )
                    ev.numbers[f"{name}_blocks"] = float(n)
        ev.series["graphs"] = graphs
        ev.series["depths"] = depths
        ev.tables.append(
            Table(
                "Path statistics (exact)",
                ["graph", "paths", "longest", "average", "shortest"],
                rows,
                "chain rows: shortest-path distances between all node pairs (hops); model rows: "
                "input-output paths of the traced computation graph, length in weight layers",
            )
        )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        n = evidence.numbers
        halved = n["chain_diameter"] == 2 * n["shortcut_diameter"] == N_NEURONS - 1
        cut = 1 - n["shortcut_average"] / n["chain_average"]
        ok_graph, details = True, []
        for depth in evidence.series["depths"]:
            p, r = f"plain{depth}", f"resnet{depth}"
            same_longest = n[f"{r}_paths_longest"] == n[f"{p}_paths_longest"]
            ratio = n[f"{r}_paths_mean"] / n[f"{p}_paths_mean"]
            binom = n[f"{r}_binomial_maxdiff"] < 1e-12
            ok_graph &= same_longest and ratio <= 0.6 and binom
            details.append(
                f"{r}: {n[f'{r}_paths_total']:.4g} paths, mean {n[f'{r}_paths_mean']:.1f} vs "
                f"{p}: 1 path of {n[f'{p}_paths_longest']:.0f} layers (ratio {ratio:.2f}); "
                f"block paths vs Binomial({n[f'{r}_blocks']:.0f}, 1/2): max diff "
                f"{n[f'{r}_binomial_maxdiff']:.1e}"
            )
        detail = (
            f"chain diameter {n['chain_diameter']:.0f} -> {n['shortcut_diameter']:.0f}, average "
            f"{n['chain_average']:.2f} -> {n['shortcut_average']:.2f} ({100 * cut:.1f}% shorter); "
            + "; ".join(details)
        )
        if halved and cut >= 0.2 and ok_graph:
            return Verdict("holds", detail)
        return Verdict("fails", detail)

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 2, width=5.2, height=3.7)
        ax = axes[0][0]
        ax.plot(evidence.series["distance_chain"], color=_plot.PLAIN, lw=2, label="chain")
        ax.plot(
            evidence.series["distance_shortcut"],
            color=_plot.RESIDUAL,
            lw=2,
            label="chain + shortcut (0, 100)",
        )
        ax.set(title="hops from neuron 0", xlabel="neuron", ylabel="shortest path (hops)")
        ax.legend()
        ax = axes[0][1]
        depth = evidence.series["depths"][-1]
        for skip, color in ((False, _plot.PLAIN), (True, _plot.RESIDUAL)):
            name = f"{'resnet' if skip else 'plain'}{depth}"
            counts = np.asarray(evidence.series["graphs"][name]["graph"]["counts"], dtype=float)
            lengths = np.nonzero(counts)[0]
            ax.bar(lengths, counts[lengths] / counts.sum(), width=1.6, color=color, alpha=0.8,
                   label=f"{name}: {counts.sum():.3g} path(s)")  # fmt: skip
        ax.set(
            title="input-output path lengths",
            xlabel="path length (weight layers)",
            ylabel="fraction of paths",
        )
        ax.legend()
        _plot.save(fig, outdir / "paths.png")
        return [
            Figure(
                "paths.png",
                "Left: distance from the first neuron in a 101-neuron chain, with and without the "
                "first-to-last shortcut. Right: path-length distribution of the traced computation "
                f"graphs of plain-{depth} (one path) and ResNet-{depth} (2^n paths, binomial).",
            )
        ]


def _distances(n: int, shortcut: tuple[int, int] | None) -> list[int]:
    g = nx.path_graph(n)
    if shortcut is not None:
        g.add_edge(*shortcut)
    d = nx.single_source_shortest_path_length(g, 0)
    return [int(d[i]) for i in range(n)]
