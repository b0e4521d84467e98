"""``skiplab.diagnose(model, example_inputs)``: every probe on any model, from Python, in one call.

No store, no dataset object: the model as it is (at init or trained), one example batch of its
real inputs, and a target or a loss where the output alone does not say what to score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, LossFn, infer_task
from skiplab.diagnostics._probe import eval_mode, find_blocks
from skiplab.diagnostics.lesion import LesionResult
from skiplab.diagnostics.probes import Context, get_probe, parse_probes, run_probes
from skiplab.diagnostics.skips import SkipReport, find_skips


@dataclass
class Diagnosis:
    """What :func:`diagnose` measured.

    Args:
        model: the model's class name; ``inputs``: the shapes it was called with; ``params``:
            its number of parameters; ``task``: the loss the gradient probes and the lesion
            study used (``"classification"``, ``"next-token"``, ``"custom"``), or "" when none
            could be inferred.
        blocks: the blocks by qualified module name (the modules owning the merges found).
        results: probe name -> its result (``diagnosis["jacobian"]``); the usual ones also as
            attributes: :attr:`skips`, :attr:`signal`, :attr:`gradient_split`, :attr:`jacobian`,
            :attr:`paths`, :attr:`landscape`, :attr:`lesion`.
        errors: probe -> the reason it has no result (a named refusal or the error it raised).
        wall_s: probe -> seconds it took.
        training: what ``train`` returned, when :func:`diagnose` was given one.
        page: the HTML page, when :func:`diagnose` was given ``out``.
    """

    model: str
    inputs: str
    params: int = 0
    task: str = ""
    blocks: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    training: Any = None
    page: Path | None = None

    def __getitem__(self, probe: str) -> Any:
        if probe in self.results:
            return self.results[probe]
        why = self.errors.get(probe)
        ran = ", ".join(self.results) or "none"
        raise KeyError(
            f"probe {probe!r} has no result" + (f": {why}" if why else f" (results: {ran})")
        )

    @property
    def skips(self) -> SkipReport | None:
        """The merges found (:class:`~skiplab.diagnostics.SkipReport`)."""
        return self.results.get("skips")

    @property
    def signal(self) -> dict[str, Any] | None:
        """:func:`~skiplab.diagnostics.signal_propagation`'s statistics per block."""
        return self.results.get("signal")

    @property
    def gradient_split(self) -> dict[str, Any] | None:
        """:func:`~skiplab.diagnostics.gradient_split`'s shortcut/branch norms per merge, with
        ``groups`` and ``grad_norm``: each block's parameter-gradient norm."""
        return self.results.get("gradflow")

    @property
    def jacobian(self) -> dict[str, Any] | None:
        """:func:`~skiplab.diagnostics.block_spectral_norms`'s per-block values."""
        return self.results.get("jacobian")

    @property
    def paths(self) -> dict[str, Any] | None:
        """Path counts by length (graph, block chain) and gradient by path length."""
        return self.results.get("paths")

    @property
    def landscape(self) -> dict[str, Any] | None:
        """The loss along a line and on a plane around the weights."""
        return self.results.get("landscape")

    @property
    def lesion(self) -> LesionResult | None:
        """:func:`~skiplab.diagnostics.lesion_study`'s scores after deletions."""
        return self.results.get("lesion")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able numbers, one key per probe (what ``skiplab diagnose`` stores)."""
        out: dict[str, Any] = {
            "model": self.model,
            "inputs": self.inputs,
            "params": self.params,
            "task": self.task,
            "blocks": self.blocks,
        }
        for name, value in self.results.items():
            out[name] = get_probe(name).to_json(value)
        if self.training is not None:
            out["training"] = self.training
        out["errors"] = dict(self.errors)
        out["wall_s"] = dict(self.wall_s)
        return out

    def __repr__(self) -> str:
        counts = self.skips.as_dict()["counts"] if self.skips is not None else {}
        found = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no skips"
        failed = f", {len(self.errors)} probe(s) without a result" if self.errors else ""
        return f"Diagnosis({self.model}: {found}, {len(self.blocks)} blocks{failed})"


def diagnose(
    model: nn.Module,
    example_inputs: Any,
    *,
    loss_fn: LossFn | None = None,
    target: Any = None,
    probes: str | Sequence[str] = "default",
    out: str | Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
    eval_inputs: Any = None,
    eval_target: Any = None,
    train: Callable[[nn.Module], Any] | None = None,
) -> Diagnosis:
    """Run the probes on ``model`` with its real inputs; nothing is stored.

    Args:
        model: any ``nn.Module`` (``transformers`` and PyG models included). Every probe leaves
            its weights and buffers as they were.
        example_inputs: one batch: a tensor, a tuple of positional arguments, a mapping of
            keyword arguments (a tokenizer's output) or :class:`~skiplab.diagnostics.Inputs`.
        loss_fn: ``loss_fn(output, target) -> loss``, with ``output`` the model's logits (or
            its main tensor: :func:`~skiplab.diagnostics.primary`); inferred when not given:
            cross-entropy for class, token or node logits with integer ``target`` labels, the
            next-token loss for a language model's ``(B, T, V)`` logits with no target.
        target: labels for ``loss_fn`` (one per example, token or node).
        probes: ``"default"`` (every probe but the costly loss landscape), ``"all"``, or names
            from :func:`~skiplab.diagnostics.probes.probe_names`.
        out: a folder for the HTML page (``out/index.html`` and ``out/figures``).
        eval_inputs, eval_target: held-out data the lesion study scores on (default: the
            example inputs and target).
        train: ``train(model)`` trains the model in place between the probes that describe it
            as built and those that need it trained (the landscape and the lesion study); the
            gradient-flow probe records every training step meanwhile. What it returns is kept
            in :attr:`Diagnosis.training`.

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
    held_out = Inputs.of(eval_inputs) if eval_inputs is not None else inputs
    task = eval_task = None
    try:
        task = infer_task(model, inputs, target=target, loss_fn=loss_fn, output=output)
        eval_task = task
        if eval_inputs is not None:
            with eval_mode(model):
                eval_task = infer_task(model, held_out, target=eval_target, loss_fn=loss_fn)
        result.task = task.kind
    except ValueError as err:
        for name in names:
            if get_probe(name).needs_task:
                result.errors[name] = f"no loss: {err}"
    # two examples: this recording keeps every value (the merges' norms); on a large batch it
    # alone would hold all activations (a ResNet-50 at 16 x 224 px: 2.6 GB before any probe)
    head = inputs.head(2)
    report = find_skips(model, head.args, kwargs=head.kwargs)
    blocks = find_blocks(model, merges=report.merges)
    result.blocks = [n for n, _ in blocks]
    ctx = Context(model, inputs, task, report, blocks, held_out, eval_task)
    first = [n for n in names if train is None or not get_probe(n).trained]
    run_probes(ctx, first, result.results, result.errors, result.wall_s, log)
    if train is not None:
        result.training = _train(ctx, train, result, log)
        later = [n for n in names if n not in first]
        run_probes(ctx, later, result.results, result.errors, result.wall_s, log)
    if out is not None:
        from skiplab.report.diagnose import write_diagnosis

        result.page = write_diagnosis(result, Path(out))
    return result


def _train(
    ctx: Context, train: Callable[[nn.Module], Any], result: Diagnosis, log: Callable[[str], None]
) -> Any:
    """``train(model)`` with the probes' watchers attached; their records join the results."""
    watchers = {}
    for name in list(result.results):
        watcher = get_probe(name).watch(ctx)
        if watcher is not None:
            watchers[name] = watcher
    log("diagnose: training")
    with ExitStack() as stack:
        for watcher in watchers.values():
            stack.enter_context(watcher.attached(ctx.model))
        trained = train(ctx.model)
        records = {name: w.collect() for name, w in watchers.items()}
    for name, record in records.items():
        result.results[name] = get_probe(name).add_training(result.results[name], record)
    return trained
