"""A model's real inputs and what to measure its output against.

Every probe calls the model the way its user does: ``model(*args, **kwargs)`` with the
positional and keyword arguments of one real call (:class:`Inputs`), and reads the tensor that
matters from whatever comes back (:func:`primary`: a tensor, a tuple, a ``ModelOutput``'s
``logits`` or ``last_hidden_state``). The loss and the score a probe needs come from a
:class:`Task`: given by the user, or inferred from the output (class logits, language-model
logits, node classification).

Inputs are *batched* when every tensor in them has the batch size as its first dimension (or 1,
broadcast): images, token ids and their attention mask. They can then be split into examples.
A graph's ``(x, edge_index)`` is not batched (``edge_index`` is ``(2, E)``): probes take it
whole, never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skiplab.diagnostics._record import _tensors

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]


def _map(obj: Any, fn: Callable[[torch.Tensor], Any], memo: dict[int, Any] | None = None) -> Any:
    """``obj`` with ``fn`` applied to every tensor in it; a tensor that appears twice (a causal
    LM's ``labels`` that are its ``input_ids``) is mapped once, so it stays one tensor."""
    memo = {} if memo is None else memo
    if isinstance(obj, torch.Tensor):
        if id(obj) not in memo:
            memo[id(obj)] = fn(obj)
        return memo[id(obj)]
    if isinstance(obj, tuple):
        return tuple(_map(o, fn, memo) for o in obj)
    if isinstance(obj, list):
        return [_map(o, fn, memo) for o in obj]
    if isinstance(obj, Mapping):
        return {k: _map(v, fn, memo) for k, v in obj.items()}
    return obj


def _map_inputs(inputs: Inputs, fn: Callable[[torch.Tensor], Any]) -> Inputs:
    memo: dict[int, Any] = {}
    return Inputs(_map(inputs.args, fn, memo), _map(dict(inputs.kwargs), fn, memo))


@dataclass(frozen=True)
class Inputs:
    """The arguments of one forward call: ``model(*args, **kwargs)``.

    Build one with :meth:`of` from what a user has at hand: a tensor, a tuple of positional
    arguments, a mapping of keyword arguments (a tokenizer's ``BatchEncoding``), or an
    :class:`Inputs` for both.
    """

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, example: Any) -> Inputs:
        if isinstance(example, Inputs):
            return example
        if isinstance(example, torch.Tensor):
            return cls((example,))
        if isinstance(example, Mapping):
            return cls((), dict(example))
        if isinstance(example, list | tuple):
            return cls(tuple(example))
        raise TypeError(
            "example inputs must be a tensor, a tuple of positional arguments, a mapping of "
            f"keyword arguments or skiplab.diagnostics.Inputs(args, kwargs); got "
            f"{type(example).__name__}"
        )

    def __call__(self, model: nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def tensors(self) -> list[torch.Tensor]:
        return list(_tensors((self.args, self.kwargs)))

    def describe(self) -> str:
        """``"(16, 3, 224, 224); attention_mask=(2, 7)"``: the shapes, for messages."""

        def shape(obj: Any) -> str:
            if isinstance(obj, torch.Tensor):
                return str(tuple(obj.shape))
            return type(obj).__name__

        parts = [shape(a) for a in self.args]
        parts += [f"{k}={shape(v)}" for k, v in self.kwargs.items()]
        return "; ".join(parts) or "no arguments"

    @property
    def batch_size(self) -> int:
        """First dimension of the first tensor (a graph's: its number of nodes)."""
        ts = self.tensors()
        if not ts or ts[0].dim() == 0:
            raise ValueError(f"inputs {self.describe()} hold no tensor with a batch dimension")
        return int(ts[0].shape[0])

    @property
    def batched(self) -> bool:
        """Every tensor has the batch size (or 1) first: the inputs split into examples."""
        ts = self.tensors()
        if not ts:
            return False
        b = self.batch_size
        return all(t.dim() > 0 and t.shape[0] in (b, 1) for t in ts)

    def slice(self, start: int, stop: int) -> Inputs:
        """Examples ``start:stop`` (tensors whose first dimension is 1 are kept whole).

        Raises:
            ValueError: the inputs are not batched (a graph): they cannot be split.
        """
        if not self.batched:
            raise ValueError(f"inputs {self.describe()} are not batched: cannot split them")
        b = self.batch_size

        def cut(t: torch.Tensor) -> torch.Tensor:
            return t[start:stop] if t.shape[0] == b and b != 1 else t

        return _map_inputs(self, cut)

    def head(self, n: int) -> Inputs:
        """The first ``n`` examples, or everything when the inputs are not batched."""
        return self.slice(0, n) if self.batched else self

    def to(self, device: torch.device | str) -> Inputs:
        return _map_inputs(self, lambda t: t.to(device))

    def floating(self) -> tuple[str | int, torch.Tensor] | None:
        """The first floating-point input (position or keyword, and the tensor): what an
        input-output Jacobian differentiates by; None for token ids alone."""
        for i, a in enumerate(self.args):
            if isinstance(a, torch.Tensor) and a.is_floating_point():
                return i, a
        for k, v in self.kwargs.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return k, v
        return None

    def replace(self, key: str | int, value: Any) -> Inputs:
        """These inputs with argument ``key`` (a position or a keyword) set to ``value``."""
        if isinstance(key, int):
            args = list(self.args)
            args[key] = value
            return Inputs(tuple(args), self.kwargs)
        return Inputs(self.args, {**self.kwargs, key: value})

    def token_ids(self) -> torch.Tensor | None:
        """``input_ids`` (keyword or the first positional 2-D integer tensor), if any."""
        ids = self.kwargs.get("input_ids")
        if isinstance(ids, torch.Tensor):
            return ids
        for a in self.args:
            if isinstance(a, torch.Tensor) and a.dim() == 2 and not a.is_floating_point():
                return a
        return None


def primary(output: Any) -> torch.Tensor:
    """The tensor a probe reads from a model's (or block's) output.

    A tensor is itself; a ``ModelOutput`` or mapping gives ``logits``, else
    ``last_hidden_state``, else its first tensor; a tuple or list its first tensor (a
    transformer block's hidden states).

    Raises:
        TypeError: the output holds no tensor.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        for key in ("logits", "last_hidden_state"):
            value = output.get(key) if hasattr(output, "get") else None
            if isinstance(value, torch.Tensor):
                return value
    for t in _tensors(output if not hasattr(output, "to_tuple") else output.to_tuple()):
        return t
    raise TypeError(f"the output ({type(output).__name__}) holds no tensor")


@dataclass
class Task:
    """What a probe measures a model's output against.

    Args:
        kind: ``"classification"`` (logits ``(B, C)`` or, for a graph, ``(N, C)``, and integer
            labels), ``"next-token"`` (language-model logits ``(B, T, V)`` scored against the
            input ids shifted by one), or ``"custom"`` (a user's ``loss_fn``).
        target: the labels (None for next-token).
        loss_fn: ``loss_fn(primary(output), target)`` for ``"custom"``.
    """

    kind: str
    target: Any = None
    loss_fn: LossFn | None = None

    @property
    def metric_name(self) -> str:
        return {"classification": "accuracy", "next-token": "next-token accuracy"}.get(
            self.kind, "loss"
        )

    @property
    def higher_is_better(self) -> bool:
        return self.kind in ("classification", "next-token")

    def loss(self, output: Any, inputs: Inputs) -> torch.Tensor:
        out = primary(output)
        if self.kind == "custom":
            assert self.loss_fn is not None
            return self.loss_fn(out, self.target)
        if self.kind == "next-token":
            ids = inputs.token_ids()
            assert ids is not None
            return F.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        return F.cross_entropy(out.flatten(0, -2), self.target.flatten())

    @torch.no_grad()
    def score(self, output: Any, inputs: Inputs) -> float:
        """Accuracy for labels and next tokens, the loss otherwise."""
        out = primary(output)
        if self.kind == "next-token":
            ids = inputs.token_ids()
            assert ids is not None
            return float((out[:, :-1].argmax(-1) == ids[:, 1:]).float().mean())
        if self.kind == "classification":
            return float((out.argmax(-1) == self.target).float().mean())
        return float(self.loss(output, inputs))

    def slice(self, start: int, stop: int, batch: int) -> Task:
        """The task of examples ``start:stop`` of a batch of ``batch``."""
        return Task(self.kind, slice_target(self.target, start, stop, batch), self.loss_fn)


def slice_target(target: Any, start: int, stop: int, batch: int) -> Any:
    """Labels ``start:stop`` of a batch of ``batch`` examples: a tensor with one label per
    example is cut, anything else (token or node labels, None) is kept whole."""
    if isinstance(target, torch.Tensor) and target.dim() > 0 and target.shape[0] == batch:
        return target[start:stop]
    return target


def infer_task(
    model: nn.Module,
    inputs: Inputs,
    *,
    target: Any = None,
    loss_fn: LossFn | None = None,
    output: Any = None,
) -> Task:
    """The :class:`Task` for ``model`` on ``inputs``: ``loss_fn`` when given; otherwise
    classification when integer ``target`` labels match the logits, next-token prediction for
    ``(B, T, V)`` logits of token ids with no target.

    Raises:
        ValueError: no loss can be inferred; the message names the output shape and what to pass.
    """
    if loss_fn is not None:
        return Task("custom", target, loss_fn)
    if output is None:
        with torch.no_grad():
            output = inputs(model)
    out = primary(output)
    if target is not None:
        t = torch.as_tensor(target)
        if not t.is_floating_point() and tuple(t.shape) == tuple(out.shape[:-1]):
            return Task("classification", t)
        raise ValueError(
            f"target of shape {tuple(t.shape)} ({t.dtype}) does not label output logits of "
            f"shape {tuple(out.shape)}: give integer labels of shape {tuple(out.shape[:-1])}, "
            "or loss_fn=(output, target) -> loss"
        )
    ids = inputs.token_ids()
    if out.dim() == 3 and ids is not None and tuple(ids.shape) == tuple(out.shape[:2]):
        return Task("next-token")
    raise ValueError(
        f"cannot infer a loss for output of shape {tuple(out.shape)} on inputs "
        f"{inputs.describe()}: pass target= (integer class labels) or "
        "loss_fn=(output, target) -> loss"
    )


def batches(inputs: Inputs, task: Task, size: int) -> Iterator[tuple[Inputs, Task]]:
    """``(inputs, task)`` in chunks of ``size`` examples (whole when not batched)."""
    if not inputs.batched:
        yield inputs, task
        return
    b = inputs.batch_size
    for i in range(0, b, size):
        stop = min(i + size, b)
        yield inputs.slice(i, stop), task.slice(i, stop, b)
