"""What the training-loop callbacks measure, and how they leave the model untouched.

:func:`skip_scalars` runs :func:`~skiplab.diagnostics.gradient_split` and
:func:`~skiplab.diagnostics.signal_propagation` on one batch and flattens them into scalars
named by qualified module name::

    skiplab/gradient_split/<merge>/shortcut       norm of the shortcut's share of dL/dx
    skiplab/gradient_split/<merge>/branch         norm of the branch's share of dL/dx
    skiplab/gradient_split/<merge>/branch_share   branch / (shortcut + branch), in [0, 1]
    skiplab/signal/<block>/sq_mean|var|branch_var Brock et al.'s per-block statistics

``<merge>`` is the module that owns the residual add (``blocks.3``,
``bert.encoder.layer.0.output``); where one module owns several adds (a GPT-2 block's attention
and MLP residuals), each is named by the branch module it goes around
(``transformer.h.0.attn``, ``transformer.h.0.mlp``), or else ``<owner>[i]`` in forward order.
A value that is missing or not finite is never written: :attr:`SkipScalars.missing` says why.

Measuring changes nothing a training run can see (:func:`preserved`): weights, buffers
(batch-norm running statistics), the parameters' ``.grad``, ``requires_grad``, every module's
train/eval mode and the random number generators (torch, CUDA, Python, NumPy) are as they
were, so a run with a callback is bitwise the run without it.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._inputs import Inputs, LossFn, Task, infer_task, slice_target
from skiplab.diagnostics._probe import modes_of, restore_modes

PREFIX = "skiplab"


@dataclass
class ModelLoss(Task):
    """The model's own loss: ``output.loss`` of a model called with its ``labels`` (a Hugging
    Face model shifts a causal language model's labels itself, so this is the next-token loss
    exactly as the model trains on it)."""

    kind: str = "model-loss"

    def loss(self, output: Any, inputs: Inputs) -> torch.Tensor:
        value = output.get("loss") if hasattr(output, "get") else None
        if value is None and isinstance(output, tuple | list) and output:
            value = output[0]
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ValueError(
                f"the model's output ({type(output).__name__}) holds no scalar loss on inputs "
                f"{inputs.describe()}: pass labels the model takes, or loss_fn=(output, target)"
            )
        return value


@dataclass
class SkipScalars:
    """One measurement: scalars by tag, and why the others are missing.

    Args:
        scalars: tag -> finite value, the tags of the module docstring.
        missing: tag -> why it has no value (a block without a residual branch, no gradient).
        merges: ``<merge>`` name in the tags -> the add it names (node, owner, branch module).
        blocks: the blocks of the signal statistics, in forward order.
    """

    scalars: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    merges: dict[str, str] = field(default_factory=dict)
    blocks: list[str] = field(default_factory=list)

    def text(self) -> str:
        """A Markdown summary: what each merge name is, and every missing value's reason."""
        lines = []
        if self.merges:
            lines += ["| merge | residual add |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in self.merges.items()]
        if self.missing:
            lines += [""] if lines else []
            lines += ["| missing | why |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in self.missing.items()]
        return "\n".join(lines) or "every value was measured"


def _cuda_devices(model: nn.Module) -> list[int]:
    found = {p.device.index for p in model.parameters() if p.device.type == "cuda"}
    found |= {b.device.index for b in model.buffers() if b.device.type == "cuda"}
    return sorted(i if i is not None else torch.cuda.current_device() for i in found)


@contextlib.contextmanager
def preserved(model: nn.Module, seed: int | None = None) -> Iterator[nn.Module]:
    """Run the block and leave ``model`` and the random number generators as they were.

    Args:
        seed: seed the torch generators of the model's devices for the block (any random
            numbers the model draws the same on every call: a reproducible measurement), or None
            to go on from their state.

    Restored: every module's ``training`` flag, every buffer's values (in place, only where
    changed), the parameters' ``.grad`` tensors and ``requires_grad``, the torch CPU and CUDA,
    Python and NumPy random states. Gradients are enabled in the block.

    Raises:
        RuntimeError: a parameter or its ``.grad`` was changed in place in the block (nothing
            this module runs does that; a model whose forward writes its weights would).
    """
    modes = modes_of(model)
    buffers = [(name, b, b.detach().clone()) for name, b in model.named_buffers()]
    params = list(model.named_parameters())
    state = [(p.requires_grad, p._version, p.grad, p.grad._version if p.grad is not None else 0)
             for _, p in params]  # fmt: skip
    py_state = random.getstate()
    np_state = _numpy_state()
    devices = _cuda_devices(model)
    try:
        with (
            torch.random.fork_rng(devices=devices),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            if seed is not None:
                torch.random.default_generator.manual_seed(seed)
                for i in devices:
                    torch.cuda.default_generators[i].manual_seed(seed)
            yield model
    finally:
        random.setstate(py_state)
        if np_state is not None:
            import numpy as np

            np.random.set_state(np_state)
        restore_modes(modes)
        with torch.no_grad():
            for _, b, saved in buffers:
                if not torch.equal(b, saved):
                    b.copy_(saved)
        changed = []
        for (name, p), (requires_grad, version, grad, grad_version) in zip(params, state):
            p.requires_grad_(requires_grad)
            if p._version != version or (grad is not None and grad._version != grad_version):
                changed.append(name)
            p.grad = grad
    if changed:
        raise RuntimeError(
            f"measuring the skips changed parameter(s) {', '.join(changed[:5])} or their .grad "
            "in place: the model's forward pass writes them, so it cannot be measured without "
            "changing the training run"
        )


def _numpy_state() -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return None
    return np.random.get_state()


def _finite(tag: str, value: Any, reason: str, out: SkipScalars) -> None:
    v = float(value) if isinstance(value, int | float) else float("nan")
    if math.isfinite(v):
        out.scalars[tag] = v
    else:
        out.missing[tag] = reason or f"not finite ({v})"


def skip_scalars(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    loss_fn: LossFn | None = None,
    *,
    model_loss: bool = False,
    max_examples: int | None = 32,
    gradient: bool = True,
    signal: bool = True,
    prefix: str = PREFIX,
    seed: int | None = 0,
) -> SkipScalars:
    """The gradient split at every residual add and the signal statistics of every block, on one
    batch at the current weights, as flat scalars (see the module docstring for the tags).

    Batch-norm layers use the batch's statistics (nothing is updated) and dropout is off, as in
    every probe (:func:`~skiplab.diagnostics.batch_statistics`); random numbers the model draws
    otherwise come from generators seeded with ``seed``. The model, its gradients and the random
    generators are left exactly as they were (:func:`preserved`).

    Args:
        model: any ``nn.Module``.
        inputs: one batch, anything :meth:`~skiplab.diagnostics.Inputs.of` takes.
        target, loss_fn: the loss, as :func:`~skiplab.diagnostics.gradient_split` takes them:
            ``loss_fn(primary(output), target)``; inferred when not given (cross-entropy for
            integer labels, the next-token loss for a language model without a target).
        model_loss: the loss is the model's own ``output.loss`` (a Hugging Face model called
            with ``labels`` in ``inputs``); ``target`` and ``loss_fn`` must then be None.
        max_examples: measure on the first examples of a batched input only (None: all).
        gradient, signal: which of the two to measure.
        prefix: the tags' first part.
        seed: the seed of the measurement's random numbers; None: the generators' current
            state (restored afterwards either way).

    Raises:
        ValueError: no loss can be inferred (the message says what to pass), or ``model_loss``
            with a target or a loss function.
    """
    from skiplab.diagnostics.gradflow import gradient_split
    from skiplab.diagnostics.signal import signal_propagation

    if model_loss and (target is not None or loss_fn is not None):
        raise ValueError("model_loss=True takes the loss from the model: give no target/loss_fn")
    ins = Inputs.of(inputs)
    if max_examples is not None and ins.batched and ins.batch_size > max_examples:
        target = slice_target(target, 0, max_examples, ins.batch_size)
        ins = ins.head(max_examples)
    out = SkipScalars()
    with preserved(model, seed):
        if gradient:
            task: Task = (
                ModelLoss()
                if model_loss
                else infer_task(model, ins, target=target, loss_fn=loss_fn)
            )
            split = gradient_split(model, ins, task=task)
            if not split["merges"]:
                out.missing[f"{prefix}/gradient_split"] = (
                    "no residual add found in the model's forward pass"
                )
            names = split["names"]
            rows = zip(names, split["merges"], split["modules"], split["shortcut_grad"],
                       split["branch_grad"])  # fmt: skip
            for name, node, owner, s, b in rows:
                out.merges[name] = f"{node} in {owner or '(root)'}"
                tag = f"{prefix}/gradient_split/{name}"
                _finite(f"{tag}/shortcut", s, "", out)
                _finite(f"{tag}/branch", b, "", out)
                total = s + b
                share = b / total if total > 0 else float("nan")
                _finite(f"{tag}/branch_share", share, "no gradient reached this add", out)
        if signal:
            sig = signal_propagation(model, ins)
            out.blocks = list(sig["blocks"])
            for i, block in enumerate(sig["blocks"]):
                for key in ("sq_mean", "var", "branch_var"):
                    _finite(f"{prefix}/signal/{block}/{key}", sig[key][i], sig["reasons"][i], out)
    return out


class Measuring:
    """What both callbacks keep and do: their settings (validated once) and the one
    :func:`skip_scalars` call that measures with them."""

    def _configure(
        self,
        every_n_steps: int,
        loss_fn: LossFn | None,
        max_examples: int | None,
        gradient: bool,
        signal: bool,
        prefix: str,
    ) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an integer >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.loss_fn = loss_fn
        self.max_examples = max_examples
        self.gradient = gradient
        self.signal = signal
        self.prefix = prefix
        self.last: SkipScalars | None = None

    def _skip_scalars(
        self, model: nn.Module, inputs: Any, target: Any, model_loss: bool
    ) -> SkipScalars:
        return skip_scalars(
            model,
            inputs,
            target,
            self.loss_fn,
            model_loss=model_loss,
            max_examples=self.max_examples,
            gradient=self.gradient,
            signal=self.signal,
            prefix=self.prefix,
        )


class ScalarWriter:
    """Writes :class:`SkipScalars` to a TensorBoard ``SummaryWriter``: every scalar at its
    step, and the text summary (merge names, missing values and why) whenever it says
    something new."""

    def __init__(self, writer: Any, prefix: str = PREFIX) -> None:
        self.writer = writer
        self.prefix = prefix
        self._said: set[tuple[str, str]] = set()

    def write(self, result: SkipScalars, step: int) -> None:
        for tag, value in result.scalars.items():
            self.writer.add_scalar(tag, value, step)
        said = set(result.merges.items()) | set(result.missing.items())
        if not said <= self._said:
            self.writer.add_text(f"{self.prefix}/summary", result.text(), step)
            self._said |= said


def require(module: str, extra: str) -> None:
    """Import ``module`` or raise an ImportError naming the extra that installs it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this skiplab integration needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'skiplab[{extra}]' ({err})"
        ) from err


BatchToInputs = Callable[[Any], tuple[Any, Any]]


def default_batch_to_inputs(batch: Any, takes_labels: bool = False) -> tuple[Any, Any, bool]:
    """``(inputs, target, model_loss)`` from a training batch.

    - a mapping with ``labels`` (a Hugging Face batch): when the model takes ``labels``, the
      whole mapping as keyword inputs and the model's own loss; else the other keys as inputs
      and ``labels`` as the target;
    - any other mapping: keyword inputs, no target;
    - a tuple or list ``(x, y)``: ``x`` the input, ``y`` the target; ``(x, y, ...)`` longer,
      everything but the last the inputs;
    - anything else (a tensor): the inputs, no target.
    """
    if isinstance(batch, Mapping):
        if "labels" in batch:
            if takes_labels:
                return dict(batch), None, True
            return {k: v for k, v in batch.items() if k != "labels"}, batch["labels"], False
        return dict(batch), None, False
    if isinstance(batch, tuple | list) and len(batch) >= 2:
        args = tuple(batch[:-1])
        return (args[0] if len(args) == 1 else args), batch[-1], False
    return batch, None, False


def takes_labels(model: nn.Module) -> bool:
    """The model's ``forward`` has a ``labels`` parameter (Hugging Face models)."""
    import inspect

    try:
        return "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
