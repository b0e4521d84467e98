"""SkipDiagnostics in a real Lightning Trainer: a 1-D ResNet-20 (batch norm, 9 residual blocks)
trained 6 steps, measured every 2.

The event files must hold exactly steps 2, 4, 6 for every tag; the tags must name the
LightningModule's real modules; the last value must be what gradient_split and
signal_propagation give on the final weights and the last batch; and the run must end with the
same weights, batch-norm statistics and optimizer state, bit for bit, as the run without the
callback.
"""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip(
    "lightning", reason="lightning is not installed: pip install 'skiplab[lightning]'"
)
pytest.importorskip("tensorboard")

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from tb_events import read_events
from torch.utils.data import DataLoader, TensorDataset

from skiplab.diagnostics import gradient_split, signal_propagation
from skiplab.integrations.lightning import SkipDiagnostics
from skiplab.models import create_model

K, STEPS, BATCH, BLOCKS = 2, 6, 8, 9


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = create_model("resnet20", dim=1, in_channels=1, num_classes=4)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _idx):
        x, y = batch
        self.last_batch = (x, y)  # for the test to measure independently
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * BATCH, 1, 16, generator=g)
    y = torch.randint(0, 4, (STEPS * BATCH,), generator=g)
    return x, y


def _fit(tmp_path, callbacks, logger=True, **trainer_args):
    L.seed_everything(0, verbose=False)
    module = Classifier()
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    trainer = L.Trainer(
        max_steps=trainer_args.pop("max_steps", STEPS),
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(tmp_path, name="tb") if logger else False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **trainer_args,
    )
    trainer.fit(module, loader)
    return module, trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    callback = SkipDiagnostics(every_n_steps=K)
    folder = tmp_path_factory.mktemp("with")
    with_cb, trainer = _fit(folder, [callback])
    plain, _ = _fit(tmp_path_factory.mktemp("without"), [])
    return with_cb, trainer, plain, callback, folder


def test_logged_steps_are_exactly_the_multiples_of_k(runs):
    _, trainer, _, _, folder = runs
    acc = read_events(folder)
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("skiplab/")]
    assert len(tags) == BLOCKS * 3 + BLOCKS * 3  # 3 split values per add, 3 signal per block
    assert trainer.global_step == STEPS
    for tag in tags:
        assert [e.step for e in acc.Scalars(tag)] == list(range(K, STEPS + 1, K)), tag
        assert all(math.isfinite(e.value) for e in acc.Scalars(tag)), tag


def test_tags_name_the_real_modules(runs):
    module, _, _, _, folder = runs
    tags = set(read_events(folder).Tags()["scalars"])
    names = dict(module.named_modules())
    for i in range(BLOCKS):
        block = f"net.blocks.{i}"
        assert block in names
        for part in ("shortcut", "branch", "branch_share"):
            assert f"skiplab/gradient_split/{block}/{part}" in tags
        for stat in ("sq_mean", "var", "branch_var"):
            assert f"skiplab/signal/{block}/{stat}" in tags
    # the training loss of the LightningModule's own self.log is untouched by the callback
    assert not any(t.startswith("skiplab/") and "loss" in t for t in tags)


def test_the_last_values_are_gradient_split_and_signal_on_the_final_weights(runs):
    module, _, _, callback, folder = runs
    acc = read_events(folder)
    x, y = module.last_batch  # the batch of step 6; the weights are those after it
    split = gradient_split(module.net, x, y)
    sig = signal_propagation(module.net, x)
    assert split["modules"] == [f"blocks.{i}" for i in range(BLOCKS)]
    for i, (s, b) in enumerate(zip(split["shortcut_grad"], split["branch_grad"])):
        tag = f"skiplab/gradient_split/net.blocks.{i}"
        assert acc.Scalars(f"{tag}/shortcut")[-1].value == pytest.approx(s, rel=1e-5)
        assert acc.Scalars(f"{tag}/branch")[-1].value == pytest.approx(b, rel=1e-5)
        share = acc.Scalars(f"{tag}/branch_share")[-1].value
        assert share == pytest.approx(b / (s + b), rel=1e-5) and 0 < share < 1
        for stat in ("sq_mean", "var", "branch_var"):
            got = acc.Scalars(f"skiplab/signal/net.blocks.{i}/{stat}")[-1].value
            assert got == pytest.approx(sig[stat][i], rel=1e-5), stat
    # the callback's own last measurement is the one written at the last step
    assert callback.last.scalars["skiplab/gradient_split/net.blocks.0/shortcut"] == pytest.approx(
        split["shortcut_grad"][0], rel=1e-6
    )
    # after a batch-normed block the branch variance is one (batch statistics): a real reading
    assert all(v == pytest.approx(1.0, abs=0.05) for v in sig["branch_var"])


def test_training_with_the_callback_is_bitwise_training_without_it(runs):
    with_cb, _, plain, _, _ = runs
    a, b = with_cb.state_dict(), plain.state_dict()
    assert a.keys() == b.keys()
    bn = [k for k in a if k.endswith("running_var")]
    assert bn and all(not torch.equal(a[k], torch.ones_like(a[k])) for k in bn)  # they moved
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_without_a_tensorboard_logger_it_writes_its_ownread_events(tmp_path):
    callback = SkipDiagnostics(every_n_steps=3, module="net", signal=False)
    _fit(tmp_path, [callback], logger=False)
    acc = read_events(tmp_path / "skiplab")
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("skiplab/")]
    # module="net": the ResNet itself is measured, so its names have no "net." prefix
    assert "skiplab/gradient_split/blocks.8/branch" in tags and len(tags) == BLOCKS * 3
    assert all([e.step for e in acc.Scalars(t)] == [3, 6] for t in tags)
    # the summary, written once (nothing new to say at step 6), names each add's module
    (summary,) = acc.Tensors("skiplab/summary/text_summary")
    text = summary.tensor_proto.string_val[0].decode()
    assert summary.step == 3 and "| blocks.8 | add_" in text and "missing" not in text


def test_under_gradient_accumulation_each_step_is_measured_once_on_its_last_batch(tmp_path):
    callback = SkipDiagnostics(every_n_steps=1, gradient=False)
    module, trainer = _fit(tmp_path, [callback], max_steps=3, accumulate_grad_batches=2)
    assert trainer.global_step == 3
    acc = read_events(tmp_path)
    tag = "skiplab/signal/net.blocks.4/var"
    assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3]
    x, _ = module.last_batch  # the 6th micro-batch made step 3
    want = signal_propagation(module.net, x)["var"][4]
    assert acc.Scalars(tag)[-1].value == pytest.approx(want, rel=1e-5)


class TwoNets(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="every_n_steps"):
        SkipDiagnostics(every_n_steps=0)
    batch = (torch.randn(2, 1, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no such submodule.*net"):
        SkipDiagnostics(module="backbone").measure(Classifier(), batch)
    with pytest.raises(ValueError, match=r"defines no forward and has 2 submodules.*a, b.*module="):
        SkipDiagnostics().measure(TwoNets(), batch)
    assert SkipDiagnostics(module=lambda m: m.net).measure(Classifier(), batch).scalars


class LanguageModel(L.LightningModule):
    """A Hugging Face GPT-2 inside a LightningModule, trained on dict batches with labels."""

    def __init__(self) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        cfg = transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
            bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
        self.model = transformers.GPT2LMHeadModel(cfg)

    def training_step(self, batch, _idx):
        self.last_batch = batch
        return self.model(**batch).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def test_a_dict_batch_with_labels_is_measured_with_the_models_own_loss(tmp_path):
    L.seed_everything(0, verbose=False)
    module = LanguageModel()
    ids = torch.randint(0, 64, (16, 8), generator=torch.Generator().manual_seed(2))
    loader = DataLoader([{"input_ids": i, "labels": i} for i in ids], batch_size=4)
    # no module=: the LightningModule has no forward, so the GPT-2 it wraps is measured
    callback = SkipDiagnostics(every_n_steps=2, signal=False)
    trainer = L.Trainer(
        max_steps=4, accelerator="cpu", devices=1, logger=TensorBoardLogger(tmp_path),
        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, loader)
    acc = read_events(tmp_path)
    tag = "skiplab/gradient_split/transformer.h.1.mlp/shortcut"
    assert [e.step for e in acc.Scalars(tag)] == [2, 4]
    # GPT-2's loss on labels == input_ids is the next-token loss inferred from the ids alone
    split = gradient_split(module.model, {"input_ids": module.last_batch["input_ids"]})
    assert acc.Scalars(tag)[-1].value == pytest.approx(split["shortcut_grad"][3], rel=1e-5)


def test_without_lightning_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['lightning'] = sys.modules['lightning.pytorch'] = None\n"
        "import skiplab.integrations\n"
        "try:\n"
        "    import skiplab.integrations.lightning\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'skiplab[lightning]'" in done.stdout
