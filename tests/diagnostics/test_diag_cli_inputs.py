"""``skiplab diagnose`` feeds any model: a factory's own inputs, random images, token ids,
and a dataset the factory's module registers."""

import json
import sqlite3
import textwrap

import pytest

pytest.importorskip("transformers")

from skiplab.cli import main


def _one_line(code, capsys):
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _results(store):
    with sqlite3.connect(store) as db:
        runs = db.execute("select id, status from runs where kind = 'diagnose'").fetchall()
        assert [r[1] for r in runs] == ["completed"]
        rows = db.execute("select key, value from results where run_id = ?", (runs[0][0],))
        return {k: json.loads(v) for k, v in rows}


FACTORY = """
import torch
import transformers
from skiplab.data import Splits, register_dataset


def gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))
    return transformers.GPT2LMHeadModel(cfg), {"input_ids": ids}


@register_dataset("tiny_from_factory")
def tiny(**_):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 2, (64,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    return Splits(train=ds, test=ds, name="tiny_from_factory", num_classes=2, in_channels=6,
                  input_shape=(6,))


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
"""


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "userzoo.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_factory_that_returns_its_inputs_is_diagnosed_with_them(factory, capsys):
    store, out = factory / "s.sqlite", factory / "out"
    code = main(["diagnose", "userzoo:gpt2", "--out", str(out), "--store", str(store)])
    assert code == 0, capsys.readouterr().err
    res = _results(store)
    assert res["skips"]["counts"]["residual"] == 4  # GPT-2, 2 layers: 2 adds each
    assert res["blocks"] == ["transformer.h.0", "transformer.h.1"]
    assert res["task"] == "next-token" and res["errors"] == {}
    assert "transformer.h.1" in (out / "index.html").read_text()


def test_paths_and_the_landscape_run_on_a_factorys_own_inputs(factory, capsys):
    store, out = factory / "s.sqlite", factory / "out"
    argv = ["diagnose", "userzoo:gpt2", "--probes", "paths,landscape", "--out", str(out)]
    assert main([*argv, "--store", str(store)]) == 0, capsys.readouterr().err
    res = _results(store)
    assert res["errors"] == {} and set(res["wall_s"]) == {"paths", "landscape"}
    # 4 residual adds; each sub-layer's branch has 3 paths (q, k, v; the tanh GELU's 3 uses)
    assert res["paths"]["graph"]["total"] == 4**4
    assert res["paths"]["gradient"]["n"] == 4
    line = res["landscape"]["line"]["loss"]
    assert len(line) == 31 and min(line) > 0
    assert (out / "figures" / "landscape_plane.png").is_file()


def test_input_shape_gives_random_images_to_a_registry_model(factory, capsys):
    store, out = factory / "s.sqlite", factory / "out"
    argv = ["diagnose", "resnet20", "--input-shape", "3,16,16", "--batch-size", "4",
            "--probes", "skips,signal", "--out", str(out), "--store", str(store)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    res = _results(store)
    assert res["inputs"] == "(4, 3, 16, 16)" and res["skips"]["counts"]["residual"] == 9


def test_a_dataset_the_factory_module_registers_is_found(factory, capsys):
    store, out = factory / "s.sqlite", factory / "out"
    argv = ["diagnose", "userzoo:mlp", "--data", "tiny_from_factory", "--probes", "skips",
            "--epochs", "0", "--out", str(out), "--store", str(store)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["resnet20", "--input-shape", "3,x"], "--input-shape '3,x'"),
        (["resnet20", "--input-shape", "0,4"], "--input-shape"),
        (["resnet20", "--tokens", "100"], "VOCAB,LENGTH"),
        (["resnet20", "--tokens", "100,8"], "takes no token ids"),
        (["resnet20", "--data", "mnist1d", "--tokens", "10,4"], "one source of inputs"),
        (["userzoo:gpt2", "--input-shape", "3,8,8"], "brings its own inputs"),
        (["userzoo:gpt2", "--probes", "skips,bogus"], "unknown probe(s) bogus"),
        (["resnet20", "--input-shape", "1000,1000,1000"], "too many"),
    ],
)
def test_bad_inputs_are_one_line_and_nothing_is_stored(factory, capsys, argv, needle):
    store = factory / "s.sqlite"
    line = _one_line(main(["diagnose", *argv, "--store", str(store)]), capsys)
    assert needle in line, line
    if store.exists():
        with sqlite3.connect(store) as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0
