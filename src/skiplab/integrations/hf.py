"""A Hugging Face ``TrainerCallback`` that records what the skips do, every ``k`` steps.

    from transformers import Trainer
    from skiplab.integrations.hf import SkipDiagnosticsCallback

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[SkipDiagnosticsCallback(100)])

A ``TrainerCallback`` is not given the batch, so the callback keeps the last training batch
with a forward pre-hook on the model (installed in ``on_train_begin``, removed in
``on_train_end``). Every ``every_n_steps`` optimizer steps (``state.global_step`` a multiple
of it, in ``on_step_end``: after the optimizer step, on the step's last micro-batch) it measures
the gradient split at every residual add and the signal statistics of every block
(:func:`skiplab.integrations.skip_scalars`) and writes them as TensorBoard scalars at
``state.global_step`` to ``<log dir>/skiplab``. Only the main process measures, and the run is
bitwise the run without the callback.

The loss is the model's own: called with the batch's ``labels``, a Hugging Face model returns
``output.loss`` (for a causal language model the next-token loss: the model shifts
``labels``, which the data collator sets to ``input_ids``, padding as -100), as a mean over
the batch (the Trainer's ``num_items_in_batch`` is left out). Without ``labels`` in the batch,
the loss is inferred (the next-token loss on ``input_ids`` for a language model's logits), or
``loss_fn(logits, labels)`` when given.

In a distributed run only the main process measures, on its own copy of the model: fine for
data parallelism (DDP), not for sharded parameters (FSDP, DeepSpeed ZeRO-3), nor for
``SyncBatchNorm``, whose forward waits for the other processes.

Needs ``transformers`` and ``accelerate`` (``pip install 'skiplab[hf]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from skiplab.diagnostics._inputs import Inputs
from skiplab.integrations._common import PREFIX, Measuring, ScalarWriter, SkipScalars, require

require("transformers", "hf")
require("accelerate", "hf")

from transformers import TrainerCallback  # noqa: E402

#: Keyword arguments the Trainer adds to the model's call that are not the batch's.
TRAINER_KWARGS = ("num_items_in_batch",)


def log_dir_of(args: Any) -> str:
    """Where the Trainer's TensorBoard logs go: ``args.logging_dir`` (transformers 4), else
    ``$TENSORBOARD_LOGGING_DIR``, else ``<args.output_dir>/runs`` (transformers 5)."""
    given = getattr(args, "logging_dir", None) or os.environ.get("TENSORBOARD_LOGGING_DIR")
    if given:
        return os.path.expanduser(given)
    return os.path.join(args.output_dir or ".", "runs")


class SkipDiagnosticsCallback(Measuring, TrainerCallback):
    """Gradient split and signal statistics of the model's skips, every ``every_n_steps``.

    Args:
        every_n_steps: measure when ``state.global_step`` is a multiple of this.
        loss_fn: ``loss_fn(logits, labels) -> loss``; then ``labels`` are taken out of the
            model's inputs and given as the target. Default: the model's own loss when the
            batch has ``labels``, else inferred.
        log_dir: the folder for the event files (default ``<log dir>/skiplab``, see
            :func:`log_dir_of`).
        writer: a ``SummaryWriter`` to write to instead (not closed by the callback).
        max_examples: measure on the batch's first examples only (None: the whole batch).
        gradient, signal: which to record.
        prefix: the tags' first part (``skiplab/gradient_split/...``).
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        *,
        loss_fn: Callable[[Any, Any], Any] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        writer: Any = None,
        max_examples: int | None = 32,
        gradient: bool = True,
        signal: bool = True,
        prefix: str = PREFIX,
    ) -> None:
        self._configure(every_n_steps, loss_fn, max_examples, gradient, signal, prefix)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._given = writer
        self._own: Any = None
        self._writer: ScalarWriter | None = None
        self._model: nn.Module | None = None
        self._hook: Any = None
        self._batch: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def _capture(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if module.training and not self._measuring:
            self._batch = (args, dict(kwargs))

    _measuring = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs.get("model")
        if not isinstance(model, nn.Module):
            raise ValueError("SkipDiagnosticsCallback: the Trainer gave on_train_begin no model")
        self._remove_hook()
        self._model = model
        self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._batch = None

    def _scalar_writer(self, args: Any) -> ScalarWriter:
        if self._writer is None:
            writer = self._given
            if writer is None:
                from torch.utils.tensorboard import SummaryWriter

                root = self.log_dir or os.path.join(log_dir_of(args), "skiplab")
                writer = self._own = SummaryWriter(root)
            self._writer = ScalarWriter(writer, self.prefix)
        return self._writer

    def measure(self) -> SkipScalars:
        """The scalars on the last training batch at the current weights.

        Raises:
            RuntimeError: no training batch was seen (the callback was not in the Trainer's
                ``callbacks`` when training began).
        """
        if self._batch is None or self._model is None:
            raise RuntimeError(
                "SkipDiagnosticsCallback saw no training batch: it must be in the Trainer's "
                "callbacks when train() starts"
            )
        pos, kw = self._batch
        kw = {k: v for k, v in kw.items() if k not in TRAINER_KWARGS}
        target = None
        if self.loss_fn is not None:
            target = kw.pop("labels", None)
        model_loss = self.loss_fn is None and kw.get("labels") is not None
        self._measuring = True
        try:
            return self._skip_scalars(self._model, Inputs(pos, kw), target, model_loss)
        finally:
            self._measuring = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if step % self.every_n_steps or step == 0 or not state.is_world_process_zero:
            return
        self.last = self.measure()
        writer = self._scalar_writer(args)
        writer.write(self.last, step)
        writer.writer.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._remove_hook()
        self._model = None
        if self._own is not None:
            self._own.close()
            self._own = None
        self._writer = None
