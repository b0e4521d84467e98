"""What every probe shares: attach / collect / detach, and the blocks of an arbitrary model.

A probe hooks into a model, records while the model runs (at init or during training), and
gives back plain numbers. Hooks are always removed, even when the code in between raises:
use a probe as a context manager, ``with probe.attached(model): ...``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from skiplab.nn import SkipModule

if TYPE_CHECKING:
    from skiplab.diagnostics.skips import Merge

LAYOUTS = ("auto", "NCHW", "NCL", "BTC", "BC")


class AbstractProbe(ABC):
    """A measurement that hooks into a model.

    Subclasses implement :meth:`_attach` (register hooks, add their handles with
    :meth:`_keep`) and :meth:`collect`; :meth:`detach` removes every hook.
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._step_handles: list[RemovableHandle] = []
        self.model: nn.Module | None = None

    def attach(self, model: nn.Module) -> AbstractProbe:
        """Register the probe's hooks on ``model``; returns the probe."""
        if self.model is not None:
            raise RuntimeError(f"{type(self).__name__} is already attached; detach it first")
        self.model = model
        try:
            self._attach(model)
        except BaseException:
            self.detach()
            raise
        return self

    @abstractmethod
    def _attach(self, model: nn.Module) -> None: ...

    @abstractmethod
    def collect(self) -> dict[str, Any]:
        """What the probe recorded so far, as JSON-able numbers."""

    def detach(self) -> None:
        """Remove every hook this probe registered (safe to call twice)."""
        self._release_step()
        while self._handles:
            self._handles.pop().remove()
        self.model = None

    def _keep(self, handle: RemovableHandle) -> None:
        self._handles.append(handle)

    def _keep_step(self, handle: RemovableHandle) -> None:
        """Keep a hook that lives for one recorded pass only (see :meth:`_release_step`).

        Probes that record one pass in ``every`` register their per-layer hooks at the start of
        a recorded pass and drop them after it: a pass that is not recorded then costs one
        model-level hook call, not one per layer (measured: 10% on a ResNet-20 step otherwise).
        """
        self._step_handles.append(handle)

    def _release_step(self) -> None:
        while self._step_handles:
            self._step_handles.pop().remove()

    @property
    def num_hooks(self) -> int:
        return len(self._handles)

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[AbstractProbe]:
        """``with probe.attached(model): ...`` attaches, and detaches even on error."""
        self.attach(model)
        try:
            yield self
        finally:
            self.detach()


def find_blocks(
    model: nn.Module, inputs: Any = None, *, merges: Sequence[Merge] | None = None
) -> list[tuple[str, nn.Module]]:
    """The blocks of ``model`` by qualified name, in forward order.

    1. skiplab merges (:class:`~skiplab.nn.SkipModule`, active or a plain twin's), outermost
       only, when the model has any;
    2. otherwise the modules that own the skips found (``merges``, or those
       :func:`~skiplab.diagnostics.find_skips` finds in a forward pass on ``inputs``): for each
       merge, its owner, or the innermost module holding both the owner and the branch where the
       branch lies outside the owner (BERT adds in ``encoder.layer.0.output``, whose branch
       starts in ``encoder.layer.0.intermediate``: the block is ``encoder.layer.0``); the
       outermost of these, the root model never;
    3. for a network without skips (a plain twin, a VGG-style stack, or no ``inputs`` to look
       with): the repeated layer units, the entries of the longest ``nn.ModuleList`` (a
       transformer's ``blocks``) or of the longest ``nn.Sequential`` if it is longer than the
       list of the model's direct children with parameters, which are the blocks otherwise.

    Args:
        inputs: example inputs (a tensor, a tuple, a mapping of keyword arguments or
            :class:`~skiplab.diagnostics.Inputs`) to find the skips with.
    """
    found = _skip_modules(model)
    if found:
        return found
    if merges is None and inputs is not None:
        from skiplab.diagnostics._inputs import Inputs
        from skiplab.diagnostics.skips import find_skips

        ins = Inputs.of(inputs)
        merges = find_skips(model, ins.args, kwargs=ins.kwargs, use_fx=False).merges
    if merges:
        owned = merge_blocks(model, merges)
        if owned:
            return owned
    return _repeated_units(model)


def merge_block(model: nn.Module, merge: Merge) -> str:
    """The block that holds ``merge``: its owner, or, when the branch's module is a sibling of
    the owner or holds it rather than inside it (BERT), the innermost module holding both.
    Where that module is the root or a ``ModuleList`` (GCNII's propagation ``P x`` runs back
    through every earlier layer), the owner is the block."""
    owner, branch = merge.module, merge.branch_module
    if not branch or not owner or branch == owner or branch.startswith(owner + "."):
        return owner
    common: list[str] = []
    for a, b in zip(owner.split("."), branch.split(".")):
        if a != b:
            break
        common.append(a)
    holder = ".".join(common)
    if not holder or isinstance(model.get_submodule(holder), nn.ModuleList | nn.ModuleDict):
        return owner  # a list of layers runs nothing itself: GCNII's P x crosses earlier layers
    return holder


def merge_blocks(model: nn.Module, merges: Sequence[Merge]) -> list[tuple[str, nn.Module]]:
    """The outermost of the blocks holding ``merges`` (:func:`merge_block`) that have
    parameters, root excluded, in the order their first merge ran."""
    names = list(dict.fromkeys(b for b in (merge_block(model, m) for m in merges) if b))
    # a module without parameters only aggregates (JumpingKnowledge's "cat" of every layer)
    names = [n for n in names if any(True for _ in model.get_submodule(n).parameters())]
    outer = [n for n in names if not any(n.startswith(o + ".") for o in names)]
    return [(n, model.get_submodule(n)) for n in outer]


def _skip_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found: list[tuple[str, nn.Module]] = []
    inside: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, SkipModule) and not any(name.startswith(p + ".") for p in inside):
            found.append((name, module))
            inside.append(name)
    return found


def _repeated_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    children = [(n, m) for n, m in model.named_children() if any(True for _ in m.parameters())]
    containers = [
        (n, list(m.named_children()))
        for n, m in model.named_modules()
        if isinstance(m, nn.ModuleList | nn.Sequential) and len(m) > 1
    ]
    lists = [(n, c) for n, c in containers if isinstance(model.get_submodule(n), nn.ModuleList)]
    seqs = [(n, c) for n, c in containers if isinstance(model.get_submodule(n), nn.Sequential)]
    for candidates in (lists, seqs):
        if not candidates:
            continue
        name, best = max(candidates, key=lambda nc: len(nc[1]))
        if candidates is lists or len(best) > len(children):
            # children by their own names: a Sequential built from an OrderedDict has no "1"
            return [(f"{name}.{k}" if name else k, child) for k, child in best]
    return children


def resolve_layout(layout: str, t: torch.Tensor, model: nn.Module | None = None) -> str:
    """The concrete layout of activation ``t``: NCHW, NCL, BTC (channels last) or BC.

    ``"auto"`` reads 4-D as NCHW, 2-D as BC, and 3-D as NCL when the model has 1-D convolutions,
    else BTC (a sequence model's ``(B, T, C)``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout != "auto":
        return layout
    if t.dim() == 4:
        return "NCHW"
    if t.dim() == 2:
        return "BC"
    if t.dim() == 3:
        has_conv1d = model is not None and any(isinstance(m, nn.Conv1d) for m in model.modules())
        return "NCL" if has_conv1d else "BTC"
    raise ValueError(f"cannot infer the layout of a {t.dim()}-D activation {tuple(t.shape)}")


def channels_first(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t`` as ``(C, N)``: channels by every other position (batch and space/time)."""
    dims = {"NCHW": 4, "NCL": 3, "BTC": 3, "BC": 2}[layout]
    if t.dim() != dims:
        raise ValueError(f"layout {layout} needs a {dims}-D tensor, got shape {tuple(t.shape)}")
    if layout in ("BTC", "BC"):
        return t.reshape(-1, t.shape[-1]).t()  # (C, B*T)
    return t.transpose(0, 1).reshape(t.shape[1], -1)  # (C, B*H*W) or (C, B*L)


def channel_stats(t: torch.Tensor, layout: str) -> tuple[float, float]:
    """Brock et al. 2021's signal statistics of one activation.

    Returns:
        (average channel squared mean, average channel variance): ``mean_c(mean_n(x)^2)`` and
        ``mean_c(var_n(x))``, with ``n`` running over batch and positions.
    """
    sq, var = channel_stats_tensor(t, layout)
    return float(sq), float(var)


def channel_stats_tensor(t: torch.Tensor, layout: str) -> torch.Tensor:
    """:func:`channel_stats` as a 2-element tensor, without copying or synchronising."""
    dims = {"NCHW": 4, "NCL": 3, "BTC": 3, "BC": 2}[layout]
    if t.dim() != dims:
        raise ValueError(f"layout {layout} needs a {dims}-D tensor, got shape {tuple(t.shape)}")
    reduce = {"NCHW": (0, 2, 3), "NCL": (0, 2), "BTC": (0, 1), "BC": (0,)}[layout]
    var, mean = torch.var_mean(t.detach().float(), dim=reduce, unbiased=False)  # (C,)
    return torch.stack([(mean**2).mean(), var.mean()])


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` with batch-norm layers using batch statistics and updating nothing, for
    measurements at init (Brock et al. 2021 measure with batch statistics; eval mode at init
    would apply the untouched running statistics 0 and 1).

    Everything else is in eval mode: dropout (``nn.Dropout``, and attention dropout, which
    transformers applies only while its module trains) and drop-path are off, so a measurement
    describes the network rather than one random thinning of it. Batch-norm layers without
    running statistics normalise with the batch's in eval mode too. Everything (every module's
    own mode, running buffers, ``track_running_stats``) is restored on exit.
    """
    saved = []
    modes = modes_of(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.track_running_stats, m.running_mean, m.running_var))
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
    model.eval()
    try:
        yield model
    finally:
        for m, track, mean, var in saved:
            m.track_running_stats = track
            m.running_mean = mean
            m.running_var = var
        restore_modes(modes)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then every module's previous mode again (a submodule
    frozen in eval mode inside a training model stays so)."""
    modes = modes_of(model)
    model.eval()
    try:
        yield model
    finally:
        restore_modes(modes)


def modes_of(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Every module's own train/eval flag, for :func:`restore_modes`."""
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training
