"""``skiplab diagnose``'s page: one section per probe, drawn by the probe itself.

The probes are those of :mod:`skiplab.diagnostics.probes`; this module renders their sections,
and runs ``skiplab diagnose --data``: the probes that describe the network as built run on the
freshly built model, the model is then trained briefly with the gradient-flow probe attached,
and the probes that need a trained model (loss landscape, lesions) run on the result. The
numbers are stored as a run of kind ``diagnose``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skiplab._files import check_regular_target
from skiplab.data import Splits
from skiplab.diagnostics.diagnosis import Diagnosis, diagnose
from skiplab.diagnostics.probes import sections
from skiplab.report.builder import _ENV, report_lock, write_page
from skiplab.store import Store


def run_diagnose(
    model: nn.Module,
    splits: Splits,
    *,
    name: str,
    probes: list[str],
    out_dir: Path,
    store: Store,
    epochs: int = 1,
    seed: int = 0,
    command: str = "",
    log: Callable[[str], None] = lambda _m: None,
    train_fn: Callable[..., dict[str, Any]] | None = None,
) -> Path:
    """Run ``probes`` on ``model`` with data ``splits``, write ``out_dir/index.html``, store a run.

    The probes see 128 training examples; the lesion study scores up to 1000 test examples.

    Args:
        train_fn: ``train_fn(model, splits, epochs, seed)`` trains in place and returns the
            final metrics (default :func:`train_briefly`); the gradient-flow probe is attached
            meanwhile.

    Raises:
        LockedError: another process is writing ``out_dir``; nothing was run or stored.
        FileTargetError: ``out_dir/index.html`` is a directory, FIFO or device; likewise.
        ValueError: the model does not take the dataset's inputs; nothing was stored.
    """
    with report_lock(out_dir):
        check_regular_target(out_dir / "index.html", "report file")
        torch.manual_seed(seed)
        xb, yb = splits.train.tensors[0][:128], splits.train.tensors[1][:128]
        xt, yt = splits.test.tensors[0][:1000], splits.test.tensors[1][:1000]
        _check_inputs(model, name, splits, xb)
        config = {"model": name, "data": splits.name, "probes": probes, "epochs": epochs,
                  "seed": seed}  # fmt: skip
        run_id = store.start_run(f"diagnose {name} on {splits.name}", "diagnose", config, seed=seed)

        def train(net: nn.Module) -> dict[str, Any]:
            return (train_fn or train_briefly)(net, splits, epochs, seed)

        try:
            result = diagnose(
                model, xb, target=yb, probes=probes, log=log, eval_inputs=xt, eval_target=yt,
                train=train if epochs > 0 else None,
            )  # fmt: skip
        except BaseException as err:
            store.finish_run(run_id, "failed", error=f"{type(err).__name__}: {err}")
            raise
        store.finish_run(run_id, "completed", results=result.as_dict())
        training = ""
        if result.training is not None:
            final = result.training
            training = (
                f"Trained {epochs} epoch(s) on {splits.name} ({splits.num_train} examples): "
                f"train loss {final.get('train_loss', math.nan):.4f}, "
                f"test accuracy {final.get('test_acc', math.nan):.4f}."
            )
        return _write(
            result, out_dir, title=name, data=splits.name, epochs=epochs, run_id=run_id, training=training,
            store_path=str(store.path), command=command,
        )  # fmt: skip


def _check_inputs(model: nn.Module, name: str, splits: Splits, xb: torch.Tensor) -> None:
    """Raise a clear error when the model does not take the dataset's inputs."""
    try:
        with torch.no_grad():
            model.eval()
            model(xb[:2])
    except Exception as err:
        raise ValueError(
            f"model {name!r} does not accept dataset {splits.name!r} inputs of shape "
            f"{tuple(xb.shape[1:])} ({type(err).__name__}: {err}); pass a matching --data"
        ) from err
    model.train()


def write_diagnosis(diagnosis: Diagnosis, out: Path) -> Path:
    """The page of a :func:`skiplab.diagnose` result: ``out/index.html`` and its figures.

    Raises:
        LockedError: another process is writing ``out``.
        FileTargetError: ``out/index.html`` is a directory, FIFO or device.
    """
    with report_lock(out):
        check_regular_target(out / "index.html", "report file")
        return _write(diagnosis, out, data=f"inputs {diagnosis.inputs}", training="")


def _write(
    diagnosis: Diagnosis,
    out: Path,
    *,
    data: str,
    training: str,
    epochs: int | None = None,
    run_id: int | None = None,
    title: str | None = None,
    store_path: str = "",
    command: str = "",
) -> Path:
    secs = sections(diagnosis.results, diagnosis.errors, diagnosis.wall_s, out / "figures")
    summary = [
        f"{diagnosis.model}: {len(diagnosis.blocks)} block(s): "
        f"{', '.join(diagnosis.blocks) or 'none found'}.",
        f"Loss for the gradient probes and the lesion study: {diagnosis.task or 'none'}.",
    ]
    html = _ENV.get_template("diagnose.html").render(
        model=title or diagnosis.model, data=data, epochs=epochs, run_id=run_id, training=training,
        params=diagnosis.params, sections=secs, store_path=store_path, command=command,
        summary=summary,
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip
    index = out / "index.html"
    write_page(index, html)
    return index


def train_briefly(model: nn.Module, splits: Splits, epochs: int, seed: int) -> dict[str, Any]:
    """Train ``model`` in place with skiplab's Trainer (SGD, cosine, lr 0.05) for the probes
    that need a trained model; returns the last epoch's metrics."""
    from skiplab.train import TrainConfig, Trainer

    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, seed=seed, weight_decay=5e-4)
    history = Trainer(model, cfg, progress=False).fit(splits.train, splits.test)
    return dict(history.last)
