"""Where runs execute: in process, in a local process pool, or as Ray tasks.

Every executor takes :class:`~skiplab.claims._runner.RunSpec` s and yields
:class:`~skiplab.claims._runner.RunOutcome` s as they finish; none writes the store (the driver
does), so workers need no shared filesystem and a worker that dies loses only its own run.
Right before a spec is dispatched the executor asks the driver's ``start(spec)``; a spec it
refuses (stored meanwhile, or being run by another process) is skipped.

- :class:`SerialExecutor`: one run after another in this process.
- :class:`LocalExecutor`: a pool of worker processes, one single-threaded worker per core on
  the CPU (two intra-op threads fighting for two busy cores made claims 5-26x slower), one
  worker per visible GPU on CUDA (``CUDA_VISIBLE_DEVICES`` per worker). A worker that dies is
  replaced and its run retried.
- :class:`RayExecutor`: every run a Ray task (``num_cpus=1``, or ``num_gpus=1`` on CUDA) with
  ``max_retries``, on a local Ray or a cluster (``address="auto"``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import wait as mp_wait
from typing import Any

from skiplab.claims._runner import RunOutcome, RunSpec, execute

EXECUTORS = ("serial", "local", "ray")
#: The driver's answer, right before a spec is dispatched, to whether it should run here.
Start = Callable[[RunSpec], bool]

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "Progress",
    "RayExecutor",
    "SerialExecutor",
    "available_cores",
    "make_executor",
]


class ExecutorError(ValueError):
    """An executor cannot be used as asked (bad option, Ray missing or unreachable)."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _failed(spec: RunSpec, error: str) -> RunOutcome:
    return RunOutcome(spec.key, "failed", {}, [], error, time.time(), 0.0, "")


class Executor(ABC):
    """Runs specs and yields their outcomes as they finish (in any order)."""

    name: str = ""
    workers: int = 1

    @abstractmethod
    def run(self, specs: Sequence[RunSpec], start: Start | None = None) -> Iterator[RunOutcome]:
        """Execute every spec ``start`` accepts when asked right before its dispatch (every
        spec without ``start``); yield one outcome per executed spec."""

    def describe(self) -> str:
        return f"{self.name} executor, {self.workers} worker(s)"

    def close(self) -> None:  # noqa: B027  (an optional hook)
        """Release what the executor started (a local Ray)."""


class SerialExecutor(Executor):
    """One run after another, in this process."""

    name = "serial"

    def run(self, specs: Sequence[RunSpec], start: Start | None = None) -> Iterator[RunOutcome]:
        for spec in specs:
            if start is None or start(spec):
                yield execute(spec)


def _serve(conn: Any, gpu: str | None) -> None:
    """A local worker: claim its GPU before CUDA starts, then run specs until told to stop."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    # tqdm's default lock is a multiprocessing semaphore; a worker the driver stops mid-run
    # (Ctrl-C, a failed claim) would leave it to the resource tracker, which warns about it.
    # The worker's output goes nowhere shared, so a thread lock is all it needs.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):  # the driver has gone
            return
        if spec is None:
            return
        conn.send(execute(spec))


class _Worker:
    """One worker process, the pipe to it, and the spec it is running (``None``: idle)."""

    def __init__(self, ctx: Any, gpu: str | None) -> None:
        self.gpu = gpu
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, gpu), daemon=True)
        # A terminal's Ctrl-C reaches the whole process group; a worker ignores it (and keeps
        # ignoring it: Python leaves an inherited SIG_IGN alone) and the driver stops it.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.proc.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        child.close()
        self.spec: RunSpec | None = None

    def give(self, spec: RunSpec) -> None:
        self.spec = spec
        self.conn.send(spec)

    def collect(self) -> RunOutcome | None:
        """Its finished run's outcome, or ``None`` when the process died (its run is lost)."""
        try:
            out: RunOutcome = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            return None
        self.spec = None
        return out

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # a worker that died cannot be told
            self.conn.send(None)
        self.proc.join(5 if self.spec is None else 0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class LocalExecutor(Executor):
    """A pool of worker processes on this machine.

    Each worker is a process with a pipe of its own, so a worker that dies (SIGKILL, out of
    memory) loses only the run it was doing: that run is retried on a fresh worker while the
    others go on.

    Args:
        workers: pool size (default: one per core on the CPU, one per GPU on CUDA).
        device: the runs' device; on CUDA worker ``i`` sees only GPU ``i``.
        retries: times a run is retried after its worker process died (default 2).
    """

    name = "local"

    def __init__(self, workers: int | None = None, device: str = "cpu", retries: int = 2) -> None:
        self.cuda = device.startswith("cuda")
        self.gpu_ids: list[str] = []
        if self.cuda:
            import torch

            gpus = torch.cuda.device_count()
            if gpus == 0:
                raise ExecutorError("--device cuda: no GPU is visible to this process")
            workers = workers or gpus
            if workers > gpus:
                raise ExecutorError(
                    f"--workers {workers} on CUDA needs {workers} GPUs; {gpus} visible"
                )
            self.gpu_ids = _visible_gpus(gpus)
        self.workers = workers or available_cores()
        if self.workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {self.workers}")
        self.retries = retries

    def run(self, specs: Sequence[RunSpec], start: Start | None = None) -> Iterator[RunOutcome]:
        # spawn, not fork: a forked child of a process that has started torch's thread pools
        # (or CUDA) can deadlock.
        ctx = mp.get_context("spawn")
        todo = deque(specs)  # longest first: idle workers take the front
        attempts: dict[str, int] = {}
        slots = self.gpu_ids[: self.workers] if self.cuda else [None] * self.workers
        pool = [_Worker(ctx, gpu) for gpu in slots[: max(1, min(len(slots), len(todo)))]]
        try:
            while todo or any(w.spec is not None for w in pool):
                for w in pool:
                    while w.spec is None and todo:
                        nxt = todo.popleft()
                        if start is None or start(nxt):  # a retried run is its own again
                            w.give(nxt)
                busy = [w for w in pool if w.spec is not None]
                if not busy:  # start refused every spec left
                    break
                ready = set(mp_wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
                for i, w in enumerate(pool):
                    spec = w.spec
                    if spec is None or not {w.conn, w.proc.sentinel} & ready:
                        continue
                    out = w.collect()
                    if out is not None:
                        yield out
                        continue
                    attempts[spec.key] = attempts.get(spec.key, 0) + 1
                    if attempts[spec.key] > self.retries:
                        yield _failed(spec, "its worker process died on every attempt")
                    else:
                        todo.appendleft(spec)
                    w.spec = None
                    w.stop()
                    pool[i] = _Worker(ctx, w.gpu)
        finally:
            for w in pool:
                w.stop()


def _visible_gpus(count: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [v.strip() for v in visible.split(",") if v.strip()][:count]
    return [str(i) for i in range(count)]


class RayExecutor(Executor):
    """Every run a Ray task; results stream back to the driver, which writes the store.

    Args:
        address: a running cluster (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.1:6379"``);
            ``None`` starts a local Ray with ``workers`` CPUs.
        workers: CPUs of a local Ray (default: every core); ignored on a cluster.
        device: the runs' device; ``cuda`` asks one GPU per task.
        retries: Ray's ``max_retries``: a task whose worker died is run again.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        device: str = "cpu",
        retries: int = 3,
    ) -> None:
        try:
            import ray
        except ImportError as err:
            raise ExecutorError(
                "--executor ray needs Ray: pip install 'skiplab[ray]' (or use --executor local)"
            ) from err
        self.ray = ray
        self.started = False
        if address is not None:
            _probe(address)  # Ray itself retries an unreachable address for minutes
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers or available_cores()
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise _unreachable(address, err) from err
            self.started = True
        resources = ray.cluster_resources()
        self.workers = int(resources.get("GPU" if device.startswith("cuda") else "CPU", 1))
        if device.startswith("cuda") and "GPU" not in resources:
            raise ExecutorError("--device cuda: the Ray cluster has no GPU")
        options = {"num_cpus": 1, "max_retries": retries, "retry_exceptions": False}
        if device.startswith("cuda"):
            options["num_gpus"] = 1
        self.task = ray.remote(execute).options(**options)

    def run(self, specs: Sequence[RunSpec], start: Start | None = None) -> Iterator[RunOutcome]:
        ray = self.ray
        accepted = [spec for spec in specs if start is None or start(spec)]
        refs = {self.task.remote(spec): spec for spec in accepted}  # longest first, in order
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as err:
                        yield _failed(refs[ref], f"Ray task failed: {err}")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _unreachable(address: str | None, err: object) -> ExecutorError:
    text = str(err).strip()
    why = text.splitlines()[0] if text else type(err).__name__
    return ExecutorError(
        f"cannot reach a Ray cluster at --address {address}: {why}; start one with "
        "`ray start --head` (see the README) or leave out --address for a local Ray"
    )


def _probe(address: str) -> None:
    """Fail fast, with a clear message, when ``host:port`` does not accept connections."""
    if address == "auto":
        return  # Ray looks for a cluster started on this machine, and says so at once
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorError(f"--address {address!r} is not host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except OSError as err:
        raise _unreachable(address, err) from err


def make_executor(
    name: str | None = None,
    *,
    workers: int | None = None,
    address: str | None = None,
    device: str = "cpu",
) -> Executor:
    """The executor ``name`` (default: ``local`` on a multi-core machine, else ``serial``).

    Raises:
        ExecutorError: an unknown name, ``workers < 1``, ``address`` without Ray, Ray
            missing or unreachable; the message says how to fix it.
    """
    if workers is not None and workers < 1:
        raise ExecutorError(f"--workers must be >= 1, got {workers}")
    if name is None:
        name = (
            "local" if (workers or available_cores()) > 1 or device.startswith("cuda") else "serial"
        )
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if address is not None and name != "ray":
        raise ExecutorError(f"--address is for --executor ray, not {name}")
    if name == "serial":
        if workers not in (None, 1):
            raise ExecutorError("--executor serial runs one run at a time; drop --workers")
        return SerialExecutor()
    if name == "local":
        return LocalExecutor(workers, device)
    return RayExecutor(address, workers, device)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Progress of a whole reproduction: runs done / total, per claim, elapsed and time left.

    One line per finished run goes to ``say``; on a terminal a bar shows the totals too. The
    time left is each claim's remaining declared cost at that claim's measured seconds per
    unit of cost (the whole reproduction's rate until one of its runs is done), spread over
    the workers.

    Args:
        totals: runs to execute per claim id.
        say: where the lines go.
        interactive: draw a live bar (a terminal) as well.
        workers: runs that execute at once.
    """

    def __init__(
        self,
        totals: Mapping[str, int],
        say: Callable[[str], None],
        interactive: bool = False,
        workers: int = 1,
    ) -> None:
        self.totals = dict(totals)
        self.done_by: dict[str, int] = dict.fromkeys(totals, 0)
        self.total = sum(totals.values())
        self.count = 0
        self.say = say
        self.workers = max(1, workers)
        self.t0 = time.perf_counter()
        self.cost_left: dict[str, float] = {}
        self.cost_done: dict[str, float] = {}
        self.wall_done: dict[str, float] = {}
        self.bar: Any = None
        if interactive and self.total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, unit="run", file=sys.stderr, leave=False)

    def start(self, specs: Sequence[RunSpec]) -> None:
        for spec in specs:
            self.cost_left[spec.claim] = self.cost_left.get(spec.claim, 0.0) + spec.cost

    def left_s(self) -> float:
        """Estimated seconds until the last run is done."""
        all_cost, all_wall = sum(self.cost_done.values()), sum(self.wall_done.values())
        overall = all_wall / all_cost if all_cost else 0.0
        total = 0.0
        for claim, cost in self.cost_left.items():
            done = self.cost_done.get(claim, 0.0)
            rate = self.wall_done[claim] / done if done else overall
            total += cost * rate
        return total / self.workers

    def skip(self, spec: RunSpec) -> None:
        """A run counted in the totals that will not execute here (another process ran it)."""
        self.total -= 1
        self.totals[spec.claim] = self.totals.get(spec.claim, 0) - 1
        self.cost_left[spec.claim] = self.cost_left.get(spec.claim, 0.0) - spec.cost
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def done(self, spec: RunSpec, result: RunOutcome) -> None:
        self.count += 1
        self.done_by[spec.claim] = self.done_by.get(spec.claim, 0) + 1
        self.cost_left[spec.claim] = self.cost_left.get(spec.claim, 0.0) - spec.cost
        self.cost_done[spec.claim] = self.cost_done.get(spec.claim, 0.0) + spec.cost
        self.wall_done[spec.claim] = self.wall_done.get(spec.claim, 0.0) + result.wall_s
        elapsed = time.perf_counter() - self.t0
        width = len(str(self.total))
        line = (
            f"[{self.count:>{width}}/{self.total}] {spec.name}: {result.status} in "
            f"{result.wall_s:.1f} s · {spec.claim} {self.done_by[spec.claim]}/"
            f"{self.totals.get(spec.claim, 0)} · elapsed {_clock(elapsed)}, "
            f"left ~{_clock(self.left_s())}"
        )
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
            self.bar.update(1)
        else:
            self.say(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
