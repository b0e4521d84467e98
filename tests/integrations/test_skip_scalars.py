"""skip_scalars, the callbacks' shared core, on its own: the tags, the missing values and why,
and a model left exactly as it was (weights, batch-norm statistics, .grad, every module's mode,
the random generators)."""

import math
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.diagnostics import gradient_split, signal_propagation
from skiplab.diagnostics.gradflow import merge_names
from skiplab.integrations import ScalarWriter, skip_scalars
from skiplab.integrations._common import default_batch_to_inputs, require
from skiplab.models import create_model


class TwoAdds(nn.Module):
    """Two residual adds in the root's forward, a layer that never runs, and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
        self.b = nn.Linear(8, 8)
        self.unused = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = x + self.a(x)
        x = x + self.b(x)
        return self.head(x)


def _resnet():
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1, num_classes=4).train()
    return model, torch.randn(8, 1, 16), torch.randint(0, 4, (8,))


def test_scalars_are_gradient_split_and_signal_by_module_name():
    model, x, y = _resnet()
    got = skip_scalars(model, x, y)
    split, sig = gradient_split(model, x, y), signal_propagation(model, x)
    assert len(got.scalars) == 9 * 3 + 9 * 3 and got.missing == {}
    for i, (s, b) in enumerate(zip(split["shortcut_grad"], split["branch_grad"])):
        tag = f"skiplab/gradient_split/blocks.{i}"
        assert got.scalars[f"{tag}/shortcut"] == s and got.scalars[f"{tag}/branch"] == b
        assert got.scalars[f"{tag}/branch_share"] == pytest.approx(b / (s + b))
        assert got.scalars[f"skiplab/signal/blocks.{i}/var"] == sig["var"][i]
    # a custom loss is used as given: twice the loss, twice every gradient norm
    double = skip_scalars(model, x, y, lambda out, t: 2 * F.cross_entropy(out, t), signal=False)
    for tag, v in double.scalars.items():
        if not tag.endswith("branch_share"):
            assert v == pytest.approx(2 * got.scalars[tag], rel=1e-5), tag


def test_the_model_and_the_generators_are_left_exactly_as_they_were():
    model, x, y = _resnet()
    model.blocks[0].branch[1].eval()  # a frozen batch norm in a model that trains
    model.stem[0].weight.requires_grad_(False)
    F.cross_entropy(model(x), y).backward()  # .grad present, as between backward and step
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters() if p.grad is not None}
    modes = {n: m.training for n, m in model.named_modules()}
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    result = skip_scalars(model, x, y)
    assert len(result.scalars) == 54
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    for n, p in model.named_parameters():
        if n in grads:
            assert p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1]), n
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert not model.blocks[0].branch[1].training and model.blocks[0].branch[0].training
    assert not model.stem[0].weight.requires_grad
    assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]
    assert np.array_equal(np.random.get_state()[1], rng[2])


def test_a_measurement_of_a_training_model_does_not_depend_on_dropout_draws():
    torch.manual_seed(0)
    model, x, y = TwoAdds().train(), torch.randn(16, 8), torch.randint(0, 3, (16,))
    first, again = skip_scalars(model, x, y), skip_scalars(model, x, y)
    assert first.scalars == again.scalars
    # the probes measure with dropout off: other generator seeds, the same numbers
    assert skip_scalars(model, x, y, seed=1).scalars == first.scalars
    assert model.training and model.a[1].training  # and the model is left training
    # seed=None draws from the generators as they are, and still gives them back unchanged
    state = torch.get_rng_state()
    skip_scalars(model, x, y, seed=None)
    assert torch.equal(torch.get_rng_state(), state)


def test_missing_values_are_left_out_with_their_reason():
    torch.manual_seed(0)
    model, x, y = TwoAdds().eval(), torch.randn(4, 8), torch.randint(0, 3, (4,))
    got = skip_scalars(model, x, y)
    assert all(math.isfinite(v) for v in got.scalars.values())
    # the root owns both adds: each is named by the branch it goes around
    assert list(got.merges) == ["a", "b"]
    assert all(v.startswith("add_") and v.endswith(" in (root)") for v in got.merges.values())
    assert got.missing["skiplab/signal/unused/var"] == "the block did not run in this forward pass"
    assert "no branch variance" in got.missing["skiplab/signal/head/branch_var"]
    assert not set(got.missing) & set(got.scalars)
    assert "| skiplab/signal/unused/var | the block did not run" in got.text()
    plain = create_model("resnet20", dim=1, in_channels=1, num_classes=4, skip=False)
    none = skip_scalars(plain, torch.randn(4, 1, 16), torch.randint(0, 4, (4,)))
    assert none.missing == {
        "skiplab/gradient_split": "no residual add found in the model's forward pass"
    }
    assert not any("gradient_split" in t for t in none.scalars)


def test_merge_names_fall_back_to_the_owner_and_its_index():
    modules = ["h.0", "h.0", "h.1", "", ""]
    branches = ["h.0.attn", "h.0.mlp", "h.1.mlp", "x", "x"]
    assert merge_names(modules, branches) == [
        "h.0.attn",
        "h.0.mlp",
        "h.1",
        "(root)[0]",
        "(root)[1]",
    ]
    # an add owned by h.0.attn itself and one going around it: neither takes the other's name
    got = merge_names(["h.0", "h.0", "h.0.attn"], ["h.0.attn", "h.0.mlp", "h.0.attn.q"])
    assert got == ["h.0[0]", "h.0.mlp", "h.0.attn[0]"]


def test_the_summary_is_written_when_it_says_something_new(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(0)
    model, x, y = TwoAdds().eval(), torch.randn(4, 8), torch.randint(0, 3, (4,))
    board = SummaryWriter(tmp_path)
    writer = ScalarWriter(board)
    result = skip_scalars(model, x, y)
    writer.write(result, 5)
    writer.write(result, 10)
    result.missing["skiplab/signal/b/var"] = "a new reason"
    writer.write(result, 15)
    board.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == set(result.scalars)
    assert all([e.step for e in acc.Scalars(t)] == [5, 10, 15] for t in result.scalars)
    texts = acc.Tensors("skiplab/summary/text_summary")
    assert [t.step for t in texts] == [5, 15]
    assert "a new reason" in texts[-1].tensor_proto.string_val[0].decode()
    assert "a new reason" not in texts[0].tensor_proto.string_val[0].decode()


def test_default_batches():
    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    assert default_batch_to_inputs((x, y)) == (x, y, False)
    (a, b), target, _ = default_batch_to_inputs([x, x, y])
    assert a is x and b is x and target is y
    ids = torch.zeros(2, 4, dtype=torch.long)
    batch = {"input_ids": ids, "labels": ids}
    assert default_batch_to_inputs(batch, takes_labels=True) == (batch, None, True)
    inputs, target, own = default_batch_to_inputs(batch)
    assert inputs == {"input_ids": ids} and target is ids and not own
    assert default_batch_to_inputs(x) == (x, None, False)


def test_a_missing_library_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'skiplab\[lightning\]'"):
        require("skiplab_no_such_library.pytorch", "lightning")


def test_importing_skiplab_and_the_core_imports_neither_library():
    code = (
        "import sys, skiplab, skiplab.integrations, skiplab.diagnostics; "
        "print(sorted(m for m in ('lightning', 'accelerate', 'pytorch_lightning') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_activation_checkpointing_gives_the_same_numbers():
    # a large model trains with its blocks checkpointed (their forward re-run in backward);
    # the split is still measured through them, not left at zero
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
        bos_token_id=0, eos_token_id=0, use_cache=False,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(cfg).train()
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    plain = skip_scalars(model, {"input_ids": ids, "labels": ids}, model_loss=True)
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()
    assert model.transformer.h[0].gradient_checkpointing
    checkpointed = skip_scalars(model, {"input_ids": ids, "labels": ids}, model_loss=True)
    assert len(plain.scalars) == 2 * 2 * 3 + 2 * 3
    assert checkpointed.scalars == plain.scalars
    assert all(v > 0 for t, v in plain.scalars.items() if t.endswith("/branch"))


def test_skip_discovery_keeps_the_values_of_two_examples_only(monkeypatch):
    """Discovery keeps every recorded value: on the whole batch it would hold all its
    activations (a callback on a large model); the merges' branch modules come with the split."""
    import skiplab.diagnostics.skips as skips

    seen = []
    find = skips.find_skips

    def spy(model, inputs=(), **kwargs):
        seen.append(next(t.shape[0] for t in [*inputs, *kwargs.get("kwargs", {}).values()]))
        return find(model, inputs, **kwargs)

    monkeypatch.setattr(skips, "find_skips", spy)
    torch.manual_seed(0)
    model, x, y = TwoAdds().eval(), torch.randn(16, 8), torch.randint(0, 3, (16,))
    got = skip_scalars(model, x, y)
    assert seen and max(seen) <= 2, seen
    assert list(got.merges) == ["a", "b"]  # named by the branch modules the split returned
