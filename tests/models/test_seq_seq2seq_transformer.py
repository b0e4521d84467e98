"""Encoder-decoders with and without attention; Transformer variants from one block."""

import pytest
import torch

from skiplab.models import create_model
from skiplab.models.seq2seq import Seq2Seq, Seq2SeqConfig
from skiplab.models.transformer import Transformer, TransformerConfig
from skiplab.nn import Highway, Residual, count_skips


@pytest.mark.parametrize("attention", ["none", "additive", "dot"])
def test_seq2seq_shapes_weights_and_generate(attention):
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(attention=attention))
    src, tgt = torch.randint(0, 10, (3, 6)), torch.randint(0, 10, (3, 5))
    assert model(src, tgt).shape == (3, 5, 10)
    w = model.last_weights
    assert w.shape == (3, 5, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5))
    if attention == "none":  # the fixed context only ever sees the last encoder state
        assert (w[..., -1] == 1).all()
    assert model.generate(src, 4).shape == (3, 4)


def test_fixed_context_decoder_sees_early_inputs_only_through_the_last_state():
    torch.manual_seed(0)
    for attention, direct in (("none", False), ("additive", True)):
        model = Seq2Seq(Seq2SeqConfig(attention=attention, hidden_size=16))
        emb = model.embed(torch.randint(0, 10, (1, 5))).detach().requires_grad_(True)
        keys, _ = model.encoder(emb)
        # cut the recurrent path: gradient of the first output w.r.t. the first input that
        # does not pass through the last encoder state
        keys_cut = torch.cat([keys[:, :-1], keys[:, -1:].detach()], dim=1)
        s = keys[:, -1].detach()
        logits, _, _ = model.step(torch.tensor([model.bos]), s, keys_cut)
        (g,) = torch.autograd.grad(logits.sum(), emb, allow_unused=True)
        has_path = g is not None and g[0, 0].abs().sum() > 0
        assert has_path == direct


def test_seq2seq_errors_name_the_problem():
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2SeqConfig(attention="multiplicative")
    model = Seq2Seq(Seq2SeqConfig())
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 10\)"):
        model(torch.full((1, 3), 12), torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("variant", ["post_ln", "pre_ln", "rezero", "gated"])
@pytest.mark.parametrize("causal", [True, False])
def test_transformer_variants_and_plain_twins(variant, causal):
    torch.manual_seed(0)
    cfg = TransformerConfig(variant=variant, causal=causal, n_layer=2)
    model = Transformer(cfg)
    x = torch.randint(0, 16, (2, 10))
    assert model(x).shape == (2, 10, 16)
    assert count_skips(model) == 4  # two sublayers per block
    plain = Transformer(TransformerConfig(variant=variant, causal=causal, n_layer=2, skip=False))
    assert count_skips(plain) == 0 and plain(x).shape == (2, 10, 16)
    merge = Highway if variant == "gated" else Residual
    assert all(isinstance(b.attn, merge) for b in model.blocks)


def test_causal_decoder_ignores_the_future_and_encoder_does_not():
    torch.manual_seed(0)
    x = torch.randint(0, 16, (1, 8))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 16
    for causal in (True, False):
        model = Transformer(TransformerConfig(causal=causal, n_layer=2)).eval()
        same = torch.allclose(model(x)[0, :-1], model(y)[0, :-1], atol=1e-6)
        assert same == causal


def test_rezero_transformer_is_the_identity_at_init():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(variant="rezero", n_layer=3))
    x = torch.randint(0, 16, (2, 6))
    h = model.embed(x)
    out = h
    for block in model.blocks:
        out = block(out)
    torch.testing.assert_close(out, h)


def test_transformer_errors():
    with pytest.raises(ValueError, match="variant must be one of"):
        TransformerConfig(variant="sandwich")
    model = Transformer(TransformerConfig(block_size=8))
    with pytest.raises(ValueError, match="exceeds block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="int64 tokens"):
        model(torch.zeros(1, 4))
    feat = create_model("transformer_mnist1d")
    assert feat(torch.randn(3, 40, 1)).shape == (3, 10)
