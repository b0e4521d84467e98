"""What a diagnostic probe is: a measurement on one model and the page section that shows it.

A probe module declares one :class:`Probe` subclass and registers it with
:func:`register_probe`; :func:`skiplab.diagnose` and ``skiplab diagnose`` run the registered
probes in their ``order`` and assemble the page from their sections, so adding a probe is one
new file in this package.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from skiplab._page import Figure, Table
from skiplab.diagnostics._inputs import Inputs, Task
from skiplab.diagnostics._probe import AbstractProbe
from skiplab.diagnostics.skips import SkipReport


@dataclass
class Context:
    """What a probe measures on.

    Args:
        model: the model, with the weights it has at this stage (at init, or trained).
        inputs: one batch of its real inputs.
        task: the loss and score on ``inputs`` (None when none could be inferred: probes with
            ``needs_task`` are then refused with the reason).
        report: the merges found on ``inputs`` (:func:`~skiplab.diagnostics.find_skips`).
        blocks: the blocks, by qualified module name, and the modules.
        eval_inputs, eval_task: where the lesion study scores (held-out data when there is
            some, else ``inputs`` and ``task``).
    """

    model: nn.Module
    inputs: Inputs
    task: Task | None
    report: SkipReport
    blocks: list[tuple[str, nn.Module]]
    eval_inputs: Inputs
    eval_task: Task | None

    def head(self, n: int) -> tuple[Inputs, Task]:
        """The batch's first ``n`` examples and their task (a graph, not batched: whole), for
        probes whose autograd graphs make the whole batch too costly."""
        if self.task is None:
            raise ValueError("no loss to measure with: pass target= or loss_fn=")
        ins = self.inputs
        if not ins.batched or ins.batch_size <= n:
            return ins, self.task
        return ins.head(n), self.task.slice(0, n, ins.batch_size)


@dataclass
class Section:
    """A probe's part of the page: its figures, tables, notes, and the error when it failed."""

    key: str
    title: str
    about: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0

    def figure(self, figdir: Path, fig: Any, name: str, caption: str) -> None:
        """Save matplotlib ``fig`` as ``figdir/name`` and show it with ``caption``."""
        from skiplab import _plot

        _plot.save(fig, figdir / name)
        self.figures.append(Figure(f"{figdir.name}/{name}", caption))


class Probe(ABC):
    """One diagnostic: ``measure`` on a :class:`Context`, ``page`` to show the result.

    Class attributes:
        name: what ``probes=`` and ``--probes`` call it.
        title, about: the page section's heading and its one-paragraph method statement.
        order: where it runs and appears (lower first).
        needs_task: it needs a loss (refused, with the reason, when none can be inferred).
        trained: ``skiplab diagnose --epochs N`` measures it after training (loss landscape,
            lesions); the others describe the model as built.
        default: part of :func:`skiplab.diagnose`'s default set (costly probes are not).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    about: ClassVar[str]
    order: ClassVar[int]
    needs_task: ClassVar[bool] = False
    trained: ClassVar[bool] = False
    default: ClassVar[bool] = True

    @abstractmethod
    def measure(self, ctx: Context) -> Any:
        """The probe's numbers (JSON-able, or an object with ``as_dict()``)."""

    @abstractmethod
    def page(self, sec: Section, result: Any, figdir: Path) -> None:
        """Fill ``sec`` from ``result``: figures saved under ``figdir``, tables and notes. A
        plot that would be empty is replaced by a note saying why."""

    def to_json(self, result: Any) -> Any:
        """What is stored: ``result.as_dict()`` when it has one, else ``result``."""
        as_dict = getattr(result, "as_dict", None)
        return as_dict() if callable(as_dict) else result

    def watch(self, ctx: Context) -> AbstractProbe | None:
        """A hook-based probe to attach while ``skiplab diagnose`` trains (None: nothing)."""
        return None

    def add_training(self, result: Any, record: dict[str, Any]) -> Any:
        """``result`` with what :meth:`watch`'s probe recorded during training."""
        return result


_REGISTRY: dict[str, Probe] = {}


def register_probe(cls: type[Probe]) -> type[Probe]:
    """Class decorator: add a probe to the registry (its ``name`` must be new)."""
    if cls.name in _REGISTRY:
        raise ValueError(f"probe {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def registered() -> list[Probe]:
    """Every registered probe, in ``order``."""
    return sorted(_REGISTRY.values(), key=lambda p: p.order)


def probe_names() -> tuple[str, ...]:
    return tuple(p.name for p in registered())


def get_probe(name: str) -> Probe:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown probe {name!r}; allowed: {', '.join(probe_names())}") from None


def parse_probes(spec: str | Sequence[str] | None, default: str = "all") -> list[str]:
    """Probe names from ``"all"``, ``"default"``, a comma list or a sequence, in run order.

    ``None`` means ``default``. Unknown names raise ``ValueError`` listing the allowed ones.
    """
    if spec is None:
        spec = default
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    if names == ["all"]:
        return list(probe_names())
    if names == ["default"]:
        return [p.name for p in registered() if p.default]
    bad = [n for n in names if n not in _REGISTRY]
    if bad or not names:
        raise ValueError(
            f"unknown probe(s) {', '.join(bad) or '(none given)'}; allowed: all, default, "
            f"{', '.join(probe_names())}"
        )
    return [n for n in probe_names() if n in names]


def run_probes(
    ctx: Context,
    names: Sequence[str],
    results: dict[str, Any],
    errors: dict[str, str],
    wall_s: dict[str, float],
    log: Callable[[str], None] = lambda _m: None,
) -> None:
    """Measure each of ``names`` on ``ctx`` into ``results``; a failing probe's error goes to
    ``errors`` (the others still run) and no probe leaves the weights or buffers changed."""
    state = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
    for name in names:
        probe = get_probe(name)
        if name in errors:
            continue
        if probe.needs_task and (ctx.task is None or ctx.eval_task is None):
            errors[name] = "no loss: pass target= or loss_fn="
            continue
        log(f"diagnose: {name}")
        t0 = time.perf_counter()
        try:
            results[name] = probe.measure(ctx)
        except Exception as err:  # one failing probe must not hide the others
            errors[name] = f"{type(err).__name__}: {err}"
        finally:
            ctx.model.load_state_dict(state)
            ctx.model.zero_grad(set_to_none=True)
        wall_s[name] = time.perf_counter() - t0


def sections(
    results: dict[str, Any],
    errors: dict[str, str],
    wall_s: dict[str, float],
    figdir: Path,
) -> list[Section]:
    """One page section per probe that ran (or was refused), in the registry's order."""
    out = []
    for probe in registered():
        if probe.name not in results and probe.name not in errors:
            continue
        sec = Section(probe.name, probe.title, probe.about, wall_s=wall_s.get(probe.name, 0.0))
        if probe.name in results:
            try:
                probe.page(sec, results[probe.name], figdir)
            except Exception as err:  # a figure that cannot be drawn must not lose the page
                sec.error = f"drawing the section failed: {type(err).__name__}: {err}"
        if probe.name in errors:
            sec.error = errors[probe.name]
        out.append(sec)
    return out


def name_ticks(ax: Any, names: Sequence[str], limit: int = 40) -> None:
    """Label the x axis with module names (every k-th one when there are many)."""
    import math

    step = max(1, math.ceil(len(names) / limit))
    ax.set_xticks(range(0, len(names), step))
    ax.set_xticklabels(list(names)[::step], rotation=60, ha="right", fontsize=7)
