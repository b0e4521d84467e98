"""Skip discovery on real ``transformers`` models (random init from configs, nothing downloaded).

``torch.fx`` cannot trace any of them (GPT-2, Llama, T5 fail in ``_patch_function``, BERT and
ViT on their ``**kwargs``), so every merge here comes from the recorded forward pass. The
expected counts and owners are read off each architecture:

* GPT-2, Llama, ViT: two residual adds per layer, both in the layer's own ``forward``
  (``transformer.h.i``, ``model.layers.i``, ``vit.layers.i``), around the attention and the MLP
  sub-blocks.
* BERT: two per layer, each inside the output module that also applies the post-LayerNorm
  (``encoder.layer.i.attention.output`` and ``encoder.layer.i.output``).
* T5 encoder-decoder: two per encoder layer (self-attention, feed-forward) and three per decoder
  layer (self-attention, cross-attention, feed-forward), each in its ``layer.j`` sub-layer.

``branch_layers`` counts the weight layers between the fork and the branch operand: q, k, v and
the output projection for a separate-projection attention (4), GPT-2's fused ``c_attn`` and
``c_proj`` (2), a two-matrix MLP (2), Llama's gated MLP (gate, up, down: 3), and cross-attention
only the query and output projections (2: keys and values come from the encoder, not the fork).
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from skiplab.diagnostics import find_skips  # noqa: E402

VOCAB = 100


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(seed))


def _gpt2():
    cfg = transformers.GPT2Config(
        n_layer=3, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg), (_ids(),), {}


def _bert():
    cfg = transformers.BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=64,
    )  # fmt: skip
    mask = torch.ones(2, 8, dtype=torch.long)
    return transformers.BertModel(cfg), (), {"input_ids": _ids(), "attention_mask": mask}


def _llama():
    cfg = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg), (_ids(),), {}


def _t5():
    cfg = transformers.T5Config(
        num_layers=2, num_decoder_layers=2, d_model=32, d_kv=16, num_heads=2, d_ff=64,
        vocab_size=VOCAB, decoder_start_token_id=0,
    )  # fmt: skip
    kwargs = {"input_ids": _ids(0), "decoder_input_ids": _ids(1)}
    return transformers.T5ForConditionalGeneration(cfg), (), kwargs


def _vit():
    cfg = transformers.ViTConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
        image_size=16, patch_size=4, num_channels=3, num_labels=3,
    )  # fmt: skip
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return transformers.ViTForImageClassification(cfg), (pixels,), {}


def _layers(prefix: str, n: int, subs: list[str]) -> list[str]:
    return [f"{prefix}.{i}{s}" for i in range(n) for s in subs]


# per model: owners, branch sub-modules and branch weight layers, in forward order
EXPECTED = {
    "gpt2": (
        _layers("transformer.h", 3, ["", ""]),
        _layers("transformer.h", 3, [".attn", ".mlp"]),
        [2, 2] * 3,
    ),
    "bert": (
        _layers("encoder.layer", 2, [".attention.output", ".output"]),
        _layers("encoder.layer", 2, [".attention", ""]),
        [4, 2] * 2,
    ),
    "llama": (
        _layers("model.layers", 2, ["", ""]),
        _layers("model.layers", 2, [".self_attn", ".mlp"]),
        [4, 3] * 2,
    ),
    "t5": (
        _layers("encoder.block", 2, [".layer.0", ".layer.1"])
        + _layers("decoder.block", 2, [".layer.0", ".layer.1", ".layer.2"]),
        _layers("encoder.block", 2, [".layer.0.SelfAttention", ".layer.1.DenseReluDense"])
        + _layers(
            "decoder.block",
            2,
            [".layer.0.SelfAttention", ".layer.1.EncDecAttention", ".layer.2.DenseReluDense"],
        ),
        [4, 2] * 2 + [4, 2, 2] * 2,
    ),
    # transformers 5's layout; 4.x kept the layers in vit.encoder.layer and the MLP add in
    # ViTOutput, see test_every_residual_add_is_found_and_nothing_else
    "vit": (
        _layers("vit.layers", 2, ["", ""]),
        _layers("vit.layers", 2, [".attention", ".mlp"]),
        [4, 2] * 2,
    ),
}
BUILDERS = {"gpt2": _gpt2, "bert": _bert, "llama": _llama, "t5": _t5, "vit": _vit}


@pytest.fixture(scope="module")
def reports():
    out = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        model, args, kwargs = build()
        out[name] = find_skips(model, args, kwargs=kwargs)
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_residual_add_is_found_and_nothing_else(reports, name):
    report = reports[name]
    owners = EXPECTED[name][0]
    assert [m.kind for m in report.merges] == ["residual"] * len(owners), report.note
    # the fx failure is said, and every merge says it came from the recorded forward pass
    assert report.method == "forward" and "torch.fx tracing failed" in report.note
    assert {m.method for m in report.merges} == {"forward"}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_merges_are_attributed_to_their_owner_by_qualified_name(reports, name):
    if name == "vit" and int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("ViT's module names are those of transformers 5")
    owners, branches, layers = EXPECTED[name]
    merges = reports[name].merges
    assert [m.module for m in merges] == owners
    assert [m.branch_module for m in merges] == branches
    assert [m.branch_layers for m in merges] == layers
    # the shortcut is the identity: the fork itself, no weight layer on the way
    assert all(m.shortcut_layers == 0 and m.shortcut_module == "" for m in merges)
    assert all(m.scale == "" for m in merges)
    assert all(0 < m.ratio < float("inf") for m in merges)


def test_discovery_leaves_a_transformers_model_untouched():
    torch.manual_seed(0)
    model, args, kwargs = _gpt2()
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    find_skips(model, args, kwargs=kwargs, mode="eval")
    assert not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
