"""``skiplab.diagnose(model, example_inputs)``: every probe on any model, from Python, in one call.

No store, no dataset object: the model as it is (at init or trained), one example batch of its
real inputs, and a target or a loss where the output alone does not say what to score.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, LossFn, Task, infer_task
from skiplab.diagnostics._probe import eval_mode, find_blocks
from skiplab.diagnostics.skips import SkipReport, find_skips

#: What :func:`diagnose` runs, in this order (``skiplab diagnose`` adds paths and the landscape).
PROBES = ("skips", "signal", "gradflow", "jacobian", "lesion")
#: Probes that need a loss (a target, a language model's own ids, or ``loss_fn``).
NEEDS_TASK = frozenset({"gradflow", "lesion"})


@dataclass
class Diagnosis:
    """What :func:`diagnose` measured.

    Args:
        model: the model's class name; ``inputs``: the shapes it was called with; ``params``:
            its number of parameters; ``task``: the
            loss the gradient probes and the lesion study used (``"classification"``,
            ``"next-token"``, ``"custom"``), or "" when none could be inferred.
        blocks: the blocks by qualified module name (the modules owning the merges found).
        skips: the merges found (:class:`~skiplab.diagnostics.SkipReport`).
        signal: :func:`~skiplab.diagnostics.signal_propagation`'s statistics per block.
        gradient_split: :func:`~skiplab.diagnostics.gradient_split`'s shortcut/branch norms.
        jacobian: :func:`~skiplab.diagnostics.block_spectral_norms`'s per-block values.
        lesion: :func:`~skiplab.diagnostics.lesion_study`'s scores after deletions.
        errors: probe -> the reason it has no result (a named refusal or the error it raised).
        wall_s: probe -> seconds it took.
        page: the HTML page, when :func:`diagnose` was given ``out``.
    """

    model: str
    inputs: str
    params: int = 0
    task: str = ""
    blocks: list[str] = field(default_factory=list)
    skips: SkipReport | None = None
    signal: dict[str, Any] | None = None
    gradient_split: dict[str, Any] | None = None
    jacobian: dict[str, Any] | None = None
    lesion: Any = None
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    page: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able numbers (what ``skiplab diagnose`` stores)."""
        return {
            "model": self.model,
            "inputs": self.inputs,
            "params": self.params,
            "task": self.task,
            "blocks": self.blocks,
            "skips": self.skips.as_dict() if self.skips is not None else None,
            "signal": self.signal,
            "gradient_split": self.gradient_split,
            "jacobian": self.jacobian,
            "lesion": self.lesion.as_dict() if self.lesion is not None else None,
            "errors": dict(self.errors),
            "wall_s": dict(self.wall_s),
        }

    def __repr__(self) -> str:
        counts = self.skips.as_dict()["counts"] if self.skips is not None else {}
        found = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no skips"
        failed = f", {len(self.errors)} probe(s) without a result" if self.errors else ""
        return f"Diagnosis({self.model}: {found}, {len(self.blocks)} blocks{failed})"


def parse_probes(probes: str | Sequence[str]) -> list[str]:
    names = [probes] if isinstance(probes, str) else list(probes)
    names = [n.strip().lower() for n in names if n.strip()]
    if names == ["all"]:
        return list(PROBES)
    bad = [n for n in names if n not in PROBES]
    if bad or not names:
        raise ValueError(
            f"unknown probe(s) {', '.join(bad) or '(none given)'}; allowed: all, "
            f"{', '.join(PROBES)}"
        )
    return [p for p in PROBES if p in names]


def diagnose(
    model: nn.Module,
    example_inputs: Any,
    *,
    loss_fn: LossFn | None = None,
    target: Any = None,
    probes: str | Sequence[str] = "all",
    out: str | Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Diagnosis:
    """Run the probes on ``model`` with its real inputs; nothing is trained or stored.

    Args:
        model: any ``nn.Module`` (``transformers`` and PyG models included), left as it was.
        example_inputs: one batch: a tensor, a tuple of positional arguments, a mapping of
            keyword arguments (a tokenizer's output) or :class:`~skiplab.diagnostics.Inputs`.
        loss_fn: ``loss_fn(output, target) -> loss``, with ``output`` the model's logits (or
            its main tensor: :func:`~skiplab.diagnostics.primary`); inferred when not given:
            cross-entropy for class, token or node logits with integer ``target`` labels, the
            next-token loss for a language model's ``(B, T, V)`` logits with no target.
        target: labels for ``loss_fn`` (one per example, token or node).
        probes: ``"all"`` or names from :data:`PROBES`.
        out: a folder for the HTML page (``out/index.html`` and ``out/figures``).

    Returns:
        a :class:`Diagnosis`. A probe that cannot run says why in ``errors`` (no loss for the
        gradient probes, a model error) and the others still run.

    Raises:
        ValueError: an unknown probe, or the model does not run on ``example_inputs`` (the
            message names the input shapes).
    """
    names = parse_probes(probes)
    inputs = Inputs.of(example_inputs)
    try:
        with torch.no_grad(), eval_mode(model):
            output = inputs(model)
    except Exception as err:
        raise ValueError(
            f"{type(model).__name__} does not run on inputs {inputs.describe()} "
            f"({type(err).__name__}: {err})"
        ) from err
    result = Diagnosis(
        type(model).__name__, inputs.describe(), sum(p.numel() for p in model.parameters())
    )
    task: Task | None = None
    try:
        task = infer_task(model, inputs, target=target, loss_fn=loss_fn, output=output)
        result.task = task.kind
    except ValueError as err:
        for name in NEEDS_TASK & set(names):
            result.errors[name] = f"no loss: {err}"
    report = find_skips(model, inputs.head(8).args, kwargs=inputs.head(8).kwargs)
    result.blocks = [n for n, _ in find_blocks(model, merges=report.merges)]
    if "skips" in names:
        result.skips = report
    _run_probes(model, inputs, task, names, result, log)
    if out is not None:
        from skiplab.report.diagnose import write_diagnosis

        result.page = write_diagnosis(result, Path(out))
    return result


def _run_probes(
    model: nn.Module,
    inputs: Inputs,
    task: Task | None,
    names: list[str],
    result: Diagnosis,
    log: Callable[[str], None],
) -> None:
    from skiplab.diagnostics.gradflow import gradient_split
    from skiplab.diagnostics.jacobian import block_spectral_norms
    from skiplab.diagnostics.lesion import lesion_study
    from skiplab.diagnostics.signal import signal_propagation

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def lesion() -> Any:
        assert task is not None
        n = len(result.blocks)
        ks = sorted({k for k in (1, 2, n // 4, n // 2) if k >= 1})
        return lesion_study(model, inputs, task.target, task=task, ks=ks, draws=4)

    def split() -> Any:
        assert task is not None
        if not inputs.batched:
            return gradient_split(model, inputs, task=task)
        b = min(32, inputs.batch_size)
        return gradient_split(model, inputs.head(b), task=task.slice(0, b, inputs.batch_size))

    probes: dict[str, tuple[str, Callable[[], Any]]] = {
        "signal": ("signal", lambda: signal_propagation(model, inputs.head(64))),
        "gradflow": ("gradient_split", split),
        "jacobian": ("jacobian", lambda: block_spectral_norms(model, inputs)),
        "lesion": ("lesion", lesion),
    }
    for name, (attr, fn) in probes.items():
        if name not in names or name in result.errors:
            continue
        log(f"diagnose: {name}")
        t0 = time.perf_counter()
        try:
            setattr(result, attr, fn())
        except Exception as err:  # one failing probe must not hide the others
            result.errors[name] = f"{type(err).__name__}: {err}"
        finally:
            model.load_state_dict(state)  # no probe leaves the weights or buffers changed
        result.wall_s[name] = time.perf_counter() - t0
