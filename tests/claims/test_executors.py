"""Executors: serial, a local process pool and Ray give the same numbers; workers that die are
replaced and their runs retried; only the driver writes the store; bad options are one line."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from skiplab.claims import (
    ExecutorError,
    LocalExecutor,
    SerialExecutor,
    make_executor,
    reproduce,
    select_claims,
)
from skiplab.cli import main
from skiplab.store import Store


def _results(store, claim_id):
    """key -> (status, results) of a claim's stored runs."""
    return {r.key: (r.status, store.results(r.id)) for r in store.runs(claim=claim_id)}


def _reproduce_with(executor, claims, path, **kw):
    with Store(path) as store:
        outcomes = reproduce(claims, scale="tiny", store=store, workdir=path.parent / "work",
                             executor=executor, **kw)  # fmt: skip
        return outcomes, {c.id: _results(store, c.id) for c in claims}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    # Ray's workers import the toy claim's module like a user's own claim module: from a
    # path given in the job's runtime environment.
    here = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": here}})  # fmt: skip
    yield ray
    ray.shutdown()


def test_serial_local_and_ray_give_the_same_numbers(toy, tmp_path, ray_local):
    from skiplab.claims import RayExecutor

    claims = [toy(), *select_claims("C09")]
    runs = {}
    for name, executor in (("serial", SerialExecutor()), ("local", LocalExecutor(2)),
                           ("ray", RayExecutor()), ):  # fmt: skip
        outcomes, runs[name] = _reproduce_with(executor, claims, tmp_path / name / "s.sqlite",
                                               seeds=1)  # fmt: skip
        assert [o.executed for o in outcomes] == [2, 8]
    for claim_id in ("X01", "C09"):
        assert runs["serial"][claim_id] == runs["local"][claim_id] == runs["ray"][claim_id]
        assert all(status == "completed" for status, _ in runs["serial"][claim_id].values())


def test_only_the_driver_writes_and_workers_run_single_threaded(toy, tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        reproduce([toy()], scale="tiny", store=store, workdir=tmp_path / "w",
                  executor=LocalExecutor(2))  # fmt: skip
        workers = {r.config["worker"] for r in store.runs(claim="X01")}
        assert workers and all(not w.endswith(f":{os.getpid()}") for w in workers)
        assert {r.config["threads"] for r in store.runs(claim="X01")} == {1}


def _kill_first_run(pid_dir: Path, busy: int = 1, timeout: float = 120.0) -> threading.Thread:
    """Kill (SIGKILL) the process of the first run that writes its pid into ``pid_dir``, once
    ``busy`` runs have started (so the other workers have a run in flight)."""

    def kill():
        deadline = time.time() + timeout
        while time.time() < deadline:
            pids = sorted(pid_dir.glob("*.pid"), key=lambda p: p.stat().st_mtime)
            if len(pids) >= busy:
                os.kill(int(pids[0].read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_killed_worker_is_replaced_and_nothing_is_duplicated(engine, toy, tmp_path, request):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    claim = toy(sleep_s=2.0, pid_dir=str(pid_dir))
    if engine == "ray":
        request.getfixturevalue("ray_local")
        from skiplab.claims import RayExecutor

        executor = RayExecutor()
    else:
        executor = LocalExecutor(2)
    killer = _kill_first_run(pid_dir, busy=2)  # both workers busy: one dies, one goes on
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path / "w",
                           executor=executor)  # fmt: skip
        killer.join(timeout=1)
        runs = store.runs(claim="X01")
        assert out.status == "holds", out.reason
        assert len(runs) == 4 and len({r.key for r in runs}) == 4  # each run stored once
        assert all(r.status == "completed" for r in runs)
    started = {p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in pid_dir.glob("*.pid")}
    # only the killed run ran twice: the other worker's run in flight was not lost
    assert len(list(pid_dir.glob("*.pid"))) == 5 and len(started) == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--executor", "threads"], "'threads' is not one of 'serial', 'local', 'ray'"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "-3"], "--workers must be >= 1"),
        (["--executor", "local", "--address", "auto"], "--address is for --executor ray"),
        (["--executor", "ray", "--address", "127.0.0.1:9"], "cannot reach a Ray cluster"),
        (["--executor", "ray", "--address", "nonsense"], "is not host:port"),
    ],
)
def test_bad_executor_options_are_one_line(args, needle, capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    with Store(store) as s:  # something already stored must survive
        rid = s.start_run("kept", "train", {})
        s.finish_run(rid, "completed")
    code = main(["reproduce", "--claims", "C01", "--scale", "tiny", "--store", str(store),
                 *args])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    with Store(store) as s:
        assert [r.name for r in s.runs()] == ["kept"]


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'skiplab\[ray\]'"):
        make_executor("ray")


def test_the_default_executor_is_a_local_pool_on_several_cores():
    executor = make_executor(workers=2)
    assert executor.name == "local" and executor.workers == 2
    assert make_executor(workers=1).name == "serial"


def _spec_for(claim, cost, key):
    from skiplab.claims import RunSpec

    return RunSpec(claim, "m", "tiny", None, None, 0, key, f"{claim} {key}", cost=cost)


def _outcome(key, wall):
    from skiplab.claims import RunOutcome

    return RunOutcome(key, "completed", {}, [], None, 0.0, wall, "w")


def test_progress_estimates_time_left_per_claim_and_prints_one_line_per_run():
    from skiplab.claims._executors import Progress

    lines = []
    # claim A's costs are in tenths of a second, claim B's in hours: each claim's own rate
    specs = [_spec_for("A", 10, "a1"), _spec_for("A", 10, "a2"), _spec_for("B", 1, "b1"),
             _spec_for("B", 1, "b2")]  # fmt: skip
    meter = Progress({"A": 2, "B": 2}, lines.append, workers=2)
    meter.start(specs)
    meter.done(specs[0], _outcome("a1", 1.0))  # A: 0.1 s per unit
    meter.done(specs[2], _outcome("b1", 100.0))  # B: 100 s per unit
    assert meter.left_s() == pytest.approx((10 * 0.1 + 1 * 100.0) / 2)
    assert len(lines) == 2 and lines[0].startswith("[1/4] A a1: completed in 1.0 s · A 1/2")
    assert "left ~" in lines[1] and "elapsed" in lines[1]


def test_runs_of_a_condition_seen_before_are_dispatched_by_their_measured_time(toy, tmp_path):
    from skiplab.claims._runner import _plan

    with Store(tmp_path / "s.sqlite") as store:
        reproduce([toy(sleep_s=0.3, widths=(4, 32))], scale="tiny", store=store,
                  workdir=tmp_path / "w")  # fmt: skip
        claim = toy(sleep_s=0.3, widths=(4, 32), steps=10)  # new identities, same conditions
        settings = claim.settings("tiny")
        _, specs = _plan(claim, settings, "tiny", [0, 1], store, tmp_path / "w", "cpu", 1, False)
        assert len(specs) == 4 and all(s.cost > 0.3 for s in specs)  # seconds, not the hint
