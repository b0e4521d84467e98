"""Deep graph neural networks on PyTorch Geometric convolutions, with and without skips.

Variants (``GNNConfig.variant``), each on any of the convolutions in :data:`CONVS`:

* ``"plain"`` -- Kipf & Welling 2017: ``H_{l+1} = relu(A_hat H_l W_l)``, convolutions from the
  input features to the classes, no skip. The reference that oversmooths with depth.
* ``"res"`` -- ResGCN (Li et al. 2019, "DeepGCNs"): ``H_{l+1} = H_l + relu(norm(conv(H_l)))``.
* ``"res+"`` -- pre-activation residual (Li et al. 2020, "DeeperGCN"):
  ``H_{l+1} = H_l + conv(dropout(relu(norm(H_l))))``; the identity path is clean end to end.
* ``"initial"`` -- GCNII (Chen et al. 2020, eq. 5): initial residual and identity mapping,
  ``H_{l+1} = relu(((1 - alpha) P H_l + alpha H_0)((1 - beta_l) I + beta_l W_l))``; every layer
  keeps a share of the input.
* ``"jk"`` -- jumping knowledge by concatenation (Xu et al. 2018): the head reads
  ``[H_1, ..., H_L]``, a skip from every layer to the output.

All but ``"plain"`` embed the input with a linear layer and classify with another, as GCNII
does. ``skip=False`` gives each one's plain twin (same layers, merges removed).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import APPNP, GATConv, GCNConv, GraphConv, SAGEConv

from skiplab.models._registry import register_family_example, register_model
from skiplab.nn import FixedScale, Residual, SkipModule, check_same_shape
from skiplab.nn.concat import LayerConcat

CONVS = ("gcn", "graph", "sage", "gat")
VARIANTS = ("plain", "res", "res+", "initial", "jk")


@dataclass
class GNNConfig:
    """Architecture of a deep GNN for node classification."""

    in_channels: int = 1433  # Cora's bag-of-words features
    num_classes: int = 7  # Cora's classes
    hidden: int = 64  # GCNII's width on Cora
    num_layers: int = 2  # message-passing layers; 2 is Kipf & Welling's GCN
    conv: str = "gcn"  # one of CONVS
    variant: str = "plain"  # one of VARIANTS
    dropout: float = 0.5  # Kipf & Welling and GCNII both use 0.5 on Cora
    layer_dropout: float | None = None  # dropout inside res/res+/jk blocks; None: same as dropout
    alpha: float = 0.1  # initial-residual share of H_0 (GCNII's Cora value)
    lamda: float = 0.5  # GCNII identity mapping beta_l = log(lamda / l + 1) (its Cora value)
    heads: int = 4  # attention heads of "gat" (hidden must be divisible by it)
    norm: bool = True  # BatchNorm in "res"/"res+"/"jk" blocks, as DeepGCN; plain GCN has none
    cached: bool = False  # cache GCN normalisation: only for a fixed graph (transductive Cora)
    skip: bool = True  # False: the plain twin of the variant

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise ValueError(f"GNN conv must be one of {CONVS}, got {self.conv!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"GNN variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.num_layers < 1:
            raise ValueError(f"GNN num_layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"GNN alpha must be in [0, 1], got {self.alpha}")
        if self.conv == "gat" and self.hidden % self.heads:
            raise ValueError(f"GAT needs hidden ({self.hidden}) divisible by heads ({self.heads})")


def make_conv(cfg: GNNConfig, cin: int, cout: int) -> nn.Module:
    """A PyG convolution ``cin -> cout`` of kind ``cfg.conv``."""
    if cfg.conv == "gcn":
        return GCNConv(cin, cout, cached=cfg.cached)
    if cfg.conv == "graph":
        return GraphConv(cin, cout, aggr="mean")  # mean keeps the scale degree-independent
    if cfg.conv == "sage":
        return SAGEConv(cin, cout)
    if cout % cfg.heads:  # the output layer of a plain GAT: average the heads instead
        return GATConv(cin, cout, heads=cfg.heads, concat=False)
    return GATConv(cin, cout // cfg.heads, heads=cfg.heads)


class GraphLayer(nn.Module):
    """One message-passing layer as parts: ``conv``, ``norm``, ``act``, ``dropout``.

    Args:
        conv: a PyG convolution called as ``conv(x, edge_index)``.
        norm: applied to node features (default none).
        act: the nonlinearity (default none).
        dropout: feature dropout probability.
        preact: ``norm -> act -> dropout -> conv`` (res+) instead of ``conv -> norm -> act``.

    Shapes:
        ``x`` ``(N, C_in)``, ``edge_index`` ``(2, E)``; returns ``(N, C_out)``.
    """

    def __init__(
        self,
        conv: nn.Module,
        norm: nn.Module | None = None,
        act: nn.Module | None = None,
        dropout: float = 0.0,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm or nn.Identity()
        self.act = act or nn.Identity()
        self.dropout = dropout
        self.preact = preact

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if self.preact:
            x = F.dropout(self.act(self.norm(x)), self.dropout, self.training)
            return self.conv(x, edge_index)
        x = self.conv(F.dropout(x, self.dropout, self.training), edge_index)
        return self.act(self.norm(x))

    def extra_repr(self) -> str:
        return f"dropout={self.dropout:g}, preact={self.preact}"


class GraphResidual(Residual):
    """:class:`~skiplab.nn.Residual` for message passing: ``y = x + F(x, edge_index)``.

    The branch takes the graph too; everything else (scale, post, drop-path, shape check, the
    plain twin with ``skip=False``) is the residual part's.
    """

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = self.drop_path(self.scale(self.branch(x, edge_index)))  # (N, C)
        if self.shortcut is None:
            return self.post(out)
        shortcut = self.shortcut(x)
        check_same_shape(self, "shortcut + branch", shortcut, out, "Keep hidden widths equal.")
        return self.post(shortcut + out)


class InitialResidual(SkipModule):
    """Initial residual (Chen et al. 2020, GCNII eq. 5): ``y = (1 - alpha) F(x) + alpha x_0``.

    Args:
        branch: the propagation F, called as ``branch(x, edge_index)``.
        alpha: the share of the initial representation ``x_0`` (default 0.1).
        skip: False builds the plain twin ``y = F(x)``.

    Shapes:
        ``x``, ``x0``: ``(N, C)``; returns ``(N, C)``.
    """

    def __init__(self, branch: nn.Module, alpha: float = 0.1, *, skip: bool = True) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"InitialResidual alpha must be in [0, 1], got {alpha}")
        self.branch = branch
        self.alpha = float(alpha)
        self.skip = skip

    def forward(self, x: torch.Tensor, x0: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        out = self.branch(x, edge_index)  # (N, C)
        if not self.skip:
            return out
        check_same_shape(self, "x0 + branch", x0, out, "Keep hidden widths equal to x0's.")
        return (1 - self.alpha) * out + self.alpha * x0

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, skip={self.skip}"


class GCNIIBlock(nn.Module):
    """One GCNII layer (Chen et al. 2020, eq. 5) from two skip parts:

        H_{l+1} = relu( ((1 - alpha) P H_l + alpha H_0) ((1 - beta_l) I + beta_l W_l) )

    the initial residual (:class:`InitialResidual`) around the propagation ``P H_l``, then the
    identity mapping, a :class:`~skiplab.nn.Residual` ``(1 - beta) z + beta W z`` (shortcut
    scaled by ``1 - beta``, branch by ``beta``), with ``beta_l = log(lambda / l + 1)``.
    ``skip=False`` removes both: ``relu(beta W P H)``, a plain GCN layer.

    Args:
        propagate: ``P``, called as ``propagate(x, edge_index)`` (a weight-free GCN step for
            ``conv="gcn"``, otherwise the convolution itself).
        channels: feature width.
        alpha: initial-residual share; beta: identity-mapping strength of this layer.
        dropout: feature dropout before the propagation.
    """

    def __init__(
        self, propagate: nn.Module, channels: int, alpha: float, beta: float, dropout: float,
        *, skip: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.initial = InitialResidual(GraphLayer(propagate, dropout=dropout), alpha, skip=skip)
        self.mapping = Residual(
            nn.Linear(channels, channels, bias=False),
            shortcut=FixedScale(1 - beta),
            scale=FixedScale(beta),
            skip=skip,
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, x0: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        z = self.initial(x, x0, edge_index)  # (1 - alpha) P x + alpha x0
        return self.act(self.mapping(z))  # (1 - beta) z + beta W z


def feature_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout of input features that draws a random number only for each non-zero entry.

    The same distribution as ``F.dropout`` (a zero stays zero whether it is dropped or not),
    for sparse bag-of-words features far cheaper: Cora's 2,708 x 1,433 features are 1.3%
    non-zero, and dropping them densely was two thirds of a 2-layer GCN's training step
    (65 -> about 20 ms per full-batch epoch on one CPU thread, measured). Dense features
    (more than a quarter non-zero) take ``F.dropout``.

    Shapes:
        x: ``(N, F)``; returns ``(N, F)``.
    """
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    rows, cols = x.nonzero(as_tuple=True)
    if rows.numel() > x.numel() // 4:
        return F.dropout(x, p, True)
    keep = torch.rand(rows.numel(), device=x.device) >= p
    rows, cols = rows[keep], cols[keep]
    out = torch.zeros_like(x)
    out[rows, cols] = x[rows, cols] / (1.0 - p)
    return out


class GNN(nn.Module):
    """A deep GNN for node classification (see the module docstring for the variants).

    Shapes:
        ``x`` ``(N, in_channels)``, ``edge_index`` ``(2, E)``; returns logits
        ``(N, num_classes)``. ``layers[l]`` outputs the representation ``H_{l+1}``, the place
        where :mod:`skiplab.diagnostics.oversmoothing` hooks in.
    """

    def __init__(self, cfg: GNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, p = cfg.hidden, cfg.dropout
        self.layers = nn.ModuleList()
        if cfg.variant == "plain":
            widths = [cfg.in_channels] + [h] * (cfg.num_layers - 1) + [cfg.num_classes]
            for i, (cin, cout) in enumerate(itertools.pairwise(widths)):
                last = i == cfg.num_layers - 1
                # the input features are dropped in forward (feature_dropout), not in layer 0
                self.layers.append(
                    GraphLayer(
                        make_conv(cfg, cin, cout),
                        None,
                        None if last else nn.ReLU(),
                        p if i > 0 else 0.0,
                    )
                )
            self.encoder: nn.Module | None = None
            self.head: nn.Module | None = None
            self.jump: LayerConcat | None = None
            self.final: nn.Module = nn.Identity()
        else:
            self.encoder = nn.Linear(cfg.in_channels, h)
            if cfg.variant == "initial":  # GCNII's H_0 = relu(X W_0)
                self.encoder = nn.Sequential(self.encoder, nn.ReLU())
            for index in range(cfg.num_layers):
                self.layers.append(self._block(cfg, index))
            self.jump = LayerConcat(skip=cfg.skip) if cfg.variant == "jk" else None
            head_in = h * cfg.num_layers if (self.jump is not None and cfg.skip) else h
            # res+ leaves the last normalisation and activation to the end, as pre-act ResNets.
            self.final = (
                nn.Sequential(self._norm(), nn.ReLU()) if cfg.variant == "res+" else nn.Identity()
            )
            self.head = nn.Linear(head_in, cfg.num_classes)
        self.reset_parameters()

    def _norm(self) -> nn.Module:
        return nn.BatchNorm1d(self.cfg.hidden) if self.cfg.norm else nn.Identity()

    def _block(self, cfg: GNNConfig, index: int) -> nn.Module:
        conv = make_conv(cfg, cfg.hidden, cfg.hidden)
        p = cfg.dropout if cfg.layer_dropout is None else cfg.layer_dropout
        if cfg.variant == "res":
            return GraphResidual(GraphLayer(conv, self._norm(), nn.ReLU(), p), skip=cfg.skip)
        if cfg.variant == "res+":
            layer = GraphLayer(conv, self._norm(), nn.ReLU(), p, preact=True)
            return GraphResidual(layer, skip=cfg.skip)
        if cfg.variant == "initial":
            # GCNII propagates without a weight (the identity mapping carries it): one APPNP step
            # with teleport 0 is exactly the GCN-normalised P H.
            prop = APPNP(K=1, alpha=0.0, cached=cfg.cached) if cfg.conv == "gcn" else conv
            beta = math.log(cfg.lamda / (index + 1) + 1)
            return GCNIIBlock(prop, cfg.hidden, cfg.alpha, beta, cfg.dropout, skip=cfg.skip)
        return GraphLayer(conv, self._norm(), nn.ReLU(), p)  # "jk": plain layers

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and callable(getattr(m, "reset_parameters", None)):
                if isinstance(m, SkipModule | GraphLayer):
                    continue  # containers; their leaves reset themselves
                m.reset_parameters()  # type: ignore[operator]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"GNN expects x (N, {self.cfg.in_channels}), got {tuple(x.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"GNN expects edge_index (2, E), got {tuple(edge_index.shape)}")
        x = feature_dropout(x, self.cfg.dropout, self.training)  # (N, in_channels)
        if self.encoder is None:  # plain GCN: conv layers from features to classes
            for layer in self.layers:
                x = layer(x, edge_index)  # (N, C_l)
            return x
        x = self.encoder(x)  # (N, hidden)
        x0, hidden = x, []
        for layer in self.layers:
            if isinstance(layer, GCNIIBlock):
                x = layer(x, x0, edge_index)  # (1 - alpha) conv(x) + alpha x0
            else:
                x = layer(x, edge_index)  # residual variants: x + F(x) inside the block
            hidden.append(x)
        if self.jump is not None:
            x = self.jump(hidden)  # (N, hidden * L): every layer reaches the head
        x = self.final(x)
        assert self.head is not None
        return self.head(F.dropout(x, self.cfg.dropout, self.training))  # (N, num_classes)


def _gnn(**kwargs: Any) -> GNN:
    return GNN(replace(GNNConfig(), **kwargs))


def _example_graph() -> tuple[torch.Tensor, torch.Tensor]:
    """A small random undirected graph with Cora-sized features: 12 nodes, 30 edges each way."""
    gen = torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, 12, (2, 30), generator=gen)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)  # (2, 60)
    return torch.rand(12, 1433, generator=gen), edge_index


register_family_example("gnn", _example_graph)


@register_model
def resgcn(**kwargs: Any) -> GNN:
    """ResGCN (Li et al. 2019): ``H + relu(BN(GCN(H)))`` blocks, 8 layers."""
    return _gnn(**{"variant": "res", "num_layers": 8, **kwargs})


@register_model
def resgcn_plus(**kwargs: Any) -> GNN:
    """Pre-activation res+ GCN (Li et al. 2020, DeeperGCN): ``H + GCN(relu(BN(H))))``, 8 layers."""
    return _gnn(**{"variant": "res+", "num_layers": 8, **kwargs})


@register_model
def gcn_initial(**kwargs: Any) -> GNN:
    """GCNII (Chen et al. 2020): initial residual (alpha 0.1) and identity mapping, 8 layers."""
    return _gnn(**{"variant": "initial", "num_layers": 8, **kwargs})


@register_model
def gcn_jk(**kwargs: Any) -> GNN:
    """Jumping-knowledge GCN (Xu et al. 2018): concatenation of all 8 layers at the head."""
    return _gnn(**{"variant": "jk", "num_layers": 8, **kwargs})


@register_model
def ressage_plus(**kwargs: Any) -> GNN:
    """res+ blocks on GraphSAGE convolutions (Hamilton et al. 2017), 8 layers."""
    return _gnn(**{"variant": "res+", "conv": "sage", "num_layers": 8, **kwargs})


@register_model
def resgat(**kwargs: Any) -> GNN:
    """ResGCN blocks on GAT convolutions (Velickovic et al. 2018), 4 heads, 8 layers."""
    return _gnn(**{"variant": "res", "conv": "gat", "num_layers": 8, **kwargs})


@register_model
def graphconv_initial(**kwargs: Any) -> GNN:
    """Initial-residual blocks on GraphConv (Morris et al. 2019), 8 layers."""
    return _gnn(**{"variant": "initial", "conv": "graph", "num_layers": 8, **kwargs})
