"""lesion_study on third-party models: residual adds from the recorded forward pass as units."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import zoo

from skiplab.diagnostics._inputs import primary
from skiplab.diagnostics.lesion import lesion_study
from skiplab.models import create_model


def test_gpt2_units_are_its_six_sub_blocks_and_deleting_all_zeroes_them():
    model, inputs, target = zoo.build("gpt2")
    res = lesion_study(model, inputs, target)
    names = [f"transformer.h.{i}.{p}" for i in range(3) for p in ("attn", "mlp")]
    assert sorted(res.single) == sorted(names)
    assert res.metric == "next-token accuracy"
    assert res.units == {n: n.rsplit(".", 1)[0] for n in names}
    res_all = lesion_study(model, inputs, target, ks=[6], draws=1)

    def zero(_m, _a, out):
        if isinstance(out, tuple):
            return (torch.zeros_like(out[0]), *out[1:])
        return torch.zeros_like(out)

    handles = [model.get_submodule(n).register_forward_hook(zero) for n in names]
    try:
        with torch.no_grad():
            model.eval()
            ids = inputs.kwargs.get("input_ids", inputs.args[0] if inputs.args else None)
            want = primary(inputs(model))
    finally:
        for h in handles:
            h.remove()
    want_acc = float((want[:, :-1].argmax(-1) == ids[:, 1:]).float().mean())
    assert math.isclose(res_all.random[6][0], want_acc, abs_tol=1e-9)


def test_third_party_models_give_finite_scores_for_every_unit():
    for name in ("bert", "t5", "deepgcn", "gcnii"):
        model, inputs, target = zoo.build(name)
        res = lesion_study(model, inputs, target)
        assert res.single, name
        assert all(math.isfinite(v) for v in res.single.values()), name
        assert not res.not_deletable, name


def test_plain_gcn_falls_back_to_identity_units():
    from torch_geometric.nn import GCN

    torch.manual_seed(0)
    x = torch.randn(20, 8)
    edge_index = torch.randint(0, 20, (2, 60))
    model = GCN(8, 8, num_layers=3, out_channels=8)
    y = torch.randint(0, 8, (20,))
    res = lesion_study(model, (x, edge_index), y)
    assert res.single and set(res.units.values()) == {"identity"}
    assert all(math.isfinite(v) for v in res.single.values())


def test_skiplab_resnet_gives_the_committed_implementations_numbers():
    # numbers of lesion.py at 778b024 (before the generic path), same seeds and call
    old = json.loads((Path(__file__).parent / "lesion_resnet20_778b024.json").read_text())
    torch.manual_seed(0)
    for name in ("resnet20", "plain20"):
        m = create_model(name, dim=1, in_channels=1, num_classes=10)
        x, y = torch.randn(64, 1, 16), torch.randint(0, 10, (64,))
        got = lesion_study(m, x, y, ks=[2, 4], draws=3, seed=1, batch_size=24).as_dict()
        for key in ("base", "single", "random", "not_deletable"):
            assert got[key] == old[name]["lesion"][key], (name, key)
