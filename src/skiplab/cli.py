"""``skiplab``: reproduce | train | diagnose | report | runs | list.

User errors (a bad option, an unknown model or claim, a missing file) print one line,
``skiplab: error: ...``, and exit with status 2; nothing already stored is lost.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
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


class UserError(click.ClickException):
    """An error in what the user asked for, shown as one line."""


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skiplab")
@click.option(
    "--debug", is_flag=True, help="Show the full traceback of an error (anywhere on the line)."
)
def cli(debug: bool) -> None:
    """skiplab: skip connections as parts, measured."""


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
    from skiplab.report import build_report
    from skiplab.train.distributed import cleanup, env_world_size, init_distributed

    claims = select_claims(claim_spec)
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
        with Store(scratch or store_path) as store:
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
            index = build_report(store, out, scale=scale, errors=errors)
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
    with Store(store_path, readonly=True) as store:
        index = build_report(store, out, scale=scale)
    click.echo(f"report: {index.resolve()}")


@cli.command()
@click.option("--kind", default=None, help="train, claim or diagnose.")
@click.option("--claim", default=None, help="Only runs of this claim ID.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@STORE_OPTION
def runs(kind: str | None, claim: str | None, limit: int, as_json: bool, store_path: Path) -> None:
    """List runs in the results store, newest first."""
    _require_store(store_path)
    with Store(store_path, readonly=True) as store:
        rows = store.runs(kind=kind, claim=claim.upper() if claim else None, limit=limit)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.__dict__, sort_keys=True, default=str))
        return
    header = f"{'id':>5}  {'kind':<9} {'claim':<5} {'scale':<6} {'seed':>4}  {'status':<11} {'wall_s':>8}  name"
    click.echo(header)
    for r in rows:
        wall = f"{r.wall_s:8.1f}" if r.wall_s is not None else f"{'-':>8}"
        click.echo(
            f"{r.id:>5}  {r.kind:<9} {r.claim or '-':<5} {r.scale or '-':<6} "
            f"{'-' if r.seed is None else r.seed:>4}  {r.status:<11} {wall}  {r.name}"
        )


@cli.command(name="list")
@click.argument("what", type=click.Choice(["models", "claims", "datasets"]), default="claims")
def list_(what: str) -> None:
    """List registered models, claims or datasets."""
    if what == "models":
        from skiplab.models import list_models, model_family

        for name in list_models():
            click.echo(f"{name:<24} {model_family(name)}")
    elif what == "claims":
        from skiplab.claims import catalogue

        for cls in catalogue().values():
            click.echo(f"{cls.id}  {cls.slug:<22} {cls.title}")
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
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
@click.option(
    "--optimizer", type=click.Choice(["sgd", "adamw", "adam"]), default="sgd", show_default=True
)
@click.option(
    "--schedule",
    type=click.Choice(["cosine", "step", "onecycle", "constant"]),
    default="cosine",
    show_default=True,
)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
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
    dist_info = init_distributed(device)
    torch.manual_seed(seed)
    if data_path is not None:
        net, task, data_name = _graph_inputs(model, data_path, plain)
    else:
        net, task = _dataset_inputs(model, data_name, data_dir, plain)
    name = run_name or f"{model}{'-plain' if plain else ''}-{data_name}-seed{seed}"
    ckpt = checkpoint or store_path.parent / "checkpoints" / f"{_safe(name)}.pt"
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
        f"run {run_id} {name}: train_loss {last['train_loss']:.4f}, "
        f"test_acc {last.get('test_acc', float('nan')):.4f} after {trainer.epoch} epochs"
    )


@cli.command()
@click.argument("model")
@click.option("--data", "data_name", default="mnist1d", show_default=True, help="Dataset name.")
@click.option(
    "--probes",
    "probe_spec",
    default="all",
    show_default=True,
    help="'all' or a comma list of: skips, signal, gradflow, jacobian, paths, landscape, lesion.",
)
@click.option(
    "--epochs",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Training before the landscape and lesion probes (0: analyse the untrained model).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("skiplab-runs/diagnose"),
    show_default=True,
)
@STORE_OPTION
def diagnose(
    model: str, data_name: str, probe_spec: str, epochs: int, seed: int, out: Path,
    store_path: Path,
) -> None:  # fmt: skip
    """Measure what the skips of MODEL do: a registry name or package.module:factory."""
    import torch

    from skiplab.data import get_dataset
    from skiplab.models import create_model
    from skiplab.report.diagnose import load_factory, parse_probes, run_diagnose

    probes = parse_probes(probe_spec)
    splits = get_dataset(data_name)
    torch.manual_seed(seed)
    if ":" in model:
        net = load_factory(model)
    else:
        net = create_model(
            model, num_classes=splits.num_classes, **_input_kwargs(model, splits.input_shape)
        )
    command = " ".join(["skiplab diagnose", model, "--data", data_name, "--probes", probe_spec,
                        "--epochs", str(epochs), "--seed", str(seed)])  # fmt: skip
    with Store(store_path) as store:
        index = run_diagnose(
            net, splits, name=model, probes=probes, out_dir=out, store=store, epochs=epochs,
            seed=seed, command=command, log=_echo,
        )  # fmt: skip
    click.echo(f"report: {index.resolve()}")


def _dataset_inputs(
    model: str, data_name: str, data_dir: Path | None, plain: bool
) -> tuple[Any, Any]:
    """The registry model built for a named dataset, and its classification task."""
    from skiplab.data import get_dataset
    from skiplab.models import create_model
    from skiplab.train import Classification

    splits = get_dataset(data_name, **({"root": data_dir} if data_dir is not None else {}))
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
    """Entry point: run the CLI; user errors become one line on stderr and exit status 2
    (with ``--debug``, anywhere on the line, they raise with their traceback)."""
    from skiplab.claims import ExecutorError
    from skiplab.store import StoreError
    from skiplab.train import CheckpointError, DivergedError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        cli.main(
            args=args,
            prog_name="skiplab",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        _echo("skiplab: aborted")
        return 130
    except click.ClickException as exc:
        if debug:
            raise
        _echo(f"skiplab: error: {exc.format_message()}")
        return 2
    except (
        ValueError, KeyError, StoreError, CheckpointError, DivergedError, FileNotFoundError,
        ExecutorError,
    ) as exc:  # fmt: skip
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _echo(f"skiplab: error: {msg}")
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
