"""DistributedDataParallel with gloo: 2 processes equal 1 process with the same global batch."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from skiplab.models import create_model
from skiplab.store import Store
from skiplab.train import TrainConfig, Trainer, load_checkpoint

CFG = {"epochs": 3, "batch_size": 32, "lr": 0.05, "seed": 4, "schedule": "step"}

_WORKER = """
import json, sys, torch
from torch.utils.data import TensorDataset
from skiplab.models import create_model
from skiplab.train import TrainConfig, Trainer, init_distributed
from skiplab.train.distributed import cleanup

out, cfg = sys.argv[1], json.loads(sys.argv[2])
info = init_distributed("cpu")
g = torch.Generator().manual_seed(0)
x = torch.randn(128, 12, generator=g)
data = TensorDataset(x, (x[:, :3].sum(1) > 0).long())
torch.manual_seed(1)
model = create_model("resmlp", depth=4, width=16, in_features=12, num_classes=2)
hist = Trainer(model, TrainConfig(**cfg), tensorboard=False).fit(data, data)
if info.rank == 0:
    torch.save({"model": model.state_dict(), "history": hist.epochs}, out)
cleanup()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 12, generator=g)
    data = TensorDataset(x, (x[:, :3].sum(1) > 0).long())
    torch.manual_seed(1)
    model = create_model("resmlp", depth=4, width=16, in_features=12, num_classes=2)
    hist = Trainer(model, TrainConfig(**CFG), tensorboard=False).fit(data, data)
    return model.state_dict(), hist.epochs


def test_two_gloo_processes_equal_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    out = tmp_path / "rank0.pt"
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    base.update(WORLD_SIZE="2", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), json.dumps(CFG)],
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
        )
        for r in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    ddp = torch.load(out, weights_only=True)
    ref_state, ref_hist = _single_process()
    for key, ref in ref_state.items():
        torch.testing.assert_close(ddp["model"][key], ref, rtol=1e-5, atol=1e-6, msg=key)
    # Metrics are all-reduced over ranks, so they describe the global batch as well.
    for a, b in zip(ddp["history"], ref_hist):
        for key in ("train_loss", "train_acc", "lr", "test_loss", "test_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    # And training did something: the comparison is not between two untouched models.
    assert ref_hist[-1]["train_loss"] < ref_hist[0]["train_loss"]


def _children(pid):
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _rank_of(pid):
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


@pytest.mark.slow
def test_torchrun_max_restarts_completes_from_checkpoint_after_rank_killed(tmp_path):
    store = tmp_path / "s.sqlite"
    ckpt = tmp_path / "checkpoints" / "elastic.pt"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node=2", "--max-restarts=2"]
    cmd += ["-m", "skiplab.cli", "train", "resmlp", "--data", "digits", "--epochs", "4"]
    cmd += ["--batch-size", "16", "--lr", "0.01", "--name", "elastic", "--resume"]
    cmd += ["--store", str(store)]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    log = tmp_path / "torchrun.log"
    with open(log, "wb") as sink:  # a file, not a pipe: nothing can block on a full buffer
        agent = subprocess.Popen(
            cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.time() + 300
    while not ckpt.exists() and agent.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert agent.poll() is None, "the job ended before a rank could be killed"
    victims = [p for p in _children(agent.pid) if _rank_of(p) == 1]
    assert victims, "rank 1 not found among torchrun's workers"
    killed_after = load_checkpoint(ckpt)["epoch"]
    os.kill(victims[0], signal.SIGKILL)
    try:
        agent.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(agent.pid, signal.SIGKILL)  # the agent and its workers, nothing else
        agent.wait()
    assert agent.returncode == 0, log.read_text()[-3000:]
    final = load_checkpoint(ckpt)
    assert final["epoch"] == 4 and len(final["history"]) == 4 and killed_after < 4
    with Store(store) as s:
        first, restart = sorted(s.runs(), key=lambda r: r.id)
        # rank 0 of the first attempt either saw gloo fail (failed) or was stopped by the
        # agent before it could say so (interrupted, found by the restart's store)
        assert first.status in ("failed", "interrupted") and restart.status == "completed"
        if first.status == "interrupted":  # killed before it could commit anything
            assert s.metrics(first.id) == []
        (done,) = s.runs(status="completed")
        assert done.config["world_size"] == 2
        assert len(s.metrics(done.id, "train_loss")) == 4  # restored epochs re-logged


@pytest.mark.slow  # ~30 s alone, over a minute on a busy 2-core machine
def test_reproduce_under_torchrun_rank0_writes_each_run_once(tmp_path):
    store = tmp_path / "s.sqlite"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "skiplab.cli"]
    cmd += ["reproduce", "--claims", "C09", "--scale", "tiny", "--store", str(store)]
    cmd += ["--out", str(tmp_path / "report")]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "report" / "index.html").is_file()
    with Store(store) as s:
        runs = s.runs(claim="C09")
        verdict = s.latest_verdict("C09", "tiny")
        assert verdict is not None and len(s.latest_verdicts()) == 1
        names = [r.name for r in runs]
        assert len(runs) >= 2 and len(names) == len(set(names))  # rank 1 wrote nothing here
        assert sorted(verdict.run_ids) == sorted(r.id for r in runs)
        assert all(r.status == "completed" for r in runs)
        assert all(len(s.metrics(r.id)) > 0 for r in runs)
