"""A PyTorch Lightning callback that records what the skips do, every ``k`` steps.

    import lightning as L
    from skiplab.integrations.lightning import SkipDiagnostics

    trainer = L.Trainer(max_steps=1000, callbacks=[SkipDiagnostics(every_n_steps=100)])

Every ``every_n_steps`` optimizer steps, on the batch of that step and the weights after it,
the callback measures the shortcut/branch gradient split at every residual add and the signal
statistics of every block (:func:`skiplab.integrations.skip_scalars`) and writes them as
TensorBoard scalars at ``trainer.global_step``: to the trainer's ``TensorBoardLogger`` when it
has one, else to its own ``SummaryWriter`` in ``<trainer.log_dir>/skiplab``. The run itself is
bitwise the run without the callback.

Only the global rank 0 measures, on its own copy of the model: fine for data parallelism (DDP),
not for sharded parameters (FSDP, DeepSpeed stage 3), nor for ``SyncBatchNorm``, whose forward
waits for the other processes.

Needs ``lightning`` (``pip install 'skiplab[lightning]'``); the callback is a
``lightning.pytorch.Callback`` (the standalone ``pytorch_lightning`` package's trainer takes
its own callback class only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from skiplab.integrations._common import (
    PREFIX,
    Measuring,
    ScalarWriter,
    SkipScalars,
    default_batch_to_inputs,
    require,
    takes_labels,
)

require("lightning.pytorch", "lightning")

import lightning.pytorch as pl  # noqa: E402
from lightning.fabric.loggers import TensorBoardLogger  # noqa: E402


class SkipDiagnostics(Measuring, pl.Callback):
    """Gradient split and signal statistics of the model's skips, every ``every_n_steps``.

    Args:
        every_n_steps: measure when ``trainer.global_step`` is a multiple of this (after the
            optimizer step, on the batch that made it; once per step under gradient
            accumulation, on the step's last micro-batch).
        loss_fn: ``loss_fn(output, target) -> loss`` on the measured module's output (its logits:
            :func:`~skiplab.diagnostics.primary`); inferred when None: cross-entropy for integer
            class labels, the next-token loss for a language model's logits without a target.
        batch_to_inputs: ``batch -> (inputs, target)``, ``inputs`` anything
            :meth:`~skiplab.diagnostics.Inputs.of` takes (a tensor, a tuple of positional
            arguments, a mapping of keyword arguments). The default takes ``(x, y)`` (``(x1,
            ..., y)``: every element but the last as positional inputs), a mapping with
            ``labels`` (Hugging Face style: when the module's ``forward`` takes ``labels``, the
            whole mapping is its input and its ``output.loss`` the loss; otherwise ``labels``
            is the target), any other mapping as keyword inputs, and a tensor as the input.
        module: what to measure: an ``nn.Module``, the name of a submodule of the
            LightningModule (``"model"``: ``pl_module.model``), or ``pl_module -> nn.Module``.
            Default: the LightningModule itself when it defines ``forward`` (which must take
            the inputs); otherwise the model it wraps, its one child module with parameters.
        max_examples: measure on the batch's first examples only (None: the whole batch).
        gradient, signal: which to record.
        prefix: the tags' first part (``skiplab/gradient_split/...``).

    Raises (at the first measurement):
        ValueError: no loss can be inferred from the batch (pass ``loss_fn`` or
            ``batch_to_inputs``), ``module`` names no submodule, or none is given and the
            LightningModule has no ``forward`` and not exactly one child with parameters.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        *,
        loss_fn: Callable[[Any, Any], Any] | None = None,
        batch_to_inputs: Callable[[Any], tuple[Any, Any]] | None = None,
        module: nn.Module | str | Callable[[Any], nn.Module] | None = None,
        max_examples: int | None = 32,
        gradient: bool = True,
        signal: bool = True,
        prefix: str = PREFIX,
    ) -> None:
        super().__init__()
        self._configure(every_n_steps, loss_fn, max_examples, gradient, signal, prefix)
        self.batch_to_inputs = batch_to_inputs
        self.module = module
        self._last_step = -1
        self._writer: ScalarWriter | None = None
        self._own: Any = None

    def _target_module(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.module is None:
            if type(pl_module).forward is not pl.LightningModule.forward:
                return pl_module
            # no forward of its own: the model it wraps, its one child with parameters
            children = [
                (n, c)
                for n, c in pl_module.named_children()
                if next(c.parameters(), None) is not None
            ]
            if len(children) == 1:
                return children[0][1]
            raise ValueError(
                f"SkipDiagnostics: {type(pl_module).__name__} defines no forward and has "
                f"{len(children)} submodules with parameters "
                f"({', '.join(n for n, _ in children) or 'none'}): pass module= (a submodule's "
                "name, a module, or pl_module -> module) to say which to measure"
            )
        if isinstance(self.module, nn.Module):
            return self.module
        if isinstance(self.module, str):
            try:
                return pl_module.get_submodule(self.module)
            except AttributeError as err:
                names = [n for n, _ in pl_module.named_children()]
                raise ValueError(
                    f"SkipDiagnostics(module={self.module!r}): {type(pl_module).__name__} has "
                    f"no such submodule (its children: {', '.join(names) or 'none'})"
                ) from err
        return self.module(pl_module)

    def _scalar_writer(self, trainer: pl.Trainer) -> ScalarWriter:
        if self._writer is None:
            tb = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
            if tb:
                self._writer = ScalarWriter(tb[0].experiment, self.prefix)
            else:
                from torch.utils.tensorboard import SummaryWriter

                root = trainer.log_dir or trainer.default_root_dir
                self._own = SummaryWriter(os.path.join(root, "skiplab"))
                self._writer = ScalarWriter(self._own, self.prefix)
        return self._writer

    def measure(self, pl_module: pl.LightningModule, batch: Any) -> SkipScalars:
        """The scalars on ``batch`` now (what :meth:`on_train_batch_end` writes)."""
        model = self._target_module(pl_module)
        if self.batch_to_inputs is not None:
            inputs, target = self.batch_to_inputs(batch)
            model_loss = False
        else:
            inputs, target, model_loss = default_batch_to_inputs(
                batch, takes_labels=self.loss_fn is None and takes_labels(model)
            )
        return self._skip_scalars(model, inputs, target, model_loss)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = -1  # a new fit may count its steps from 0 again

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps or step == 0:
            return
        self._last_step = step
        if not trainer.is_global_zero:
            return
        self.last = self.measure(pl_module, batch)
        writer = self._scalar_writer(trainer)
        writer.write(self.last, step)
        writer.writer.flush()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None
        self._writer = None
