"""What a claim is: the article's statement, a declared experiment, and a computed verdict.

A claim module declares its experiment and the runner (:mod:`skiplab.claims._runner`) executes
it, the way PyG's ``MessagePassing.propagate`` owns the loop and a layer fills small hooks:

- **settings**: a frozen dataclass, one field per knob with a reason beside each default, one
  instance per scale in ``Claim.scales``;
- **conditions**: what is compared (variants x depths x lengths ...), frozen dataclasses from
  :meth:`Claim.conditions`; the runner expands them x seeds into runs;
- **measure**: a module-level function ``measure(run, settings, condition, seed)`` doing one run
  through its :class:`~skiplab.claims._runner.Run` handle and returning its numbers;
- **summarize / checks / figures**: the runs become a typed :class:`Summary`, the summary a
  list of :class:`Check` (fed to :meth:`Verdict.from_checks`), tables and figures.

The report is rebuilt from the store alone: the summary is stored with the verdict and the
figures are redrawn from it, and the summary itself is computed from stored runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import torch

from skiplab._page import Figure, Table

if TYPE_CHECKING:
    from skiplab.claims._runner import Runs

SCALES = ("tiny", "quick", "full")
CHECK_KINDS = ("claim", "control", "evidence")

S = TypeVar("S")  # settings: a frozen dataclass
C = TypeVar("C")  # condition: a frozen dataclass
R = TypeVar("R", bound="Summary")  # the claim's typed summary


@dataclass(frozen=True)
class Check:
    """One expectation of a claim, whether it was observed, and the numbers that say so.

    Args:
        name: what was expected, in words ("plain-56 trains worse than plain-20 on MNIST").
        passed: whether the measurement shows it.
        measured: the numbers behind it, shown beside the verdict.
        kind: ``"claim"`` (a failed claim check makes the verdict ``fails``), ``"control"``
            (a positive control: the budget suffices for the easy case; when it fails the
            verdict is ``inconclusive`` whatever else was measured, and the budget is the
            reason) or ``"evidence"`` (enough evidence to decide, e.g. an interval that
            excludes 0; when it fails the verdict is ``inconclusive``).
    """

    name: str
    passed: bool
    measured: str = ""
    kind: str = "claim"

    def __post_init__(self) -> None:
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"check kind must be one of {CHECK_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "passed", bool(self.passed))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{self.name} ({self.measured})" if self.measured else self.name


@dataclass(frozen=True)
class Comparison:
    """A measurement set beside what the literature reports.

    Args:
        source: the citation, e.g. ``"Kipf & Welling 2017, Table 2"``.
        published: what it reports (``"81.5% test accuracy on Cora, 2-layer GCN"``).
        measured: what this run measured of the same thing.
        agrees: whether the measurement agrees (``None``: not comparable, e.g. another
            dataset or budget; the texts then say how they differ).
    """

    source: str
    published: str
    measured: str
    agrees: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Verdict:
    """``holds``, ``fails`` or ``inconclusive`` and the measured reason."""

    status: str
    reason: str

    def __post_init__(self) -> None:
        if self.status not in ("holds", "fails", "inconclusive"):
            raise ValueError(f"verdict must be holds, fails or inconclusive; got {self.status!r}")

    @classmethod
    def from_checks(cls, checks: Sequence[Check], detail: str = "") -> Verdict:
        """The verdict of a list of checks.

        A failed positive control makes it ``inconclusive`` (the budget cannot decide);
        otherwise a failed claim check makes it ``fails``, a failed evidence check
        ``inconclusive``; ``holds`` when every check passed. The reason names what was not
        observed, with its numbers, then ``detail``.

        Args:
            checks: the claim's checks.
            detail: the measured numbers behind the checks, appended to the reason.
        """
        items = list(checks)
        tail = f" {detail}" if detail else ""
        controls = [c for c in items if c.kind == "control" and not c.passed]
        if controls:
            missing = "; ".join(map(str, controls))
            return cls(
                "inconclusive",
                f"the positive control failed, so the budget cannot decide: {missing}.{tail}",
            )
        failed = [c for c in items if not c.passed]
        if not failed:
            return cls("holds", detail or "every check passed")
        status = "fails" if any(c.kind == "claim" for c in failed) else "inconclusive"
        return cls(status, f"not observed: {'; '.join(map(str, failed))}.{tail}")


class Summary:
    """Base of a claim's typed summary: subclass it as a ``@dataclass``.

    Fields hold what the checks, tables and figures need (numbers, lists, dicts, nested
    dataclasses); :meth:`to_json` / :meth:`from_json` store it with the verdict so that the
    report redraws figures without re-running anything.
    """

    def to_json(self) -> dict[str, Any]:
        encoded = _encode(self)
        assert isinstance(encoded, dict)
        return encoded

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        return typing.cast(R, _decode(cls, data))

    def numbers(self) -> dict[str, float]:
        """The summary's top-level numbers (``int``/``float`` fields), for ``claims.json``."""
        out: dict[str, float] = {}
        for f in dataclasses.fields(typing.cast(Any, self)):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f.name] = float(value)
        return out


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return value.item()
    return value


def _decode(tp: Any, value: Any) -> Any:
    """``value`` (decoded JSON) as type ``tp``: dataclasses, lists, tuples, dicts, unions."""
    if tp is Any or value is None:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(tp, value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise TypeError(f"cannot read {value!r} as {tp}")
        hints = typing.get_type_hints(tp)
        kwargs = {  # a field missing from older JSON takes its default (or fails: KeyError)
            f.name: _decode(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.name in value or not _has_default(f)
        }
        return typing.cast(Any, tp)(**kwargs)
    if origin is not None:
        return _decode_container(origin, typing.get_args(tp), value)
    return _decode_scalar(tp, value)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _decode_union(tp: Any, value: Any) -> Any:
    for arg in typing.get_args(tp):
        if arg is type(None):
            continue
        try:
            return _decode(arg, value)
        except (TypeError, ValueError, KeyError):
            continue
    raise TypeError(f"cannot read {value!r} as {tp}")


def _decode_container(origin: Any, args: tuple[Any, ...], value: Any) -> Any:
    if origin in (list, Sequence):
        return [_decode(args[0] if args else Any, v) for v in value]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value)) if args else tuple(value)
    if origin in (dict, Mapping):
        key_tp, val_tp = args if args else (Any, Any)
        return {_decode(key_tp, k): _decode(val_tp, v) for k, v in value.items()}
    return value


def _decode_scalar(tp: Any, value: Any) -> Any:
    if tp is float:
        return float(value)
    if tp is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not an integer")
        return int(value)
    if tp is str and not isinstance(value, str):
        raise TypeError(f"cannot read {value!r} as str")
    return value


@dataclass
class Evidence:
    """What an experiment measured, as stored with its verdict.

    Args:
        numbers: the key figures, flat ``name -> number`` (they go to ``claims.json``).
        tables: tables for the report.
        notes: caveats printed beside the verdict (e.g. what quick scale cannot show).
        checks: the claim's checks, as dictionaries (name, passed, measured, kind).
        literature: the measurement beside published results (:class:`Comparison` dicts).
        summary: the claim's :class:`Summary` as JSON (the figures are drawn from it).
        settings: the settings the runs used.
        seeds: seeds the numbers rest on.
        run_ids: store ids of the runs behind them.
        cpu_s: CPU seconds of those runs (their compute, whatever else shared the cores).
    """

    numbers: dict[str, float] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    literature: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    cpu_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "numbers": self.numbers,
            "tables": [t.as_dict() for t in self.tables],
            "notes": self.notes,
            "checks": self.checks,
            "literature": self.literature,
            "summary": self.summary,
            "settings": self.settings,
            "seeds": self.seeds,
            "run_ids": self.run_ids,
            "cpu_s": self.cpu_s,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        return cls(
            numbers=dict(d.get("numbers", {})),
            tables=[Table(**t) for t in d.get("tables", [])],
            notes=list(d.get("notes", [])),
            checks=list(d.get("checks", [])),
            literature=list(d.get("literature", [])),
            summary=dict(d.get("summary", {})),
            settings=dict(d.get("settings", {})),
            seeds=list(d.get("seeds", [])),
            run_ids=list(d.get("run_ids", [])),
            cpu_s=float(d.get("cpu_s", 0.0)),
        )


class Claim(ABC, Generic[S, C, R]):
    """One measurable statement about skip connections, as a declared experiment.

    Subclass it as ``Claim[Settings, Condition, Result]`` and fill the hooks; the runner owns
    seeds x conditions, recording, device placement and caching.

    Class attributes:
        id: stable ID, e.g. ``"C01"``; slug: e.g. ``"residual-toy"``.
        title: a short title; statement: what the article says.
        method: how skiplab measures it; criterion: the decision rule, in words.
        math: derivations shown in the report (plain text).
        references: papers, as short citations.
        version: part of every run's identity; bump it when ``measure`` changes meaning, so
            stored runs of the old code are not reused.
        scales: the settings of each scale (``tiny``, ``quick``, ``full``).
        default_seeds: seeds per scale when the user does not say.
        measure: the module-level ``measure(run, settings, condition, seed) -> numbers``.
    """

    id: ClassVar[str]
    slug: ClassVar[str]
    title: ClassVar[str]
    statement: ClassVar[str]
    method: ClassVar[str]
    criterion: ClassVar[str]
    math: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[int] = 1
    scales: ClassVar[Mapping[str, Any]]
    default_seeds: ClassVar[dict[str, int]] = {"tiny": 1, "quick": 3, "full": 5}
    measure: ClassVar[Any]  # staticmethod(measure): (Run, S, C, int) -> Mapping[str, Any]

    # -- the experiment ----------------------------------------------------------------
    def settings(self, scale: str) -> S:
        """The settings at ``scale``."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        return typing.cast(S, self.scales[scale])

    def with_data(self, s: S, path: Path) -> S:
        """The settings for the user's own dataset file (``reproduce --data-path``).

        A claim that can run on other data returns settings naming the file (and its
        checksum, so another file is another experiment); the default refuses.
        """
        raise ValueError(f"{self.id} {self.slug} takes no --data-path (its data is fixed)")

    @abstractmethod
    def conditions(self, s: S) -> Sequence[C]:
        """What is compared: every condition is run once per seed."""

    def plan(self, s: S, seeds: Sequence[int]) -> list[tuple[C, int]]:
        """The runs, ``(condition, seed)`` pairs; default every condition x every seed."""
        return [(c, seed) for c in self.conditions(s) for seed in seeds]

    def label(self, c: C) -> str:
        """A condition in run names and progress lines (default: its field values)."""
        return " ".join(str(v) for v in _plain(c).values())

    def cost(self, s: S, c: C) -> float:
        """Relative cost of one run, to dispatch the longest first (default 1)."""
        return 1.0

    # -- the verdict -------------------------------------------------------------------
    @abstractmethod
    def summarize(self, s: S, runs: Runs[C]) -> R:
        """Turn the runs into the claim's typed summary."""

    @abstractmethod
    def checks(self, r: R) -> Sequence[Check]:
        """The expectations, observed or not (fed to :meth:`Verdict.from_checks`)."""

    def detail(self, r: R) -> str:
        """The key measured numbers in a sentence, appended to the verdict's reason."""
        return ""

    def decide(self, r: R) -> Verdict:
        """The verdict of the summary: its checks and detail through ``Verdict.from_checks``."""
        return Verdict.from_checks(self.checks(r), self.detail(r))

    def numbers(self, r: R) -> dict[str, float]:
        """Key numbers for ``claims.json`` (default: the summary's top-level numbers)."""
        return r.numbers()

    def tables(self, r: R) -> list[Table]:
        return []

    def notes(self, r: R) -> list[str]:
        return []

    def literature(self, r: R) -> list[Comparison]:
        """What published work measured, beside this measurement (the report shows it,
        including where the measurement disagrees with the article or the papers)."""
        return []

    def figures(self, r: R, outdir: Path) -> list[Figure]:
        """Draw the summary into ``outdir`` (PNG); paths are returned relative to it."""
        return []

    # -- the report --------------------------------------------------------------------
    @classmethod
    def summary_type(cls) -> type[R]:
        """The summary dataclass, read from ``Claim[S, C, R]`` in the class's bases."""
        for klass in cls.__mro__:
            for base in getattr(klass, "__orig_bases__", ()):
                if typing.get_origin(base) is Claim:
                    return typing.cast(type[R], typing.get_args(base)[2])
        raise TypeError(f"{cls.__name__} must subclass Claim[Settings, Condition, Summary]")

    def report_figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        """Redraw the figures of a stored verdict (the summary is read back from JSON)."""
        return self.figures(self.summary_type().from_json(evidence.summary), outdir)

    def command(self, scale: str) -> str:
        """The exact command that re-runs this claim."""
        return f"skiplab reproduce --claims {self.id} --scale {scale} --force"


def _plain(value: Any) -> dict[str, Any]:
    """A condition or settings object as a plain dictionary."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"conditions and settings must be dataclasses, got {type(value).__name__}")


def finite_mean(values: Sequence[float]) -> float:
    """Mean of ``values``, NaN when any is NaN (a diverged run) or there are none."""
    xs = [float(v) for v in values]
    return sum(xs) / len(xs) if xs and all(math.isfinite(x) for x in xs) else math.nan


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, then restore the previous count.

    Claims that step small cells one time step at a time gain nothing from a thread pool on
    (64, 64) matmuls, and on a shared CPU its spin-waits made a tiny seq2seq run 30x slower
    (33 s vs 1 s measured with 8 busy processes on 2 cores).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


AnyClaim = Claim[Any, Any, Any]
_CLAIMS: dict[str, type[AnyClaim]] = {}
K = TypeVar("K", bound=type[AnyClaim])


def register_claim(cls: K) -> K:
    """Add a claim class to the catalogue (IDs and slugs must be unique)."""
    for other in _CLAIMS.values():
        if other.slug == cls.slug and other.id != cls.id:
            raise ValueError(f"claim slug {cls.slug!r} used by both {other.id} and {cls.id}")
    if cls.id in _CLAIMS and _CLAIMS[cls.id] is not cls:
        raise ValueError(f"claim id {cls.id} registered twice")
    _CLAIMS[cls.id] = cls
    return cls


def catalogue() -> dict[str, type[AnyClaim]]:
    """Every registered claim class by id, in id order."""
    return dict(sorted(_CLAIMS.items()))


def select_claims(spec: str | Sequence[str] = "all") -> list[AnyClaim]:
    """Claims named by ``"all"``, IDs (``"C01,C09"``, case-insensitive) or slugs.

    Raises:
        ValueError: an unknown name; the message lists the known IDs and slugs.
    """
    known = catalogue()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError("no claims selected; use 'all' or IDs such as C01,C09")
    if any(n.lower() == "all" for n in names):
        return [cls() for cls in known.values()]
    by_slug = {cls.slug: cls for cls in known.values()}
    chosen: list[AnyClaim] = []
    for name in names:
        cls = known.get(name.upper()) or by_slug.get(name.lower())
        if cls is None:
            listing = ", ".join(f"{c.id} ({c.slug})" for c in known.values())
            raise ValueError(f"unknown claim {name!r}; known claims: {listing}")
        if all(type(c) is not cls for c in chosen):
            chosen.append(cls())
    return chosen
