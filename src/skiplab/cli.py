"""``skiplab``: reproduce | train | diagnose | report | runs | list.

User errors (a bad option, an unknown model or claim, a missing file, a file or directory
skiplab cannot write, a full disk, a lock held by another process) print one line,
``skiplab: error: ...``, and exit with status 2; nothing already stored is lost. Any other
exception is an internal error: one line naming its type and message, exit status 1, and
``--debug`` (anywhere on the line) shows its traceback. Ctrl-C (SIGINT) and SIGTERM stop the
command the same way: a run in progress is marked ``interrupted``, its last checkpoint kept,
one line is printed and the exit status is 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from skiplab.store import DEFAULT_PATH, Store

STORE_OPTION = click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("SKIPLAB_STORE", str(DEFAULT_PATH)),
    show_default="skiplab-runs/skiplab.sqlite or $SKIPLAB_STORE",
    help="SQLite results store.",
)


#: Bounds of integer options: a seed numpy, torch and SQLite all accept; an epoch count and a
#: pool size far beyond any real run (a larger value is a typo, and overflowed as an index).
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 10**6
MAX_WORKERS = 4096
MAX_LIMIT = 2**63 - 1  # SQLite's INTEGER


class UserError(click.ClickException):
    """An error in what the user asked for, shown as one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every Ctrl-C path (runs marked ``interrupted``,
    checkpoints kept, workers stopped) handles it too."""


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: ``nan`` and ``inf`` are refused by name."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


#: Bidirectional overrides and isolates: they reorder what a terminal shows ("Trojan Source").
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable(text: str) -> str:
    """``text`` with terminal control characters (C0, DEL, C1, bidi overrides, line and
    paragraph separators) shown escaped (``\\x1b``), so a stored name cannot drive the
    terminal that lists it."""
    out = []
    for ch in text:
        if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _plain_json(value: Any) -> Any:
    """``value`` with non-finite floats as strings, so ``json.dumps`` writes standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(v) for v in value]
    return value


def _check_device(device: str) -> None:
    """Refuse a ``--device`` that torch cannot parse or this machine does not have, before
    anything runs or is stored."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(
            f"--device {device!r} is not a torch device (use cpu, cuda, cuda:1 or mps)"
        ) from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "torch was built without CUDA"
                if torch.version.cuda is None
                else "no GPU is visible"
            )
            raise UserError(
                f"--device {device}: CUDA is not available here ({why}); use --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserError(
                f"--device {device}: this machine has {count} visible GPU(s), cuda:0..cuda:{count - 1}"
            )
        return
    if dev.type == "meta":
        raise UserError("--device meta holds no data and cannot train; use cpu or cuda")
    try:
        torch.empty(1, device=dev)
    except Exception as err:  # mps, xpu ... that this build or machine lacks
        raise UserError(
            f"--device {device} is not usable here ({_first_line(err)}); use --device cpu"
        ) from None


def _check_out_dir(path: Path, option: str) -> None:
    """Refuse an output directory that cannot be created or written, before anything runs."""
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{option} {path} is a file, not a directory; choose a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{option} {path} is not writable; choose another directory")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(
            f"{option} {path}: {parent} is a file, so the directory cannot be created; "
            "choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot create it, {parent} is not writable")


def _check_file_target(path: Path, option: str) -> None:
    """Refuse a file to be written later (a checkpoint) whose path cannot hold a file."""
    from skiplab._files import check_regular_target

    _check_out_dir(path.parent, f"{option} {path}: directory")
    try:
        check_regular_target(path, option)
    except ValueError as err:
        raise UserError(str(err)) from None


def _naming(path: Path, fn: Callable[..., Path], *args: Any, **kwargs: Any) -> Path:
    """``fn(*args, **kwargs)``, naming ``path`` in an OSError raised without a file name (a
    write to a full disk)."""
    try:
        return fn(*args, **kwargs)
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skiplab")
@click.option(
    "--debug", is_flag=True, help="Show the full traceback of an error (anywhere on the line)."
)
def cli(debug: bool) -> None:
    """skiplab: skip connections as parts, measured.

    \b
    Exit status: 0 done; 2 a user error (one line: the option or file and the fix);
    1 an internal error (one line; --debug shows the traceback); 130 Ctrl-C, 143 SIGTERM
    (the run in progress is marked interrupted and its last checkpoint kept).
    """


@cli.command()
@click.option(
    "--claims",
    "claim_spec",
    default="all",
    show_default=True,
    help="'all', claim IDs (C01,C09) or slugs.",
)
@click.option(
    "--scale",
    type=click.Choice(["tiny", "quick", "full"]),
    default="quick",
    show_default=True,
    help="tiny: seconds (tests); quick: minutes on a CPU; full: paper-sized.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 100),
    default=None,
    help="Number of seeds (default: each claim's own for the scale).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("skiplab-runs/report"),
    show_default=True,
    help="Report directory.",
)
@click.option("--force", is_flag=True, help="Rerun every run, even those already stored.")
@click.option(
    "--replicate",
    is_flag=True,
    help="Also run every claim on a disjoint seed set (1000, 1001, ...) and report whether "
    "the two verdicts agree.",
)
@click.option(
    "--data-path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Your own dataset file for the claims that take one (C13: a graph in the npz format "
    "of the shipped Cora).",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option(
    "--executor",
    type=click.Choice(["serial", "local", "ray"]),
    default=None,
    help="Where runs execute: serial (this process), local (a process pool; the default on "
    "a multi-core machine), ray (Ray tasks, local or a cluster).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker processes (local: default one per core on CPU, one per GPU on CUDA; ray: "
    "CPUs of a local Ray).",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (e.g. auto, or ray://head:10001); only with --executor ray.",
)
@STORE_OPTION
def reproduce(
    claim_spec: str, scale: str, seeds: int | None, out: Path, force: bool, replicate: bool,
    data_path: Path | None, device: str, executor: str | None, workers: int | None,
    address: str | None, store_path: Path,
) -> None:  # fmt: skip
    """Run the claims, store verdicts, and write the HTML report.

    Each claim's runs are cached by identity (claim, version, scale, settings, condition,
    seed): a rerun, or a rerun after an interruption, executes only the runs not yet stored.

    Under torchrun every rank runs the same claims (their training runs use DDP) and rank 0
    alone writes the store and the report; the other ranks record into a private scratch copy.
    """
    from skiplab.claims import make_executor, select_claims
    from skiplab.claims import reproduce as run_claims
    from skiplab.report import build_report, report_lock
    from skiplab.train.distributed import cleanup, env_world_size, init_distributed

    _check_claim_spec(claim_spec)
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be >= 1 and <= {MAX_WORKERS}, got {workers}")
    claims = select_claims(claim_spec)
    _check_device(device)
    _check_out_dir(out, "--out")
    distributed = env_world_size() > 1
    if distributed and executor not in (None, "serial"):
        raise UserError("under torchrun every rank runs the claims itself: use --executor serial")
    pool = make_executor(
        "serial" if distributed else executor, workers=workers, address=address, device=device
    )
    dist_info = init_distributed(device) if distributed else None
    main_rank = dist_info is None or dist_info.is_main
    scratch = None if main_rank else _scratch_store(store_path)
    if dist_info is not None:
        import torch.distributed as dist

        dist.barrier()  # every rank starts from the same store state: same runs reused
    try:
        # The report folder is taken before the first run, not after the last (rank 0 alone
        # writes it); build_report inside takes the same lock again.
        with (
            report_lock(out) if main_rank else contextlib.nullcontext(),
            Store(scratch or store_path) as store,
        ):
            outcomes = run_claims(
                claims, scale=scale, store=store, workdir=(scratch or store_path).parent / "work",
                seeds=seeds, replicate=replicate, force=force, data_path=data_path,
                device=str(dist_info.device) if dist_info else device,
                executor=pool, progress=sys.stderr.isatty() and main_rank,
                log=_echo if main_rank else None,
            )  # fmt: skip
            errors = {o.claim.id: o.reason for o in outcomes if o.status == "error"}
            if not main_rank:
                return
            index = _naming(out, build_report, store, out, scale=scale, errors=errors)
    finally:
        pool.close()
        if dist_info is not None:
            cleanup()
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch.parent, ignore_errors=True)
    click.echo(f"report: {index.resolve()}")
    if errors:
        raise UserError(f"{len(errors)} claim(s) raised an error: {', '.join(sorted(errors))}")


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("skiplab-runs/report"),
    show_default=True,
)
@click.option(
    "--scale",
    type=click.Choice(["tiny", "quick", "full"]),
    default=None,
    help="Only verdicts of this scale (default: newest of any).",
)
@STORE_OPTION
def report(out: Path, scale: str | None, store_path: Path) -> None:
    """Rebuild the HTML report from the results store (runs nothing)."""
    from skiplab.report import build_report

    _require_store(store_path)
    _check_out_dir(out, "--out")
    with Store(store_path, readonly=True) as store:
        index = _naming(out, build_report, store, out, scale=scale)
    click.echo(f"report: {index.resolve()}")


@cli.command()
@click.option("--kind", default=None, help="train, claim or diagnose.")
@click.option("--claim", default=None, help="Only runs of this claim ID.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@STORE_OPTION
def runs(kind: str | None, claim: str | None, limit: int, as_json: bool, store_path: Path) -> None:
    """List runs in the results store, newest first."""
    _require_store(store_path)
    with Store(store_path, readonly=True) as store:
        rows = store.runs(kind=kind, claim=claim.upper() if claim else None, limit=limit)
    if as_json:
        for r in rows:
            click.echo(json.dumps(_plain_json(r.__dict__), sort_keys=True, default=str))
        return
    header = f"{'id':>5}  {'kind':<9} {'claim':<5} {'scale':<6} {'seed':>4}  {'status':<11} {'wall_s':>8}  name"
    click.echo(header)
    for r in rows:
        wall = f"{r.wall_s:8.1f}" if r.wall_s is not None else f"{'-':>8}"
        line = (
            f"{r.id:>5}  {r.kind:<9} {r.claim or '-':<5} {r.scale or '-':<6} "
            f"{'-' if r.seed is None else r.seed:>4}  {r.status:<11} {wall}  {r.name}"
        )
        click.echo(printable(line))


@cli.command(name="list")
@click.argument(
    "what", type=click.Choice(["models", "claims", "datasets", "probes"]), default="claims"
)
def list_(what: str) -> None:
    """List registered models, claims, datasets or diagnose's probes."""
    if what == "models":
        from skiplab.models import list_models, model_family

        for name in list_models():
            click.echo(f"{name:<24} {model_family(name)}")
    elif what == "claims":
        from skiplab.claims import catalogue

        for cls in catalogue().values():
            click.echo(f"{cls.id}  {cls.slug:<22} {cls.title}")
    elif what == "probes":
        from skiplab.diagnostics.probes import registered

        for probe in registered():
            needs = ", ".join(n for n, on in (("a loss", probe.needs_task),
                                              ("run after --epochs", probe.trained)) if on)  # fmt: skip
            kind = "default" if probe.default else "asked for"
            click.echo(
                f"{probe.name:<10} {kind:<9}  {probe.title}" + (f" ({needs})" if needs else "")
            )
    else:
        from skiplab.data import list_datasets

        for name in list_datasets():
            click.echo(name)


@cli.command()
@click.argument("model")
@click.option("--data", "data_name", default="mnist1d", show_default=True, help="Dataset name.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the dataset's files (cifar10: the binary release, cifar-10-batches-bin).",
)
@click.option(
    "--data-path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A graph in the npz format of the shipped Cora (CSR features, y, edge_index, "
    "train/val/test masks): node classification with a GNN from the registry.",
)
@click.option(
    "--recipe",
    type=click.Choice(["he2015", "he2015-warmup"]),
    default=None,
    help="Paper recipe (He et al. 2015: 64k steps, batch 128, lr 0.1 /10 at 32k, 48k); "
    "options given explicitly override it.",
)
@click.option("--plain", is_flag=True, help="Train the plain twin (skip=False).")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 2**31 - 1), default=128, show_default=True)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=0.1, show_default=True)
@click.option(
    "--optimizer", type=click.Choice(["sgd", "adamw", "adam"]), default="sgd", show_default=True
)
@click.option(
    "--schedule",
    type=click.Choice(["cosine", "step", "onecycle", "constant"]),
    default="cosine",
    show_default=True,
)
@click.option("--weight-decay", type=FiniteFloat(min=0), default=1e-4, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--name", "run_name", default=None, help="Run name (default: MODEL-DATA-seedN).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (default: next to the store, by run name).",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint if it exists.")
@click.option("--device", default="cpu", show_default=True)
@STORE_OPTION
def train(
    model: str, data_name: str, data_dir: Path | None, data_path: Path | None,
    recipe: str | None, plain: bool, epochs: int, batch_size: int, lr: float, optimizer: str,
    schedule: str, weight_decay: float, seed: int, run_name: str | None,
    checkpoint: Path | None, resume: bool, device: str, store_path: Path,
) -> None:  # fmt: skip
    """Train MODEL (a registry name) on a dataset and store its metrics.

    Under torchrun (``torchrun --nproc-per-node=N -m skiplab.cli train ...``) every rank
    trains its shard of each global batch with DistributedDataParallel and rank 0 writes the
    store and checkpoints; with ``--resume`` a restarted job continues from the checkpoint.
    """
    import dataclasses

    import torch

    from skiplab.data import flip_crop
    from skiplab.train import TrainConfig, Trainer, init_distributed
    from skiplab.train.configs import paper_recipe
    from skiplab.train.distributed import cleanup

    options: dict[str, Any] = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
        weight_decay=weight_decay, seed=seed,
    )  # fmt: skip
    if recipe is not None:
        ctx = click.get_current_context()
        given = {
            k: v for k, v in options.items()
            if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT
        }  # fmt: skip
        cfg = dataclasses.replace(paper_recipe(recipe), **{"seed": seed, **given})
    else:
        cfg = TrainConfig(**options)
    _check_device(device)
    dist_info = init_distributed(device)
    torch.manual_seed(seed)
    if data_path is not None:
        net, task, data_name = _graph_inputs(model, data_path, plain)
    else:
        net, task = _dataset_inputs(model, data_name, data_dir, plain)
    name = run_name or f"{model}{'-plain' if plain else ''}-{data_name}-seed{seed}"
    ckpt = checkpoint or store_path.parent / "checkpoints" / f"{_safe(name)}.pt"
    _check_file_target(ckpt, "--checkpoint")
    config: dict[str, Any] = {
        "model": model, "plain": plain, "data": data_name, "recipe": recipe,
        "data_path": str(data_path) if data_path else None,
        "world_size": dist_info.world_size, **cfg.__dict__,
    }  # fmt: skip
    augment = flip_crop if data_name == "cifar10" else None
    try:
        if not dist_info.is_main:  # rank 0 alone writes the store and the checkpoints
            trainer = Trainer(
                net, cfg, checkpoint=ckpt, device=dist_info.device, augment=augment
            )  # fmt: skip
            trainer.fit(task, resume=resume)
            return
        with Store(store_path) as store:
            run_id = store.start_run(name, "train", config, seed=seed)
            trainer = Trainer(
                net, cfg, store=store, run_id=run_id, checkpoint=ckpt, device=dist_info.device,
                augment=augment,
            )  # fmt: skip
            try:
                history = trainer.fit(task, resume=resume)
            except Exception as err:
                store.finish_run(run_id, "failed", error=str(err))  # no-op if diverged
                raise
            store.finish_run(run_id, "completed", results={"final": history.last})
    finally:
        cleanup()
    last = history.last
    click.echo(
        f"run {run_id} {printable(name)}: train_loss {last['train_loss']:.4f}, "
        f"test_acc {last.get('test_acc', float('nan')):.4f} after {trainer.epoch} epochs"
    )


@cli.command()
@click.argument("model")
@click.option(
    "--data", "data_name", default=None, help="Dataset name (default mnist1d when the model "
    "brings no inputs and neither --input-shape nor --tokens is given).",
)  # fmt: skip
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory the dataset reads its files from (cifar10).",
)
@click.option(
    "--input-shape",
    default=None,
    help="Random inputs of this shape per example, e.g. 3,224,224 (random labels).",
)
@click.option("--tokens", default=None, help="Random token ids: VOCAB,LENGTH, e.g. 1000,32.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=16,
    show_default=True,
    help="Examples of --input-shape or --tokens.",
)
@click.option(
    "--probes",
    "probe_spec",
    default=None,
    help="'all', 'default' or a comma list of: skips, signal, gradflow, jacobian, paths, "
    "landscape, lesion. Default: all with --data; with a model's own inputs, --input-shape or "
    "--tokens every probe but the landscape.",
)
@click.option(
    "--epochs",
    type=click.IntRange(0, MAX_EPOCHS),
    default=1,
    show_default=True,
    help="Training on --data before the landscape and lesion probes (0: the untrained model).",
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("skiplab-runs/diagnose"),
    show_default=True,
)
@STORE_OPTION
def diagnose(
    model: str, data_name: str | None, data_dir: Path | None, input_shape: str | None,
    tokens: str | None, batch_size: int, probe_spec: str | None, epochs: int, seed: int, out: Path,
    store_path: Path,
) -> None:  # fmt: skip
    """Measure what the skips of MODEL do: a registry name or package.module:factory.

    A factory returns a model, or ``(model, example_inputs)`` or ``(model, example_inputs,
    target)``: its inputs are then used as they are.
    """
    import torch

    from skiplab.diagnostics.probes import parse_probes

    try:
        parse_probes(probe_spec)
    except ValueError as err:
        raise UserError(f"--probes: {err}") from None
    _check_out_dir(out, "--out")
    given = [o for o, v in (("--data", data_name), ("--input-shape", input_shape),
                            ("--tokens", tokens)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)}: give one source of inputs, not several")
    torch.manual_seed(seed)
    example: Any = None
    target: Any = None
    if ":" in model:  # imported first: a dataset it registers is known below
        built = _user_factory(model, load_factory)
        net, *rest = built if isinstance(built, tuple) else (built,)
        example, target = [*rest, None, None][:2]
        if example is not None and given:
            raise UserError(f"model {model!r} brings its own inputs: leave out {given[0]}")
    if example is None and (input_shape is not None or tokens is not None):
        example = _random_inputs(input_shape, tokens, batch_size, seed)
        if ":" not in model:
            net = _registry_for_inputs(model, example)
    if example is not None:
        probes = parse_probes(probe_spec, default="default")
        _diagnose_inputs(net, example, target, model, probes, out, store_path)
        return
    probes = parse_probes(probe_spec, default="all")
    data_name = data_name or "mnist1d"
    command = " ".join(["skiplab diagnose", model, "--data", data_name, "--probes",
                        probe_spec or "all", "--epochs", str(epochs), "--seed", str(seed)])  # fmt: skip
    _diagnose_data(model, net if ":" in model else None, data_name, data_dir,
                   probes, epochs, seed, out, store_path, command)  # fmt: skip


def _random_inputs(shape: str | None, tokens: str | None, batch: int, seed: int) -> Any:
    """Random images of ``--input-shape`` (with random labels drawn later) or token ids."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if shape is not None:
        dims = _int_list(shape, "--input-shape", "C,H,W (e.g. 3,224,224)")
        if math.prod(dims) * batch > 2**28:
            raise UserError(
                f"--input-shape {shape} with --batch-size {batch}: {math.prod(dims) * batch} "
                "values is too many (at most 2**28); lower one"
            )
        return torch.randn(batch, *dims, generator=gen)
    assert tokens is not None
    vocab, length = _int_list(tokens, "--tokens", "VOCAB,LENGTH (e.g. 1000,32)", size=2)
    if vocab < 2 or length < 2:
        raise UserError(f"--tokens {tokens}: VOCAB and LENGTH must both be at least 2")
    return torch.randint(0, vocab, (batch, length), generator=gen)


def _int_list(text: str, option: str, form: str, size: int | None = None) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 or v > 65536 for v in values) or (size and len(values) != size):
        raise UserError(f"{option} {text!r}: expected {form}, positive integers up to 65536")
    return values


def _registry_for_inputs(model: str, x: Any) -> Any:
    """A registry model built for random inputs ``x`` (image channels, 10 classes)."""
    from skiplab.models import create_model, model_family

    if not x.is_floating_point():
        raise UserError(
            f"--tokens feeds token ids; registry model {model!r} ({model_family(model)}) takes "
            "no token ids: use a package.module:factory for a language model"
        )
    return create_model(model, num_classes=10, **_input_kwargs(model, tuple(x.shape[1:])))


def _diagnose_inputs(
    net: Any, example: Any, target: Any, name: str, probes: list[str], out: Path,
    store_path: Path,
) -> None:  # fmt: skip
    """``skiplab.diagnose`` on the model's own inputs (or random ones), stored as a run."""
    import torch

    from skiplab.diagnostics import Inputs, diagnose, primary

    inputs = Inputs.of(example)
    if target is None and isinstance(example, torch.Tensor) and example.is_floating_point():
        try:  # random images: random labels for the gradient probes and the lesion study
            with torch.no_grad():
                logits = primary(net.eval()(example))
        except Exception as err:
            raise UserError(
                f"model {name!r} does not run on inputs {inputs.describe()} "
                f"({type(err).__name__}: {_first_line(err)})"
            ) from None
        if logits.dim() == 2:
            gen = torch.Generator().manual_seed(0)
            target = torch.randint(0, logits.shape[1], (logits.shape[0],), generator=gen)
    try:
        with Store(store_path) as store:
            run_id = store.start_run(f"diagnose {name}", "diagnose",
                                     {"model": name, "inputs": inputs.describe(),
                                      "probes": probes})  # fmt: skip
            try:
                result = diagnose(net, inputs, target=target, probes=probes, out=out, log=_echo)
            except BaseException as err:
                store.finish_run(run_id, "failed", error=f"{type(err).__name__}: {err}")
                raise
            store.finish_run(run_id, "completed", results=result.as_dict())
    except ValueError as err:
        if "does not run on inputs" in str(err):
            raise UserError(f"model {name!r}: {_first_line(err)}") from None
        raise
    for probe, why in result.errors.items():
        _echo(f"diagnose: {probe}: {why}")
    assert result.page is not None
    click.echo(f"report: {result.page.resolve()}")


def _diagnose_data(
    model: str, net: Any, data_name: str, data_dir: Path | None, probes: list[str],
    epochs: int, seed: int, out: Path, store_path: Path, command: str,
) -> None:  # fmt: skip
    """The dataset path: brief training on ``--data``, then every probe, stored as a run."""
    from skiplab.models import create_model
    from skiplab.report.diagnose import run_diagnose

    splits = _load_dataset(data_name, data_dir)
    if net is None:
        net = create_model(
            model, num_classes=splits.num_classes, **_input_kwargs(model, splits.input_shape)
        )
    with Store(store_path) as store:
        index = _naming(
            out, run_diagnose,
            net, splits, name=model, probes=probes, out_dir=out, store=store, epochs=epochs,
            seed=seed, command=command, log=_echo,
        )  # fmt: skip
    click.echo(f"report: {index.resolve()}")


def _load_dataset(name: str, data_dir: Path | None) -> Any:
    """The splits of dataset ``name`` (read from ``data_dir`` where it reads files)."""
    from skiplab.data import DatasetOptionError, get_dataset

    try:
        return get_dataset(name, **({"root": data_dir} if data_dir is not None else {}))
    except DatasetOptionError as err:
        if "root" not in err.options:
            raise
        raise UserError(
            f"--data-dir {data_dir}: dataset {name!r} reads no directory (it ships with "
            "skiplab or is generated); leave out --data-dir"
        ) from None


def load_factory(spec: str) -> Any:
    """Build a model from ``package.module:factory`` (the current directory is importable, as
    with ``python -m``): the factory returns a model, ``(model, example_inputs)`` or
    ``(model, example_inputs, target)``.

    Raises:
        ValueError: the spec has no ``:``, the module cannot be imported, it has no such
            callable, or the factory returned no ``nn.Module``.
    """
    import importlib

    from torch import nn

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model {spec!r}: expected a registry name or package.module:factory")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model {spec!r}: cannot import module {module_name!r} ({err})") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: {module_name} has no callable {attr!r}")
    built = factory()
    model = built[0] if isinstance(built, tuple) and 2 <= len(built) <= 3 else built
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model {spec!r}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    return built


#: The model families ``train --data`` builds for a dataset of inputs and class labels.
CLASSIFIER_FAMILIES = ("resnet", "mlp")


def _dataset_inputs(
    model: str, data_name: str, data_dir: Path | None, plain: bool
) -> tuple[Any, Any]:
    """The registry model built for a named dataset, and its classification task."""
    from skiplab.models import create_model, list_models, model_family
    from skiplab.train import Classification

    family = model_family(model)  # an unknown name raises, listing the known ones
    if family == "gnn":
        raise UserError(
            f"{model!r} is a GNN: train it on a graph with --data-path GRAPH.npz (the npz "
            f"format of the shipped Cora), not on --data {data_name}"
        )
    if family not in CLASSIFIER_FAMILIES:
        known = ", ".join(m for m in list_models() if model_family(m) in CLASSIFIER_FAMILIES)
        raise UserError(
            f"{model!r} is a {family} model; `skiplab train --data` trains classifiers of the "
            f"{' and '.join(CLASSIFIER_FAMILIES)} families ({known}); train the others from "
            "Python with a task from skiplab.train"
        )
    splits = _load_dataset(data_name, data_dir)
    net = create_model(
        model, skip=not plain, num_classes=splits.num_classes,
        **_input_kwargs(model, splits.input_shape),
    )  # fmt: skip
    return net, Classification(splits.train, splits.test)


def _graph_inputs(model: str, path: Path, plain: bool) -> tuple[Any, Any, str]:
    """A GNN from the registry built for the graph in ``path``, its node-classification task
    and the graph's name (the file's stem)."""
    from skiplab.data.graph_file import load_graph
    from skiplab.models import create_model, list_models, model_family
    from skiplab.train import NodeClassification

    if model_family(model) != "gnn":
        gnns = ", ".join(m for m in list_models() if model_family(m) == "gnn")
        raise UserError(f"--data-path trains node classifiers: {model!r} is not a GNN ({gnns})")
    graph = load_graph(path)  # validated: names the file and the key that is wrong
    net = create_model(
        model, skip=not plain, in_channels=int(graph.x.shape[1]),
        num_classes=int(graph.y.max()) + 1,
    )  # fmt: skip
    return net, NodeClassification(graph), path.stem


def _check_claim_spec(spec: str) -> None:
    """Refuse a ``--claims`` that mixes 'all' with names: it would quietly run everything."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if len(names) > 1 and any(n.lower() == "all" for n in names):
        raise UserError(
            f"--claims {spec!r} mixes 'all' with claim names; give 'all' alone or only IDs/slugs"
        )


def _user_factory(spec: str, load: Any) -> Any:
    """``load(spec)`` for ``diagnose package.module:factory``; whatever the user's module or
    factory raises (at import, for a missing argument, SystemExit included) becomes one line
    naming the factory."""
    import importlib

    module_name = spec.partition(":")[0]
    try:
        if module_name and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as load_factory does: the directory is importable
        if module_name:
            importlib.import_module(module_name)  # cached: load() does not run it again
    except ImportError:
        pass  # load() names the module that cannot be imported
    except (Exception, SystemExit) as err:
        raise UserError(
            f"model {spec!r}: importing {module_name} raised {type(err).__name__}: "
            f"{_first_line(err)} (--debug shows its traceback)"
        ) from err
    try:
        return load(spec)
    except ValueError as err:
        if str(err).startswith(f"model {spec!r}:"):
            raise  # load()'s own message: no callable, not an nn.Module ...
        raise _factory_error(spec, err) from err
    except (Exception, SystemExit) as err:
        raise _factory_error(spec, err) from err


def _factory_error(spec: str, err: BaseException) -> UserError:
    hint = ""
    if isinstance(err, TypeError) and "argument" in str(err):
        hint = "; skiplab calls the factory with no arguments: give defaults to its parameters"
    return UserError(
        f"model {spec!r}: the factory raised {type(err).__name__}: {_first_line(err)}{hint} "
        "(--debug shows its traceback)"
    )


def _input_kwargs(model: str, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Arguments that adapt a registry model to the data's layout (1-D vs 2-D, MLP input)."""
    from skiplab.models import model_family

    family = model_family(model)
    if family == "resnet":
        return {"dim": len(input_shape) - 1, "in_channels": input_shape[0]}
    if family == "mlp":
        n = 1
        for d in input_shape:
            n *= d
        return {"in_features": n}
    return {}


def _scratch_store(store_path: Path) -> Path:
    """A private copy of the store for a non-zero rank (so it skips what rank 0 skips)."""
    import sqlite3
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="skiplab-rank-")) / "scratch.sqlite"
    if store_path.is_file():
        src, dst = sqlite3.connect(store_path), sqlite3.connect(path)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


def _require_store(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"no results store at {path} (run `skiplab reproduce` or pass --store)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and map what it raises to one line and an exit status.

    0: done. 2: a user error (a bad option, file or device, a disk that is full, a lock held
    elsewhere) as ``skiplab: error: ...``. 1: an internal error, its type and message, and
    ``--debug`` (anywhere on the line) re-raises it with its traceback. 130 / 143: Ctrl-C /
    SIGTERM; the run in progress is marked ``interrupted`` and its checkpoint kept.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    previous = _on_sigterm()
    try:
        return _main(args, debug)
    except KeyboardInterrupt as exc:  # one that arrived while an error was being reported
        return _interrupted(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args: list[str], debug: bool) -> int:
    try:
        _check_utf8(args)
        try:
            with cli.make_context("skiplab", args) as ctx:
                cli.invoke(ctx)
        except click.exceptions.Exit as exc:
            return int(exc.exit_code)
        except BrokenPipeError:  # `skiplab runs | head`: the reader has what it wanted
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), sys.stdout.fileno())
            return 0
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                raise exc.__cause__ from None
            raise KeyboardInterrupt from None
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except Exception as exc:
        if debug:
            raise
        message = _user_error(exc)
        if message is not None:
            _echo(f"skiplab: error: {printable(message)}")
            return 2
        _echo(
            f"skiplab: internal error: {type(exc).__name__}: {printable(_first_line(exc))} "
            "(rerun with --debug for the traceback)"
        )
        return 1
    return 0


def _check_utf8(args: list[str]) -> None:
    """Refuse an argument with bytes that are not UTF-8 (Python decodes them to surrogates,
    which SQLite cannot store), naming the option it was given to."""
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            before = args[i - 1] if i > 0 and args[i - 1].startswith("-") else None
            what = f"the value of {before}" if before and "=" not in arg else "an argument"
            raise UserError(
                f"{what} ({arg!r}) has bytes that are not UTF-8; skiplab stores names, "
                "options and paths as UTF-8 text"
            ) from None


def _user_error(exc: Exception) -> str | None:
    """The one-line message for an error the user can fix; ``None`` for an internal error."""
    import errno
    import sqlite3

    from skiplab._files import LockedError
    from skiplab.claims import ExecutorError
    from skiplab.store import StoreError
    from skiplab.train import CheckpointError, DivergedError

    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, ValueError | StoreError | CheckpointError | DivergedError | LockedError):
        return _first_line(exc)  # FileTargetError and ExecutorError are ValueErrors
    if isinstance(exc, OSError):
        hints = {
            errno.ENOSPC: "the disk is full; free space or write elsewhere",
            errno.EDQUOT: "the disk quota is exhausted; free space or write elsewhere",
            errno.EACCES: "permission denied; check the path's permissions or choose another",
            errno.EPERM: "not permitted; check the path's permissions or choose another",
            errno.EROFS: "the file system is read-only; choose another path",
            errno.ENOTDIR: "a part of the path is a file, not a directory; choose another path",
            errno.EISDIR: "it is a directory; give a file path",
            errno.EEXIST: "it already exists and is in the way; choose another path",
            errno.ENOENT: "no such file or directory",
            errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
            errno.ELOOP: "too many symbolic links; check the path",
        }
        hint = hints.get(exc.errno or 0)
        if exc.filename is None and hint is None:
            return None
        where = "" if exc.filename is None else f"{exc.filename}: "
        if exc.filename2 is not None:
            where = f"{exc.filename} -> {exc.filename2}: "
        return f"{where}{hint or exc.strerror or _first_line(exc)}"
    if isinstance(exc, sqlite3.OperationalError):  # disk full, read-only, locked, unreadable
        return f"results store: {_first_line(exc)} (check the disk and the --store file)"
    if isinstance(exc, ExecutorError):
        return _first_line(exc)
    return None


def _on_sigterm() -> Any:
    """Make SIGTERM raise :class:`Terminated` in the main thread; the previous handler, or
    ``None`` when signals cannot be handled here (not the main thread)."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the cleanup run
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _interrupted(exc: BaseException) -> int:
    if isinstance(exc, Terminated):
        _echo("skiplab: terminated (SIGTERM); runs in progress are marked interrupted")
        return 128 + signal.SIGTERM
    if sys.stderr.isatty():
        _echo("")  # the terminal's ^C echo has no newline
    _echo("skiplab: interrupted; runs in progress are marked interrupted")
    return 128 + signal.SIGINT


def run() -> None:
    """Console-script entry point."""
    code = main()
    if code == 128 + signal.SIGINT:
        # A Ctrl-C during `import torch` sometimes ended the process by SIGINT (status -2)
        # after main had printed its line and returned 130: CPython 3.11 keeps a flag for a
        # KeyboardInterrupt that left code run through PyRun_String, even once caught, and
        # acts on it at exit. Run the exit handlers (the worker pools' among them), flush,
        # and leave with the status main chose.
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
