"""Training under faults: SIGKILL mid-epoch then --resume, damaged checkpoints, divergence."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from skiplab.models import create_model
from skiplab.store import Store
from skiplab.train import (
    DivergedError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    previous_path,
)

SKIPLAB = [sys.executable, "-m", "skiplab.cli"]
# Small epochs of many steps, so a kill after the first checkpoint lands mid-epoch.
TRAIN = ["train", "resmlp", "--data", "digits", "--epochs", "4", "--batch-size", "16"]
TRAIN += ["--lr", "0.01", "--seed", "3", "--name", "kill-test"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _epoch_metrics(store_path, run_id):
    with Store(store_path) as store:
        rows = store.metrics(run_id)
    return [(step, epoch, key, value) for step, epoch, key, value in rows if key != "epoch_s"]


def _completed_run(store_path):
    with Store(store_path) as store:
        runs = store.runs(status="completed")
    assert len(runs) == 1, runs
    return runs[0].id


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(tmp_path):
    ref_store, kill_store = tmp_path / "ref" / "s.sqlite", tmp_path / "kill" / "s.sqlite"
    subprocess.run(
        [*SKIPLAB, *TRAIN, "--store", str(ref_store)], check=True, env=_env(), timeout=300
    )
    ckpt = kill_store.parent / "checkpoints" / "kill-test.pt"
    proc = subprocess.Popen([*SKIPLAB, *TRAIN, "--store", str(kill_store)], env=_env())
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # well inside epoch 2 (an epoch is ~90 steps)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["epoch"]
    assert killed_at < 4
    with Store(kill_store) as store:  # the killed run holds no rows and is marked so
        (dead,) = store.runs()
        assert dead.status == "interrupted" and store.metrics(dead.id) == []
    subprocess.run(
        [*SKIPLAB, *TRAIN, "--store", str(kill_store), "--resume"],
        check=True, env=_env(), timeout=300,
    )  # fmt: skip
    a = load_checkpoint(ref_store.parent / "checkpoints" / "kill-test.pt")
    b = load_checkpoint(ckpt)
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    ref_metrics = _epoch_metrics(ref_store, _completed_run(ref_store))
    resumed = _epoch_metrics(kill_store, _completed_run(kill_store))
    assert len(ref_metrics) == 4 * 3 + 4 * 2  # train_loss/acc/lr + test_loss/acc per epoch
    assert resumed == ref_metrics  # bitwise: floats compared with ==


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("resmlp", depth=2, width=8, in_features=10, num_classes=2)


def test_resume_falls_back_to_previous_checkpoint_when_newest_is_damaged(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=0)
    ref = _model()
    Trainer(ref, cfg).fit(_data())
    ckpt = tmp_path / "c.pt"
    Trainer(_model(), cfg, checkpoint=ckpt, tensorboard=False).fit(_data())
    raw = bytearray(ckpt.read_bytes())
    raw[-50] ^= 0xFF
    ckpt.write_bytes(bytes(raw))
    assert load_checkpoint(previous_path(ckpt))["epoch"] == 2
    resumed = _model(seed=7)
    with pytest.warns(RuntimeWarning, match="sha256"):
        hist = Trainer(resumed, cfg, checkpoint=ckpt).fit(_data(), resume=True)
    assert len(hist.epochs) == 3  # epoch 3 was trained again from the epoch-2 checkpoint
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_with_a_different_config_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    Trainer(_model(), TrainConfig(epochs=1, batch_size=16), checkpoint=ckpt).fit(_data())
    from skiplab.train import CheckpointError

    with pytest.raises(CheckpointError, match="differs in lr"):
        Trainer(_model(), TrainConfig(epochs=1, batch_size=16, lr=0.5), checkpoint=ckpt).fit(
            _data(), resume=True
        )


def test_divergence_marks_run_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    model = _model()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05)

    def poison(trainer, step, loss):
        if trainer.epoch == 2 and step == 9:  # inside epoch 3, after two good checkpoints
            with torch.no_grad():
                trainer.model.head.weight[0, 0] = float("inf")

    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("d", "train", {})
        trainer = Trainer(model, cfg, store=store, run_id=rid, checkpoint=ckpt, hooks=[poison])
        with pytest.raises(DivergedError, match=r"at step 9") as info:
            trainer.fit(_data())
        assert "loss became" in str(info.value) or "head.weight" in str(info.value)
        store.finish_run(rid, "failed", error="caller's report")  # the first status wins
        run = store.run(rid)
        assert run.status == "diverged" and "step 9" in (run.error or "")
        assert [m[0] for m in store.metrics(rid, "train_loss")] == [4, 8]  # epochs 1-2 kept
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_nan_gradient_names_the_parameter(tmp_path):
    model = _model()

    def nan_grad(grad):
        return grad * float("nan")

    model.head.bias.register_hook(nan_grad)
    with pytest.raises(DivergedError, match=r"parameter 'head.bias'.*step 0"):
        Trainer(model, TrainConfig(epochs=1, batch_size=16)).fit(_data())


def test_tensorboard_events_beside_the_store(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("tb", "train", {})
        Trainer(_model(), TrainConfig(epochs=2, batch_size=16), store=store, run_id=rid).fit(
            _data(), _data()
        )
        store.finish_run(rid)
    logdir = Path(tmp_path / "tensorboard" / f"run{rid:05d}")
    acc = EventAccumulator(str(logdir), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train_loss", "test_acc", "lr"} <= set(tags["scalars"])
    assert "grad_norm/blocks" in tags["histograms"]
    assert any(t.startswith("grad_norm/blocks.") for t in tags["scalars"])  # one per block
    assert [e.step for e in acc.Scalars("train_loss")] == [4, 8]
    hist = acc.Histograms("grad_norm/blocks")[-1].histogram_value
    assert hist.num >= 3 and hist.max > 0  # stem, blocks, head


def _all_finite(state):
    return all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_a_blow_up_on_an_epochs_last_step_never_becomes_the_good_checkpoint(tmp_path):
    # Full-batch training: every step is an epoch's last, so the checkpoint written after it
    # used to hold the step's inf weights (the loss and gradients were still finite).
    ckpt, store_path = tmp_path / "c.pt", tmp_path / "s.sqlite"
    args = ["train", "resmlp", "--data", "digits", "--epochs", "3", "--batch-size", "4096"]
    args += ["--lr", "1e38", "--checkpoint", str(ckpt), "--store", str(store_path)]
    out = subprocess.run([*SKIPLAB, *args], capture_output=True, text=True, env=_env())
    assert out.returncode == 2, out.stderr
    assert re.search(r"parameter '[\w.]+' became non-finite after step 1", out.stderr)
    with Store(store_path) as store:
        (run,) = store.runs()
    assert run.status == "diverged"
    assert not ckpt.exists()  # the only epoch ended with inf weights: nothing good to keep


def test_resume_of_the_plain_twin_from_a_residual_checkpoint_is_refused(tmp_path):
    from skiplab.train import CheckpointError

    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=16)
    Trainer(_model(), cfg, checkpoint=ckpt).fit(_data())
    torch.manual_seed(0)
    plain = create_model("resmlp", depth=2, width=8, in_features=10, num_classes=2, skip=False)
    with pytest.raises(CheckpointError, match=r"another model.*skip: True .*False") as info:
        Trainer(plain, cfg, checkpoint=ckpt).fit(_data(), resume=True)
    assert "\n" not in str(info.value)


def test_resume_on_another_architecture_names_the_differences_in_one_line(tmp_path):
    from skiplab.train import CheckpointError

    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=16)
    Trainer(_model(), cfg, checkpoint=ckpt).fit(_data())
    state = load_checkpoint(ckpt)
    torch.manual_seed(0)
    wider = create_model("resmlp", depth=4, width=16, in_features=10, num_classes=2)
    with pytest.raises(CheckpointError, match=r"another model.*width: 8 .*16") as info:
        Trainer(wider, cfg, checkpoint=ckpt).fit(_data(), resume=True)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 600, msg
    # A checkpoint written before models carried an identity is still checked, by shapes.
    state.pop("model_identity", None)
    from skiplab.train import save_checkpoint

    save_checkpoint(state, ckpt)
    with pytest.raises(CheckpointError, match=r"shape \[8, 10\] .*\[16, 10\]") as info:
        Trainer(wider, cfg, checkpoint=ckpt).fit(_data(), resume=True)
    assert "\n" not in str(info.value)


def test_config_difference_names_only_what_differs(tmp_path):
    from skiplab.train import CheckpointError

    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, batch_size=16, schedule="step", milestones=(0.5, 0.75))
    Trainer(_model(), cfg, checkpoint=ckpt).fit(_data())
    other = TrainConfig(epochs=1, batch_size=16, schedule="step", milestones=(0.5, 0.75), lr=0.5)
    with pytest.raises(CheckpointError) as info:
        Trainer(_model(), other, checkpoint=ckpt).fit(_data(), resume=True)
    assert "(differs in lr)" in str(info.value)
    assert "milestones" not in str(info.value)


def test_two_runs_on_one_checkpoint_path_are_refused(tmp_path):
    from skiplab._files import LockedError

    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=2, batch_size=16)
    refused = []

    def second_run(trainer, step, loss):
        if step == 1:
            with pytest.raises(LockedError, match=r"checkpoint .*c\.pt is in use") as info:
                Trainer(_model(1), cfg, checkpoint=ckpt).fit(_data())
            refused.append(str(info.value))

    Trainer(_model(), cfg, checkpoint=ckpt, hooks=[second_run]).fit(_data())
    assert len(refused) == 1 and "--checkpoint" in refused[0]
    assert load_checkpoint(ckpt)["epoch"] == 2  # the first run's checkpoint, untouched
    Trainer(_model(1), cfg, checkpoint=ckpt).fit(_data())  # free again once it finished


def test_a_killed_writers_temp_files_are_removed_by_the_next_run(tmp_path):
    ckpt = tmp_path / "c.pt"
    stale = [tmp_path / ".c.pt.abc123.tmp", tmp_path / ".c.pt.prev.def456.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    Trainer(_model(), TrainConfig(epochs=1, batch_size=16), checkpoint=ckpt).fit(_data())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["c.pt"]


def test_resume_from_a_checkpoint_that_is_not_a_training_state_names_what_it_lacks(tmp_path):
    from skiplab.train import CheckpointError, save_checkpoint

    ckpt = tmp_path / "c.pt"
    save_checkpoint({"w": torch.zeros(3)}, ckpt)  # a valid skiplab file, not a trainer's
    with pytest.raises(CheckpointError, match=r"c\.pt is not a training checkpoint.*'model'"):
        Trainer(_model(), TrainConfig(epochs=1, batch_size=16), checkpoint=ckpt).fit(
            _data(), resume=True
        )
