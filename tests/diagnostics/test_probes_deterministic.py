"""Measurements do not depend on dropout draws: a probe measures the network, not one random
thinning of it (batch-norm layers still use batch statistics)."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from skiplab.diagnostics import (  # noqa: E402
    batch_statistics,
    block_spectral_norms,
    gradient_split,
    signal_propagation,
)


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                                  resid_pdrop=0.3, attn_pdrop=0.3, embd_pdrop=0.3)  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg), {"input_ids": torch.randint(0, 50, (4, 12))}


@pytest.mark.parametrize(
    "probe",
    [
        lambda m, x: block_spectral_norms(m, x)["sigma"],
        lambda m, x: signal_propagation(m, x)["var"],
        lambda m, x: gradient_split(m, x)["branch_grad"],
    ],
    ids=["jacobian", "signal", "gradient_split"],
)
def test_a_probe_gives_the_same_numbers_whatever_the_rng_state(probe):
    model, x = _gpt2()
    torch.manual_seed(1)
    first = probe(model, x)
    torch.manual_seed(2)
    assert probe(model, x) == first


def test_batch_statistics_turns_dropout_off_and_keeps_batch_norm_on_the_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5)).train()
    x = torch.randn(16, 4) * 3 + 1
    with batch_statistics(model), torch.no_grad():
        y = model(x)
    h = model[0](x).detach()
    expected = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)  # no dropout zeros or 1/p scale
    assert model.training and model[1].running_mean.abs().sum() == 0  # mode and buffers restored


def test_one_tensor_given_twice_stays_one_tensor_when_the_batch_is_cut():
    """A causal LM's ``labels`` are often its ``input_ids`` object itself; cutting the batch
    must keep them one tensor, or a recording of the cut batch has one input more than a
    recording of the whole one (and gradient_split refused the model)."""
    from skiplab.diagnostics import Inputs

    model, x = _gpt2()
    ids = x["input_ids"]
    head = Inputs.of({"input_ids": ids, "labels": ids}).head(2)
    assert head.kwargs["input_ids"] is head.kwargs["labels"]
    moved = Inputs.of({"input_ids": ids, "labels": ids}).to("cpu")
    assert moved.kwargs["input_ids"] is moved.kwargs["labels"]
    split = gradient_split(model, {"input_ids": ids, "labels": ids})  # next-token, labels unused
    assert len(split["merges"]) == 4 and all(b > 0 for b in split["branch_grad"])


def test_signal_has_every_gpt2_blocks_branch_variance():
    """The statistics a block's output hook computes must not enter the recording they run
    in: they shifted every later node, and the second block lost its branch variance."""
    from skiplab.diagnostics import channel_stats

    model, x = _gpt2()
    seen = {}
    hooks = [
        model.transformer.h[i].mlp.register_forward_hook(
            lambda _m, _a, out, i=i: seen.__setitem__(i, channel_stats(out.detach(), "BTC")[1])
        )
        for i in range(2)
    ]
    try:
        sp = signal_propagation(model, x)
    finally:
        for h in hooks:
            h.remove()
    assert sp["reasons"] == ["", ""]
    # the branch operand of each block's last add is its MLP's output (dropout is off)
    assert sp["branch_var"] == pytest.approx([seen[0], seen[1]], rel=1e-5)
