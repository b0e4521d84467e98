"""The CLI end to end (in-process for speed, one real subprocess)."""

import json
import re
import subprocess
import sys

import pytest

from skiplab.cli import main


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["reproduce", "--claims", "C99"], "unknown claim 'C99'"),
        (["reproduce", "--scale", "huge"], "'huge' is not one of"),
        (["reproduce", "--seeds", "0"], "--seeds"),
        (["train", "resnet57"], "unknown model 'resnet57'"),
        (["train", "resnet20", "--data", "nope"], "unknown dataset 'nope'"),
        (["list", "gadgets"], "'gadgets' is not one of"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, needle, capsys, tmp_path):
    code, _, err = run_cli(
        [
            *args,
            *([] if args[0] in ("list", "frobnicate") else ["--store", str(tmp_path / "s.sqlite")]),
        ],
        capsys,
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skiplab: error:") and needle in lines[0]
    assert "Traceback" not in err


def test_runs_without_store_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(["runs", "--store", str(tmp_path / "none.sqlite")], capsys)
    assert code == 2 and "no results store" in err


def test_reproduce_report_runs_and_reuse_of_stored_runs(capsys, tmp_path):
    store, out = str(tmp_path / "s.sqlite"), tmp_path / "report"
    code, stdout, err = run_cli(
        ["reproduce", "--claims", "C01", "--scale", "tiny", "--store", store, "--out", str(out)],
        capsys,
    )
    assert code == 0, err
    assert "C01 residual-toy: holds" in err
    assert (out / "index.html").is_file() and str(out / "index.html") in stdout
    records = json.loads((out / "claims.json").read_text())
    assert records[0]["id"] == "C01" and records[0]["verdict"] == "holds"
    assert records[0]["seeds"] == [0] and records[0]["run_ids"]
    png = out / "figures" / "residual-toy" / "surfaces.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, _, err = run_cli(
        [
            "reproduce",
            "--claims",
            "residual-toy",
            "--scale",
            "tiny",
            "--store",
            store,
            "--out",
            str(out),
        ],
        capsys,
    )
    # every run is stored: nothing runs again, the verdict is decided from the store
    assert code == 0 and re.search(r"[1-9]\d* stored, 0 to run", err), err
    assert "C01 residual-toy: holds" in err

    code, stdout, _ = run_cli(["runs", "--store", store, "--claim", "c01"], capsys)
    assert code == 0 and "C01 residual 1.0 seed 0" in stdout and "completed" in stdout
    code, stdout, _ = run_cli(["report", "--store", store, "--out", str(tmp_path / "r2")], capsys)
    assert code == 0 and (tmp_path / "r2" / "figures" / "residual-toy" / "surfaces.png").is_file()


def test_list_and_version(capsys):
    code, out, _ = run_cli(["list", "models"], capsys)
    assert code == 0 and "resnet56" in out and "plain56" in out
    code, out, _ = run_cli(["list", "claims"], capsys)
    assert code == 0 and "C01  residual-toy" in out
    code, out, _ = run_cli(["list", "datasets"], capsys)
    assert code == 0 and "mnist1d" in out
    code, out, _ = run_cli(["list", "probes"], capsys)
    names = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and names == ["skips", "signal", "gradflow", "jacobian", "paths",
                                   "landscape", "lesion"]  # fmt: skip
    assert "landscape  asked for  Loss landscape (a loss, run after --epochs)" in out


def test_train_command_stores_a_run(capsys, tmp_path):
    store = str(tmp_path / "s.sqlite")
    code, out, err = run_cli(
        [
            "train",
            "resnet20",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--store",
            store,
        ],
        capsys,
    )
    assert code == 0, err
    assert "test_acc" in out
    code, out, _ = run_cli(["runs", "--store", store, "--json"], capsys)
    row = json.loads(out.splitlines()[0])
    assert row["kind"] == "train" and row["status"] == "completed"


def test_console_script_error_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skiplab.cli",
            "reproduce",
            "--claims",
            "nope",
            "--store",
            str(tmp_path / "s.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "unknown claim 'nope'" in proc.stderr


def test_train_on_a_graph_file_and_bad_graph_files_are_one_line(capsys, tmp_path):
    import numpy as np

    from skiplab.data.cora import CORA_PATH

    store = str(tmp_path / "s.sqlite")
    graph = tmp_path / "mygraph.npz"
    graph.write_bytes(CORA_PATH.read_bytes())
    args = ["train", "gcn_initial", "--data-path", str(graph), "--epochs", "100", "--optimizer",
            "adam", "--lr", "0.01", "--weight-decay", "5e-4", "--schedule", "constant",
            "--store", store]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "gcn_initial-mygraph-seed0" in stdout
    acc = float(stdout.split("test_acc ")[1].split()[0])
    assert acc > 0.7, stdout  # an 8-layer GCNII on Cora: 79% after 100 full-batch steps
    arrays = dict(np.load(graph))
    del arrays["y"]
    broken = tmp_path / "broken.npz"
    np.savez(broken, **arrays)
    arrays = dict(np.load(graph))
    arrays["val_mask"] = arrays["train_mask"]  # every training node is also a validation node
    overlapping = tmp_path / "overlapping.npz"
    np.savez(overlapping, **arrays)
    for argv, needle in (
        (["train", "gcn_initial", "--data-path", str(broken)], "'y'"),
        (["train", "gcn_initial", "--data-path", str(overlapping)], "'train_mask' and 'val_mask'"),
        (["train", "resnet20", "--data-path", str(graph)], "is not a GNN"),
        (["train", "gcn_initial", "--data-path", str(tmp_path / "no.npz")], "does not exist"),
        (["reproduce", "--claims", "C01", "--data-path", str(graph)], "takes no --data-path"),
    ):
        code, _, err = run_cli([*argv, "--store", store], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
