"""SkipDiagnosticsCallback in a real transformers Trainer: a 2-layer GPT-2 from its config
trained 6 steps on token sequences whose ``labels`` are their ``input_ids``, measured every 2.

The event files must hold exactly steps 2, 4, 6 for every tag; the tags must name GPT-2's
modules (``transformer.h.0.attn``: the attention residual); the last value must be what
gradient_split gives on the final weights and the last batch with the next-token loss inferred
from the ids alone (the model's own loss on ``labels == input_ids`` is that loss: GPT-2 shifts
the labels itself); and the run must end with the same weights, bit for bit, as the run without
the callback.
"""

import math
import subprocess
import sys

import pytest
import torch

pytest.importorskip(
    "transformers", reason="transformers is not installed: pip install 'skiplab[hf]'"
)
pytest.importorskip("accelerate", reason="accelerate is not installed: pip install 'skiplab[hf]'")
pytest.importorskip("tensorboard")

import transformers
from tb_events import read_events

from skiplab.diagnostics import Inputs, gradient_split, infer_task
from skiplab.integrations.hf import SkipDiagnosticsCallback

K, STEPS, BATCH, VOCAB, T, LAYERS = 2, 6, 4, 64, 8, 2


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=LAYERS, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
        bos_token_id=0, eos_token_id=0, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg)


class Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.ids = torch.randint(
            0, VOCAB, (STEPS * BATCH, T), generator=torch.Generator().manual_seed(1)
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _train(out, callbacks):
    model = _gpt2()
    seen = []

    def record(m, _args, kwargs):
        # an independent record of the batches the Trainer feeds the model (not the callback's
        # own calls while it measures)
        if m.training and not any(getattr(c, "_measuring", False) for c in callbacks):
            seen.append(kwargs["input_ids"])

    model.register_forward_pre_hook(record, with_kwargs=True)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        learning_rate=1e-2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Tokens(), callbacks=callbacks
    )
    trainer.train()
    return model, trainer, seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    callback = SkipDiagnosticsCallback(every_n_steps=K)
    folder = tmp_path_factory.mktemp("with")
    model, trainer, seen = _train(folder, [callback])
    plain, _, _ = _train(tmp_path_factory.mktemp("without"), [])
    return model, trainer, seen, plain, callback, folder


def test_logged_steps_are_exactly_the_multiples_of_k(runs):
    _, trainer, _, _, _, folder = runs
    assert trainer.state.global_step == STEPS
    acc = read_events(folder / "runs" / "skiplab")
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("skiplab/")]
    assert len(tags) == LAYERS * 2 * 3 + LAYERS * 3  # 2 adds per layer, 3 signal values per layer
    for tag in tags:
        assert [e.step for e in acc.Scalars(tag)] == list(range(K, STEPS + 1, K)), tag
        assert all(math.isfinite(e.value) for e in acc.Scalars(tag)), tag


def test_tags_name_gpt2s_modules(runs):
    model, _, _, _, _, folder = runs
    tags = set(read_events(folder).Tags()["scalars"])
    names = dict(model.named_modules())
    for i in range(LAYERS):
        for branch in ("attn", "mlp"):
            assert f"transformer.h.{i}.{branch}" in names
            for part in ("shortcut", "branch", "branch_share"):
                assert f"skiplab/gradient_split/transformer.h.{i}.{branch}/{part}" in tags
        assert f"skiplab/signal/transformer.h.{i}/branch_var" in tags


def test_the_last_values_are_gradient_split_with_the_next_token_loss(runs):
    model, _, seen, _, callback, folder = runs
    acc = read_events(folder)
    assert len(seen) == STEPS
    ids = seen[-1]  # step 6's batch; the weights are those after it
    assert ids.shape == (BATCH, T)
    # the model trains with dropout; the measurement, like every probe, is taken with it off
    inputs = Inputs.of({"input_ids": ids})
    task = infer_task(model, inputs)  # no labels: the next-token loss on the ids
    assert task.kind == "next-token"
    torch.manual_seed(123)  # any generator state: no dropout draw enters the measurement
    split = gradient_split(model, inputs, task=task)
    assert split["modules"] == [f"transformer.h.{i}" for i in range(LAYERS) for _ in range(2)]
    for j, (s, b) in enumerate(zip(split["shortcut_grad"], split["branch_grad"])):
        name = f"transformer.h.{j // 2}.{('attn', 'mlp')[j % 2]}"
        got_s = acc.Scalars(f"skiplab/gradient_split/{name}/shortcut")[-1].value
        got_b = acc.Scalars(f"skiplab/gradient_split/{name}/branch")[-1].value
        assert got_s == pytest.approx(s, rel=1e-5) and got_b == pytest.approx(b, rel=1e-5), name
        # the residual stream carries most of the gradient this early in training
        assert got_s > got_b > 0
    assert callback.last is not None and not callback.last.missing


def test_training_with_the_callback_is_bitwise_training_without_it(runs):
    model, _, _, plain, callback, _ = runs
    a, b = model.state_dict(), plain.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not any(
        h for h in model._forward_pre_hooks.values() if getattr(h, "__self__", None) is callback
    )


def test_without_a_training_batch_or_with_a_bad_k_it_says_so():
    with pytest.raises(ValueError, match="every_n_steps"):
        SkipDiagnosticsCallback(every_n_steps=0)
    with pytest.raises(RuntimeError, match="saw no training batch"):
        SkipDiagnosticsCallback(every_n_steps=1).measure()


def test_without_accelerate_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['accelerate'] = None\n"
        "try:\n"
        "    import skiplab.integrations.hf\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'skiplab[hf]'" in done.stdout
