"""Generated option values for ``train``, ``runs``, ``report`` and ``reproduce`` against one
prepared store: every command exits 0 or 2 (never 1: no internal error), prints no traceback,
leaves the store passing ``PRAGMA integrity_check`` and changes no row stored before it.

The values mix valid ones with out-of-range, non-finite, garbage and hostile ones; the valid
ones are kept cheap (one epoch of a small MLP on digits, the stored C01 at tiny scale), so a
generated case either fails validation at once or runs for about a second.
"""

import itertools
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skiplab.cli import main
from skiplab.store import Store

TABLES = ("runs", "metrics", "results", "verdicts")
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A store with a reproduced C01 (runs, metrics, a verdict) and a trained run, plus a file
    for paths that cannot be directories."""
    root = tmp_path_factory.mktemp("prop")
    store = root / "s.sqlite"
    argv = ["reproduce", "--claims", "C01", "--scale", "tiny", "--executor", "serial"]
    assert main([*argv, "--store", str(store), "--out", str(root / "report")]) == 0
    with Store(store) as s:
        run = s.start_run("by hand \x1b[31m", "train", {"lr": 0.1})
        s.log_metrics(run, 1, {"train_loss": 0.5}, epoch=1)
        s.finish_run(run, "completed", results={"final": {"train_loss": 0.5}})
    (root / "afile").write_text("not a directory")
    return root, store, snapshot(store)


def snapshot(store):
    con = sqlite3.connect(store)
    try:
        return {t: set(con.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}
    finally:
        con.close()


counter = itertools.count()


def check(argv, prepared, capsys):
    _, store, before = prepared
    code = main([*argv, "--store", str(store)])
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err + out, (argv, err)
    if code == 2:
        assert err.strip().splitlines()[-1].startswith("skiplab: error: "), (argv, err)
    con = sqlite3.connect(store)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    after = snapshot(store)
    for table, rows in before.items():
        assert rows <= after[table], (argv, table, rows - after[table])


garbage = st.text(max_size=8)  # surrogates too: what argv decodes undecodable bytes to
ints = st.one_of(
    st.integers(-(10**25), 0), st.integers(2**31, 10**25), st.integers(-5, 5), garbage
).map(str)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), garbage)


def out_dir(root):
    return st.sampled_from(["fresh", "afile", "under-afile"]).map(
        lambda kind: str(
            root / f"out{next(counter)}"
            if kind == "fresh"
            else root / "afile"
            if kind == "afile"
            else root / "afile" / "sub"
        )
    )


def options(draw, table):
    chosen = draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=4))
    argv = []
    for name in chosen:
        value = table[name]
        if value is None:  # a flag
            argv.append(name)
        else:
            argv += [name, draw(value)]
    return argv


@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_train_options(data, prepared, capsys):
    root = prepared[0]
    table = {
        "--epochs": st.one_of(st.just("1"), ints),  # valid: one epoch only
        "--batch-size": st.one_of(
            st.integers(512, 10**6).map(str),
            ints.filter(lambda s: not (s.lstrip("-").isdigit() and 0 < int(s) < 512)),
        ),
        "--lr": floats,
        "--weight-decay": floats,
        "--seed": st.one_of(st.integers(-(2**70), 2**70).map(str), garbage),
        "--optimizer": st.sampled_from(["sgd", "adam", "adamw", "lbfgs", ""]),
        "--schedule": st.sampled_from(["cosine", "step", "onecycle", "constant", "x"]),
        "--recipe": st.sampled_from(["he2016", "", "HE2015"]),  # the real ones train 64k steps
        "--device": st.sampled_from(["cpu", "bogus", "cuda:99", "meta", "", "cpu:0"]),
        "--name": garbage,
        "--data-dir": st.sampled_from([str(root), str(root / "afile"), str(root / "none")]),
        "--checkpoint": st.sampled_from(
            [str(root / "c.pt"), str(root), str(root / "afile" / "c.pt")]
        ),
        "--plain": None,
        "--resume": None,
    }
    model = data.draw(st.sampled_from(["resmlp", "resmlp", "resmlp", "resgcn", "unet", "nope"]))
    dataset = data.draw(st.sampled_from(["digits", "digits", "digits", "nope"]))
    argv = ["train", model, "--data", dataset, "--epochs", "1", "--batch-size", "512"]
    check([*argv, *options(data.draw, table)], prepared, capsys)


@SETTINGS
@given(data=st.data())
def test_runs_options(data, prepared, capsys):
    table = {
        "--kind": st.one_of(st.sampled_from(["train", "claim"]), garbage),
        "--claim": st.one_of(st.sampled_from(["C01", "c01"]), garbage),
        "--limit": st.one_of(st.integers(1, 2**70).map(str), ints),
        "--json": None,
    }
    check(["runs", *options(data.draw, table)], prepared, capsys)


@settings(SETTINGS, max_examples=8)
@given(data=st.data())
def test_report_options(data, prepared, capsys):
    table = {"--scale": st.sampled_from(["tiny", "quick", "huge", ""])}
    argv = ["report", "--out", data.draw(out_dir(prepared[0]))]
    check([*argv, *options(data.draw, table)], prepared, capsys)


@settings(SETTINGS, max_examples=12)
@given(data=st.data())
def test_reproduce_options(data, prepared, capsys):
    table = {
        "--seeds": st.one_of(st.sampled_from(["1", "2"]), ints),
        "--workers": ints,
        "--device": st.sampled_from(["cpu", "bogus", "cuda:99", "meta"]),
        "--executor": st.sampled_from(["serial", "pool"]),
        "--address": garbage,
        "--out": out_dir(prepared[0]),
    }
    spec = data.draw(
        st.sampled_from(["C01", "residual-toy", "all,C01", "C01,ALL", "C99", "", ",", "C01,C01"])
    )
    argv = ["reproduce", "--claims", spec, "--scale", "tiny", "--executor", "serial", "--out",
            str(prepared[0] / "report")]  # fmt: skip
    check([*argv, *options(data.draw, table)], prepared, capsys)
