import os
from pathlib import Path

import pytest

from skiplab.cli import main
from skiplab.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_probe_is_one_line_listing_allowed(tmp_path, capsys):
    code = main(
        ["diagnose", "resmlp", "--probes", "skips,bogus", "--store", str(tmp_path / "s.sqlite")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        "bogus" in err and "allowed: all, default, skips, signal, gradflow, jacobian, paths" in err
    )


def test_diagnose_registry_model_writes_page_and_run(tmp_path):
    out, db = tmp_path / "diag", tmp_path / "s.sqlite"
    code = main(["diagnose", "resmlp", "--probes", "skips,signal,paths,lesion", "--epochs", "0",
                 "--out", str(out), "--store", str(db)])  # fmt: skip
    assert code == 0
    html = (out / "index.html").read_text()
    for title in ("Skips", "Signal propagation", "Paths", "Lesion study"):
        assert title in html
    assert "Loss landscape" not in html and 'errorbox">' not in html
    assert (out / "figures" / "paths.png").is_file()
    with Store(db) as store:
        (run,) = store.runs(kind="diagnose")
        assert run.status == "completed"
        assert store.results(run.id)["skips"]["counts"]["residual"] == 10


@pytest.mark.parametrize(
    ("factory", "data", "kind"), [("nanogpt", "mnist1d", "residual"), ("unet", "digits", "concat")]
)
def test_diagnose_hand_written_factory(tmp_path, monkeypatch, factory, data, kind):
    monkeypatch.chdir(ROOT)  # ``examples`` is importable from the working directory, as with -m
    out, db = tmp_path / "diag", tmp_path / "s.sqlite"
    code = main(["diagnose", f"examples.custom_models:{factory}", "--data", data,
                 "--probes", "skips,signal,jacobian,gradflow", "--epochs", "0",
                 "--out", str(out), "--store", str(db)])  # fmt: skip
    assert code == 0
    with Store(db) as store:
        (run,) = store.runs(kind="diagnose")
        counts = store.results(run.id)["skips"]["counts"]
    assert counts[kind] >= 2
    assert "torch.fx" in (out / "index.html").read_text()


def test_bad_factory_and_mismatched_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    db = str(tmp_path / "s.sqlite")
    assert main(["diagnose", "examples.custom_models:nope", "--store", db]) == 2
    assert "no callable 'nope'" in capsys.readouterr().err
    assert (
        main(["diagnose", "examples.custom_models:unet", "--data", "mnist1d", "--store", db]) == 2
    )
    assert "does not accept dataset 'mnist1d'" in capsys.readouterr().err
    assert os.getcwd() == str(ROOT)
