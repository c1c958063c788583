"""The `chadavit-train` command line. It only parses arguments, calls library functions and reports.

    chadavit-train --data DIR --model chadavit_moyen --out RUN --epochs E --batch-size B [...]
    chadavit-train export CKPT --out DIR

Training is the command itself (a typer callback run when no subcommand is given), so the
paper's one-line form works; `export` is the one subcommand.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from chadavit import __version__

app = typer.Typer(
    name="chadavit-train",
    help=(
        "Pretrain ChAda-ViT with DINO on idrcell-v1 shards, on one CPU or with DDP.\n\n"
        "Train: chadavit-train --data DIR --model chadavit_moyen --out RUN --epochs E --batch-size B "
        "[--config f.yaml] [--nproc N] [--resume auto]. Under torchrun each rank runs the same command."
    ),
    no_args_is_help=True,
    add_completion=False,
    invoke_without_command=True,
    rich_markup_mode=None,
)
console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chadavit-train {__version__}")
        raise typer.Exit()


class RichReporter:
    """Rank 0's progress bar: epoch, step, loss, lr, images/s, ETA. Picklable until started."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def on_start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None:
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} lr {task.fields[lr]} {task.fields[speed]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=total_steps, completed=start_step, epoch=start_step // steps_per_epoch,
            loss="-", lr="-", speed="-",
        )  # fmt: skip

    def on_step(self, metrics: Any) -> None:
        if self._progress is None:
            return
        self._progress.update(
            self._task,
            completed=metrics.step + 1,
            epoch=metrics.epoch,
            loss=f"{metrics.loss:.4f}",
            lr=f"{metrics.lr:.2e}",
            speed=f"{metrics.images_per_s:.1f}",
        )

    def on_end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _parse_assignments(values: list[str] | None, option: str) -> dict[str, Any]:
    """`KEY=VALUE` pairs; values are read as YAML scalars (8 -> int, 1e-4 -> float, true -> bool)."""
    parsed: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return parsed


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _build_config(options: dict[str, Any], model_args: list[str] | None, sets: list[str] | None) -> Any:
    from chadavit.train.config import TrainConfig, load_config

    config_file = options.pop("config_file")
    base = load_config(config_file) if config_file else TrainConfig()
    flag_to_key = {
        "data": "data_dir", "out": "out_dir", "model": "model", "epochs": "epochs",
        "batch_size": "data.batch_size", "nproc": "nproc", "resume": "resume", "save_every": "save_every",
        "num_workers": "data.num_workers", "seed": "seed", "device": "device", "precision": "precision",
        "lr": "optim.base_lr", "steps_per_epoch": "data.steps_per_epoch",
        "local_crops": "augment.n_local_crops", "padded": "padded",
    }  # fmt: skip
    overrides = {flag_to_key[name]: value for name, value in options.items() if value is not None}
    if model_args:
        overrides["model_overrides"] = {
            **dict(base.model_overrides),
            **_parse_assignments(model_args, "--model-arg"),
        }
    overrides.update(_parse_assignments(sets, "--set"))
    if "data_dir" in overrides:
        overrides["data_dir"] = str(overrides["data_dir"])
    if "out_dir" in overrides:
        overrides["out_dir"] = str(overrides["out_dir"])
    return base.with_overrides(overrides)


@app.callback()
def main(
    ctx: typer.Context,
    data: Path | None = typer.Option(
        None, "--data", help="Dataset folder holding shards/*.tar (idrcell-v1)."
    ),
    model: str | None = typer.Option(None, "--model", help="Model name, e.g. chadavit_moyen (the paper's)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder: checkpoints/, metrics, model/."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (paper: 400)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per rank per step (paper: 256)."
    ),
    config_file: Path | None = typer.Option(None, "--config", help="YAML config; flags override its values."),
    nproc: int | None = typer.Option(
        None, "--nproc", help="Local DDP processes to start (not under torchrun)."
    ),
    resume: str | None = typer.Option(None, "--resume", help="'auto' (last checkpoint in --out) or a path."),
    save_every: int | None = typer.Option(None, "--save-every", help="Steps between checkpoints."),
    num_workers: int | None = typer.Option(None, "--num-workers", help="Loader processes per rank."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every random choice."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    precision: str | None = typer.Option(None, "--precision", help="auto (bf16 on GPU), fp32, bf16 or fp16."),
    lr: float | None = typer.Option(None, "--lr", help="Base learning rate per 256 images (paper: 1e-4)."),
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", help="Fix the epoch length in steps."
    ),
    local_crops: int | None = typer.Option(None, "--local-crops", help="Local crops per image (default 8)."),
    padded: bool | None = typer.Option(
        None, "--padded/--padding-free", help="Forward path (default padding-free)."
    ),
    model_arg: list[str] | None = typer.Option(
        None, "--model-arg", help="Model override KEY=VALUE, e.g. embed_dim=32 (repeatable)."
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Any config field as dotted KEY=VALUE, e.g. dino.out_dim=4096 (repeatable)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Pretrain ChAda-ViT with DINO on idrcell-v1 shards, on one CPU or with DDP."""
    options = {
        "data": data, "out": out, "model": model, "epochs": epochs, "batch_size": batch_size,
        "nproc": nproc, "resume": resume, "save_every": save_every, "num_workers": num_workers, "seed": seed,
        "device": device, "precision": precision, "lr": lr, "steps_per_epoch": steps_per_epoch,
        "local_crops": local_crops, "padded": padded, "config_file": config_file,
    }  # fmt: skip
    if ctx.invoked_subcommand is not None:
        given = [name for name, value in options.items() if value is not None] + (
            ["model_arg"] if model_arg else []
        )
        if given or set_:
            _fail(f"training options ({', '.join(given or ['--set'])}) go without a subcommand")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    from chadavit.train.loop import train

    try:
        config = _build_config(options, model_arg, set_)
        result = train(config, RichReporter())
    except (ValueError, FileNotFoundError) as error:  # DataError, CheckpointError, bad config
        _fail(str(error))
        return
    except Exception as error:
        # A spawned rank failed: torch.multiprocessing gives its traceback; show its last line.
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        _fail(f"training stopped: {lines[-1] if lines else type(error).__name__}")
        return
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun every rank runs this command; rank 0 reports
    table = Table(title="chadavit-train", show_header=False)
    table.add_row("run", str(result.out_dir))
    table.add_row("model (teacher backbone)", str(result.model_dir))
    table.add_row("steps", str(result.final_step))
    table.add_row("last loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}")
    Console().print(table)


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint, e.g. RUN/checkpoints/last.pt."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (config.json + model.safetensors)."),
    network: str = typer.Option("teacher", "--network", help="teacher (default, as DINO) or student."),
) -> None:
    """Export a checkpoint's backbone as a model folder loadable by chadavit.from_pretrained."""
    from chadavit.train.checkpoint import export_checkpoint

    try:
        directory = export_checkpoint(checkpoint, out, network)
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
        return
    Console().print(f"exported the {network} backbone of {checkpoint} to {directory}")


if __name__ == "__main__":  # `torchrun --nproc-per-node N -m chadavit.train.cli ...`
    app()
