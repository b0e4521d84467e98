"""The test zoo for probes on real inputs: each model with its inputs, a target, and its blocks.

Built from the skip-discovery zoo tests' builders (real ``transformers`` configs, real PyG
layers, hand-written replicas), with a head that gives a loss: a language model's next-token
logits, sequence / image / node classification logits with labels, T5's decoder logits with
token labels. ``BLOCKS`` is the number of blocks :func:`~skiplab.diagnostics.find_blocks` must
return (the modules that own the merges), read off each architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs

Entry = tuple[nn.Module, Inputs, Any]  # model, inputs, target (None: next-token)


def _labels(n: int, classes: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def gpt2() -> Entry:
    from test_zoo_transformers import _gpt2

    model, args, kwargs = _gpt2()
    return model, Inputs(args, kwargs), None


def llama() -> Entry:
    from test_zoo_transformers import _llama

    model, args, kwargs = _llama()
    return model, Inputs(args, kwargs), None


def bert() -> Entry:
    import transformers
    from test_zoo_transformers import _bert

    base, args, kwargs = _bert()
    cfg = base.config
    cfg.num_labels = 3
    model = transformers.BertForSequenceClassification(cfg)
    return model, Inputs(args, kwargs), _labels(2, 3)


def t5() -> Entry:
    from test_zoo_transformers import VOCAB, _ids, _t5

    model, args, kwargs = _t5()
    labels = _ids(2) % VOCAB  # (2, 8) token labels for the decoder's logits
    return model, Inputs(args, kwargs), labels


def vit() -> Entry:
    from test_zoo_transformers import _vit

    model, args, kwargs = _vit()
    return model, Inputs(args, kwargs), _labels(2, 3)


def deepgcn() -> Entry:
    from test_zoo_pyg import DeeperGCN, N, _graph

    x, edge_index = _graph()
    return DeeperGCN(4), Inputs((x, edge_index)), _labels(N, 3)


def gcnii() -> Entry:
    from test_zoo_pyg import GCNII, N, _graph

    x, edge_index = _graph()
    return GCNII(3), Inputs((x, edge_index)), _labels(N, 3)


def gcn_jk() -> Entry:
    from test_zoo_pyg import F_IN, D, N, _graph
    from torch_geometric.nn import GCN

    x, edge_index = _graph()
    return (
        GCN(F_IN, D, num_layers=3, out_channels=3, jk="cat"),
        Inputs((x, edge_index)),
        _labels(N, 3),
    )


def _replica(name: str) -> Callable[[], Entry]:
    def build() -> Entry:
        from test_zoo_replicas import MODELS

        make, data = MODELS[name]
        model, x = make(), data()
        out = model(x)
        target = _labels(x.shape[0], out.shape[-1]) if out.dim() == 2 else None
        return model, Inputs((x,)), target

    return build


ZOO: dict[str, Callable[[], Entry]] = {
    "gpt2": gpt2,
    "llama": llama,
    "bert": bert,
    "t5": t5,
    "vit_hf": vit,
    "deepgcn": deepgcn,
    "gcnii": gcnii,
    "gcn_jk": gcn_jk,
    "resnet": _replica("resnet"),
    "densenet": _replica("densenet"),
    "convnext": _replica("convnext"),
    "vit": _replica("vit"),
}
# blocks find_blocks must return: GPT-2 3 layers; Llama 2; BERT 2; T5 2 encoder layers x 2
# sub-layers + 2 decoder layers x 3; HF ViT 2; DeeperGCN 3 res+ layers after the first; GCNII 3
# convs; JK-cat: the concat is the root's (no block), so the 3 GCN convs (repeated units)
BLOCKS = {
    "gpt2": 3,
    "llama": 2,
    "bert": 2,
    "t5": 10,
    "vit_hf": 2,
    "deepgcn": 3,
    "gcnii": 3,
    "gcn_jk": 3,
}


def build(name: str, seed: int = 0) -> Entry:
    """The zoo model ``name`` built under ``seed``, in eval mode-independent state."""
    torch.manual_seed(seed)
    return ZOO[name]()
