"""The CLI's error contract: a user error is one line naming the option or file, exit 2; an
internal error is one line that says so (exit 1) and ``--debug`` shows its traceback; nothing
stored is lost or half-written either way."""

import json
import sqlite3
import subprocess
import sys
import textwrap

import click
import pytest
import torch

from skiplab.cli import cli, main
from skiplab.store import Store

HUGE = "99999999999999999999"
T = ["train", "resmlp", "--data", "digits", "--epochs", "1", "--batch-size", "256"]


def one_line(code, capsys, expect_code=2):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == expect_code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def no_runs(store):
    if not store.exists():
        return True
    return sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([*T, "--seed", HUGE], "--seed"),
        ([*T, "--seed", "18446744073709551615"], "--seed"),
        (["diagnose", "resmlp", "--probes", "skips", "--seed", HUGE], "--seed"),
        (["diagnose", "resmlp", "--probes", "skips", "--epochs", HUGE], "--epochs"),
        ([*T, "--epochs", HUGE], "--epochs"),
        ([*T, "--batch-size", HUGE], "--batch-size"),
        ([*T, "--lr", "inf"], "--lr"),
        ([*T, "--lr", "nan"], "--lr"),
        ([*T, "--lr", "-inf"], "--lr"),
        ([*T, "--weight-decay", "inf"], "--weight-decay"),
        ([*T, "--weight-decay", "nan"], "--weight-decay"),
        (["reproduce", "--claims", "all,C01", "--scale", "tiny"], "'all'"),
        (["reproduce", "--claims", "C01, ALL", "--scale", "tiny"], "'all'"),
        (["reproduce", "--claims", "C01", "--scale", "tiny", "--workers", HUGE], "--workers"),
        (["reproduce", "--claims", "C01", "--scale", "tiny", "--device", "bogus"], "--device"),
        ([*T, "--device", "bogus"], "--device"),
        ([*T, "--device", "meta"], "--device"),
        (["train", "resgcn", "--data", "digits"], "--data-path"),
        (["train", "unet", "--data", "digits"], "classifiers"),
    ],
)
def test_bad_option_is_one_line_naming_it_and_nothing_is_stored(argv, needle, capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    line = one_line(main([*argv, "--store", str(store)]), capsys)
    assert line.startswith("skiplab: error: ") and needle in line, line
    assert no_runs(store)


def test_undecodable_bytes_in_an_option_name_the_option(capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    line = one_line(main([*T, "--name", "a\udcffb", "--store", str(store)]), capsys)
    assert "--name" in line and "UTF-8" in line
    assert no_runs(store)


def test_runs_limit_beyond_sqlite_is_one_line(capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    with Store(store) as s:
        s.finish_run(s.start_run("a", "train", {}), "completed")
    line = one_line(main(["runs", "--limit", HUGE, "--store", str(store)]), capsys)
    assert "--limit" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_cuda_without_cuda_refused_before_the_run(capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    line = one_line(main([*T, "--device", "cuda", "--store", str(store)]), capsys)
    assert "--device cuda" in line and "--device cpu" in line
    assert no_runs(store)  # not a run recorded `interrupted`


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_on_a_gpu_this_machine_lacks(capsys, tmp_path):
    line = one_line(main([*T, "--device", "cuda:999", "--store", str(tmp_path / "s")]), capsys)
    assert "cuda:999" in line


def test_data_dir_for_a_dataset_that_reads_none(capsys, tmp_path):
    (tmp_path / "adir").mkdir()
    code = main([*T, "--data-dir", str(tmp_path / "adir"), "--store", str(tmp_path / "s")])
    line = one_line(code, capsys)
    assert "--data-dir" in line and "'digits'" in line


def test_reproduce_out_under_a_file_refused_before_any_claim_runs(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    store = tmp_path / "s.sqlite"
    argv = ["reproduce", "--claims", "C01", "--scale", "tiny", "--executor", "serial"]
    line = one_line(main([*argv, "--out", str(tmp_path / "afile" / "sub"), "--store", str(store)]),
                    capsys)  # fmt: skip
    assert "--out" in line and "afile" in line
    assert no_runs(store)
    line = one_line(main([*argv, "--out", str(tmp_path / "afile"), "--store", str(store)]), capsys)
    assert "--out" in line and "is a file" in line


def test_report_and_diagnose_out_under_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    store = tmp_path / "s.sqlite"
    with Store(store) as s:
        s.finish_run(s.start_run("a", "train", {}), "completed")
    bad = str(tmp_path / "afile" / "sub")
    assert "--out" in one_line(main(["report", "--out", bad, "--store", str(store)]), capsys)
    code = main(["diagnose", "resmlp", "--probes", "skips", "--out", bad, "--store", str(store)])
    assert "--out" in one_line(code, capsys)


def test_checkpoint_path_that_cannot_hold_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    store = tmp_path / "s.sqlite"
    for ckpt in (tmp_path / "afile" / "c.pt", tmp_path):  # under a file; a directory
        line = one_line(main([*T, "--checkpoint", str(ckpt), "--store", str(store)]), capsys)
        assert "--checkpoint" in line and str(ckpt) in line
    assert no_runs(store)


def test_store_under_a_file_names_the_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    store = tmp_path / "afile" / "s.sqlite"
    line = one_line(main(["reproduce", "--claims", "C01", "--scale", "tiny", "--store",
                          str(store), "--out", str(tmp_path / "r")]), capsys)  # fmt: skip
    assert str(tmp_path / "afile") in line


def test_resume_from_a_checkpoint_that_is_not_a_runs(capsys, tmp_path):
    from skiplab.train.checkpoint import save_checkpoint

    ckpt = tmp_path / "foreign.pt"
    save_checkpoint({"x": 1}, ckpt)
    store = tmp_path / "s.sqlite"
    code = main([*T, "--checkpoint", str(ckpt), "--resume", "--store", str(store)])
    line = one_line(code, capsys)
    assert str(ckpt) in line and "resume" in line
    assert line != "skiplab: error: 'model'"


FACTORIES = {
    "raises": "def make():\n    raise RuntimeError('no weights here')\n",
    "needs_arg": "def make(depth):\n    return None\n",
    "exits0": "def make():\n    raise SystemExit(0)\n",
    "exits3": "import sys\ndef make():\n    sys.exit(3)\n",
    "import_fails": "raise RuntimeError('broken at import')\ndef make():\n    pass\n",
    "syntax": "def make(:\n    pass\n",
    "import_exits": "raise SystemExit(0)\n",
    "missing_dep": "import skiplab_no_such_module\ndef make():\n    pass\n",
    "not_a_module": "def make():\n    return 42\n",
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_every_failing_diagnose_factory_is_one_line(kind, capsys, tmp_path, monkeypatch):
    module = f"skiplab_test_factory_{kind}"
    (tmp_path / f"{module}.py").write_text(FACTORIES[kind])
    monkeypatch.chdir(tmp_path)  # the working directory is importable, as with python -m
    monkeypatch.delitem(sys.modules, module, raising=False)
    store = tmp_path / "s.sqlite"
    code = main(["diagnose", f"{module}:make", "--probes", "skips", "--store", str(store)])
    line = one_line(code, capsys)
    assert f"{module}:make" in line, line
    if kind == "needs_arg":
        assert "depth" in line and "no arguments" in line
    if kind.startswith("exits") or kind == "import_exits":
        assert "SystemExit" in line
    assert no_runs(store)


@pytest.fixture
def failing_command():
    """A real command on the CLI group that fails the way ``kind`` says, removed afterwards."""

    @cli.command(name="_fail_for_test")
    @click.argument("kind")
    @click.argument("path")
    def fail(kind: str, path: str) -> None:
        from skiplab._files import FileLock, FileTargetError

        if kind == "internal":
            _ = {}["no-such-key"]  # an internal bug: a bare KeyError names nothing
        if kind == "runtime":
            raise RuntimeError("boom\nsecond line")
        if kind == "locked":
            with FileLock(path, what=f"report folder {path}", hint="wait for it"):
                FileLock(path, what=f"report folder {path}", hint="wait for it").acquire()
        if kind == "target":
            raise FileTargetError(f"report {path} is a directory, not a regular file")
        if kind == "eacces":
            raise PermissionError(13, "Permission denied", path)

    yield
    del cli.commands["_fail_for_test"]


def test_internal_error_is_one_line_and_debug_shows_it(failing_command, capsys, tmp_path):
    line = one_line(main(["_fail_for_test", "internal", "x"]), capsys, expect_code=1)
    assert "internal error" in line and "KeyError" in line and "--debug" in line
    line = one_line(main(["_fail_for_test", "runtime", "x"]), capsys, expect_code=1)
    assert "RuntimeError: boom" in line and "--debug" in line
    with pytest.raises(KeyError):
        main(["--debug", "_fail_for_test", "internal", "x"])


def test_locks_targets_and_os_errors_are_user_errors(failing_command, capsys, tmp_path):
    path = str(tmp_path / "lock")
    line = one_line(main(["_fail_for_test", "locked", path]), capsys)
    assert path in line
    line = one_line(main(["_fail_for_test", "target", path]), capsys)
    assert path in line and "directory" in line
    line = one_line(main(["_fail_for_test", "eacces", path]), capsys)
    assert path in line and "permission" in line.lower()


def test_internal_error_in_a_real_process(tmp_path):
    script = textwrap.dedent(
        """
        import sys, click
        from skiplab.cli import cli, main

        @cli.command(name="_boom")
        def boom():
            raise ZeroDivisionError("division by zero in a bug")

        sys.exit(main(sys.argv[1:]))
        """
    )
    for argv, code in ((["_boom"], 1), (["_boom", "--debug"], 1)):
        proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert proc.returncode == code, proc.stderr
        if "--debug" in argv:
            assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr
        else:
            assert proc.stderr.strip().splitlines() == [
                "skiplab: internal error: ZeroDivisionError: division by zero in a bug "
                "(rerun with --debug for the traceback)"
            ]


def test_runs_output_neutralises_terminal_escapes(capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    evil = "evil\x1b[2J\x1b]0;owned\x07\x9b31m\u202etxt\r\nnext"
    with Store(store) as s:
        s.finish_run(s.start_run(evil, "train", {"lr": float("inf"), "wd": float("nan")}),
                     "completed")  # fmt: skip
    assert main(["runs", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    for ch in ("\x1b", "\x07", "\x9b", "\u202e", "\r"):
        assert ch not in out
    assert "evil\\x1b[2J" in out and "\\u202e" in out
    assert len(out.strip().splitlines()) == 2  # the header and one row: \n is escaped too
    assert main(["runs", "--json", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert all(ord(c) < 0x7F and (c.isprintable() or c == "\n") for c in out)

    def refuse(constant):
        raise ValueError(f"non-standard JSON {constant}")

    row = json.loads(out, parse_constant=refuse)
    assert row["name"] == evil and row["config"] == {"lr": "inf", "wd": "nan"}


def test_train_run_name_with_escapes_is_printed_safely(capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    code = main([*T, "--name", "x\x1b[31my", "--store", str(store)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "\x1b" not in captured.out and "x\\x1b[31my" in captured.out


def test_reproduce_into_a_report_folder_in_use_is_refused_before_any_run(tmp_path):
    import sqlite3

    from skiplab.report import report_lock

    out, store = tmp_path / "report", tmp_path / "s.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from skiplab.report import report_lock\n"
         f"with report_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        argv = ["reproduce", "--claims", "C01", "--scale", "tiny", "--executor", "serial"]
        argv += ["--out", str(out), "--store", str(store)]
        done = subprocess.run(
            [sys.executable, "-m", "skiplab.cli", *argv], capture_output=True, text=True
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "in use by another process" in done.stderr
    if store.exists():  # refused before a single run was stored
        assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone() == (0,)
    with report_lock(out):  # free again once its holder is gone
        pass
