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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from scipy import stats

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.diagnostics import chain_path_stats, find_skips, graph_paths, model_block_paths
from skiplab.models import create_model

CHAINS = ("chain", "shortcut")  # the chain alone, and with the first-to-last shortcut
NETWORKS = ("plain", "resnet")  # a plain network and its ResNet twin (skip=True)


@dataclass(frozen=True)
class Settings:
    neurons: int = 101  # the article's chain: 100 hops end to end
    depths: tuple[int, ...] = (56,)  # He et al. 2015's deepest CIFAR pair traced on a CPU in 1 s
    image_size: int = 16  # the input only has to trace: path counts do not depend on it


SCALES = {
    "tiny": Settings(depths=(20,)),
    "quick": Settings(),
    "full": Settings(depths=(56, 110)),
}


@dataclass(frozen=True)
class Condition:
    graph: str  # chain, shortcut (chain + edge (0, N-1)), plain or resnet (a traced network)
    size: int  # neurons of the chain, or depth of the network


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Exact path statistics of one graph; per-index series are logged as steps."""
    if c.graph in CHAINS:
        shortcut = (0, c.size - 1) if c.graph == "shortcut" else None
        chain = nx.path_graph(c.size)
        chain.add_edges_from([shortcut] if shortcut else [])
        for neuron, hops in nx.single_source_shortest_path_length(chain, 0).items():
            run.log(neuron, hops=hops)  # shortest path from neuron 0
        return chain_path_stats(c.size, shortcut)
    skip = c.graph == "resnet"
    model = run.build(lambda: create_model("resnet_cifar", depth=c.size, skip=skip))
    x = run.put(torch.randn(2, 3, s.image_size, s.image_size, generator=run.generator()))
    report = find_skips(model, (x,))
    if report.traced is None:
        raise RuntimeError(f"could not trace {c.graph}{c.size}: {report.note}")
    graph, blocks = graph_paths(report.traced), model_block_paths(model)
    for length, count in enumerate(graph.counts):
        run.log(length, paths=count)  # input-output paths of this many weight layers
    for branches, count in enumerate(blocks.counts):
        run.log(branches, block_paths=count)  # block-level paths through this many branches
    return {"graph": graph.as_dict(), "blocks": blocks.as_dict(), "merges": len(report.merges)}


@dataclass
class ChainResult:
    diameter: float
    average: float
    hops: list[float]  # shortest path from neuron 0 to each neuron


@dataclass
class GraphResult:  # input-output paths of one traced network, lengths in weight layers
    total: float
    longest: float
    mean: float
    shortest: float
    counts: list[float]  # counts[L]: paths of length L
    blocks: int  # blocks on the block-level path chain
    binomial_maxdiff: float  # block paths vs Binomial(blocks, 1/2), largest difference


@dataclass
class Result(Summary):
    neurons: int
    chains: dict[str, ChainResult]  # chain, shortcut
    graphs: dict[int, dict[str, GraphResult]]  # depth -> plain / resnet
    seeds: list[int]


@register_claim
class SmallWorld(Claim[Settings, Condition, Result]):
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
    default_seeds = {"tiny": 1, "quick": 1, "full": 1}  # exact counts: every seed is the same
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        chains = [Condition(g, s.neurons) for g in CHAINS]
        return chains + [Condition(g, d) for d in s.depths for g in NETWORKS]

    def cost(self, s: Settings, c: Condition) -> float:
        return 1.0 if c.graph in CHAINS else c.size / 10  # tracing grows with depth

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        chains = {}
        for g in CHAINS:
            r = runs.where(graph=g).records[0]  # exact: every seed measures the same
            chains[g] = ChainResult(r.get("diameter"), r.get("average"), r.curve("hops"))
        graphs: dict[int, dict[str, GraphResult]] = {}
        for depth in s.depths:
            graphs[depth] = {}
            for g in NETWORKS:
                r = runs.where(graph=g, size=depth).records[0]
                gp, counts = r.get("graph"), np.asarray(r.get("blocks")["counts"], dtype=float)
                n = len(counts) - 1
                binom = stats.binom.pmf(np.arange(n + 1), n, 0.5)
                graphs[depth][g] = GraphResult(
                    gp["total"], gp["longest"], gp["mean"], gp["shortest"], gp["counts"], n,
                    float(np.abs(counts / counts.sum() - binom).max()),
                )  # fmt: skip
        return Result(s.neurons, chains, graphs, runs.seeds)

    def checks(self, r: Result) -> list[Check]:
        chain, ring = r.chains["chain"], r.chains["shortcut"]
        cut = 1 - ring.average / chain.average
        out = [
            Check(f"the shortcut halves the longest path exactly ({r.neurons - 1} -> "
                  f"{(r.neurons - 1) // 2})", chain.diameter == 2 * ring.diameter == r.neurons - 1,
                  f"{chain.diameter:.0f} -> {ring.diameter:.0f} hops"),
            Check("the shortcut cuts the average shortest path by at least 20%", cut >= 0.2,
                  f"{chain.average:.2f} -> {ring.average:.2f} hops, {100 * cut:.1f}% shorter"),
        ]  # fmt: skip
        for depth, g in r.graphs.items():
            plain, res = g["plain"], g["resnet"]
            ratio = res.mean / plain.mean
            out += [
                Check(f"ResNet-{depth} keeps plain-{depth}'s longest path",
                      res.longest == plain.longest, f"{res.longest:.0f} vs {plain.longest:.0f}"),
                Check(f"ResNet-{depth}'s mean path is at most 0.6 of plain-{depth}'s",
                      ratio <= 0.6, f"ratio {ratio:.2f}"),
                Check(f"ResNet-{depth}'s block paths follow Binomial({res.blocks}, 1/2)",
                      res.binomial_maxdiff < 1e-12, f"max diff {res.binomial_maxdiff:.1e}"),
            ]  # fmt: skip
        return out

    def detail(self, r: Result) -> str:
        chain, ring = r.chains["chain"], r.chains["shortcut"]
        nets = "; ".join(
            f"resnet{d}: {g['resnet'].total:.4g} paths, mean {g['resnet'].mean:.1f} vs plain{d}: "
            f"1 path of {g['plain'].longest:.0f} layers (ratio "
            f"{g['resnet'].mean / g['plain'].mean:.2f}); block paths vs "
            f"Binomial({g['resnet'].blocks}, 1/2): max diff {g['resnet'].binomial_maxdiff:.1e}"
            for d, g in r.graphs.items()
        )
        cut = 1 - ring.average / chain.average
        return (
            f"chain diameter {chain.diameter:.0f} -> {ring.diameter:.0f}, average "
            f"{chain.average:.2f} -> {ring.average:.2f} ({100 * cut:.1f}% shorter); {nets}"
        )

    def literature(self, r: Result) -> list[Comparison]:
        chain, ring = r.chains["chain"], r.chains["shortcut"]
        cut = 1 - ring.average / chain.average
        out = [
            Comparison(
                "Watts & Strogatz 1998, abstract and text",
                "rewired lattices are highly clustered yet have small characteristic path "
                "lengths; 'for small p, each short cut has a highly nonlinear effect on L'",
                f"one shortcut among {r.neurons - 1} edges: average path {chain.average:.2f} -> "
                f"{ring.average:.2f} hops ({100 * cut:.1f}% shorter), longest {chain.diameter:.0f} "
                f"-> {ring.diameter:.0f}; a chain closed into a ring, not a rewired k-lattice",
                cut >= 0.2,
            )
        ]
        for depth, g in r.graphs.items():
            res = g["resnet"]
            out.append(
                Comparison(
                    "Veit, Wilber & Belongie 2016, sec. 3 and abstract",
                    "a residual network of n blocks has 2^n input-output paths whose lengths "
                    "follow a binomial distribution; in ResNet-110 most of the gradient comes "
                    "from paths only 10-34 layers deep",
                    f"ResNet-{depth}: {res.total:.4g} paths = 2^{res.blocks} = "
                    f"{2.0**res.blocks:.4g}, block paths vs Binomial({res.blocks}, 1/2) max diff "
                    f"{res.binomial_maxdiff:.1e} (counted, not weighted by gradient: the 10-34 "
                    "layer figure is not measured here)",
                    res.total == 2.0**res.blocks and res.binomial_maxdiff < 1e-12,
                )
            )
        return out

    def numbers(self, r: Result) -> dict[str, float]:
        chain, ring = r.chains["chain"], r.chains["shortcut"]
        out = {"chain_diameter": chain.diameter, "chain_average": chain.average,
               "shortcut_diameter": ring.diameter, "shortcut_average": ring.average}  # fmt: skip
        for depth, by in r.graphs.items():
            for g, p in by.items():
                stats = (("total", p.total), ("longest", p.longest), ("mean", p.mean),
                         ("shortest", p.shortest))  # fmt: skip
                out |= {f"{g}{depth}_paths_{k}": float(v) for k, v in stats}
            res = by["resnet"]
            out |= {f"resnet{depth}_binomial_maxdiff": res.binomial_maxdiff,
                    f"resnet{depth}_blocks": float(res.blocks)}  # fmt: skip
        return out

    def tables(self, r: Result) -> list[Table]:
        chain, ring = r.chains["chain"], r.chains["shortcut"]
        rows: list[list[Any]] = [
            [f"{r.neurons}-neuron chain", 1, chain.diameter, chain.average, "-"],
            [f"chain + shortcut (0, {r.neurons - 1})", "-", ring.diameter, ring.average, "-"],
        ]
        for depth, by in r.graphs.items():
            for g, p in by.items():
                rows.append([f"{g}{depth} computation graph", p.total, p.longest, p.mean,
                             p.shortest])  # fmt: skip
        return [
            Table(
                "Path statistics (exact)",
                ["graph", "paths", "longest", "average", "shortest"],
                rows,
                "chain rows: shortest-path distances between all node pairs (hops); model rows: "
                "input-output paths of the traced computation graph, length in weight layers",
            )
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 2, width=5.2, height=3.7)
        ax = axes[0][0]
        ax.plot(r.chains["chain"].hops, color=_plot.PLAIN, lw=2, label="chain")
        ax.plot(r.chains["shortcut"].hops, color=_plot.RESIDUAL, lw=2,
                label=f"chain + shortcut (0, {r.neurons - 1})")  # fmt: skip
        ax.set(title="hops from neuron 0", xlabel="neuron", ylabel="shortest path (hops)")
        ax.legend()
        ax = axes[0][1]
        depth = max(r.graphs)
        for g, color in (("plain", _plot.PLAIN), ("resnet", _plot.RESIDUAL)):
            counts = np.asarray(r.graphs[depth][g].counts, dtype=float)
            lengths = np.nonzero(counts)[0]
            ax.bar(lengths, counts[lengths] / counts.sum(), width=1.6, color=color, alpha=0.8,
                   label=f"{g}{depth}: {counts.sum():.3g} path(s)")  # fmt: skip
        ax.set(title="input-output path lengths", xlabel="path length (weight layers)",
               ylabel="fraction of paths")  # fmt: skip
        ax.legend()
        _plot.save(fig, outdir / "paths.png")
        return [
            Figure(
                "paths.png",
                f"Left: distance from the first neuron in a {r.neurons}-neuron chain, with and "
                "without the first-to-last shortcut. Right: path-length distribution of the traced "
                f"computation graphs of plain-{depth} (one path) and ResNet-{depth} (2^n paths, "
                "binomial).",
            )
        ]
