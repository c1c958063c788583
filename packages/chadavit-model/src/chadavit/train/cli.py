"""The `chadavit-train` command line. It only parses arguments, calls library functions and reports.

    chadavit-train --data DIR --model chadavit_moyen --out RUN --epochs E --batch-size B [...]
    chadavit-train export CKPT --out DIR

Training is the command itself (a typer callback run when no subcommand is given), so the
paper's one-line form works; `export` is the one subcommand. Exit codes: 0 success; 2 a usage
error (a flag, the config, the data folder, the run folder or a checkpoint cannot be used; nothing
was done); 1 a run that started and failed. Errors are one line on stderr starting with "error: ".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

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
from chadavit.train.validation import ConfigError, yaml_problem  # no torch: --help and --version stay fast

if TYPE_CHECKING:
    from chadavit.train.config import TrainConfig

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
        if not sep or not key.strip():
            raise ConfigError(f"{option}: expected KEY=VALUE, got {item!r}")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"{option} {key.strip()}: {yaml_problem(error)}") from error
    return parsed


def _fail(message: str, code: int) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


# Options that are not config fields; every other option's parameter name is the config field it
# sets (`batch_size` -> data.batch_size), so each flag is declared once, in `main`'s signature.
NOT_CONFIG_FIELDS = ("config_file", "recipe", "model_arg", "set_", "version", "verbose")


def build_config(params: dict[str, Any]) -> TrainConfig:
    """defaults < --recipe < --config FILE < flags < --model-arg / --set, as one validated TrainConfig."""
    from chadavit.train.config import TrainConfig, config_from_dict, config_key, load_config
    from chadavit.train.recipes import recipe_config_values

    config_file = params.get("config_file")
    if params.get("recipe"):
        values = recipe_config_values(params["recipe"], config_file, params.get("model"))
        try:
            base = config_from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"recipe {params['recipe']}: {error}") from error
    else:
        base = load_config(config_file) if config_file else TrainConfig()
    overrides: dict[str, Any] = {
        config_key(name): str(value) if isinstance(value, Path) else value
        for name, value in params.items()
        if name not in NOT_CONFIG_FIELDS and value is not None
    }
    if params.get("model_arg"):
        overrides["model_overrides"] = {
            **dict(base.model_overrides),
            **_parse_assignments(params["model_arg"], "--model-arg"),
        }
    overrides.update(_parse_assignments(params.get("set_"), "--set"))
    return base.with_overrides(overrides)


# The TrainConfig default each option falls back to, shown in --help (the options themselves default to
# None so that --config values are not overridden; tests/project/test_cli_help.py checks these
# against TrainConfig()).
SHOWN_DEFAULTS = {
    "model": "chadavit_moyen",
    "epochs": "400",
    "batch_size": "256",
    "nproc": "1",
    "resume": "none, a new run",
    "save_every": "1000",
    "num_workers": "8",
    "seed": "0",
    "device": "auto",
    "precision": "auto",
    "objective": "dino",
    "base_lr": "0.0001",
    "steps_per_epoch": "one pass over the data",
    "n_local_crops": "8",
    "padded": "padding-free",
}


def _default(name: str) -> str:
    return f"[default: {SHOWN_DEFAULTS[name]}]"


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option("--data", help="Dataset folder holding shards/*.tar (idrcell-v1).")
    ] = None,
    model: Annotated[str | None, typer.Option(help=f"Model name (registry). {_default('model')}")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder: checkpoints/, metrics, model/.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs (paper: 400). {_default('epochs')}")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per rank per step (paper: 256). {_default('batch_size')}")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="YAML config; flags override its values.")
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="A shipped recipe under the config: 'paper' (the authors' settings, docs/training.md)."
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(help=f"Local DDP processes to start (not under torchrun). {_default('nproc')}"),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help=f"'auto' (last checkpoint in --out) or a path. {_default('resume')}")
    ] = None,
    save_every: Annotated[
        int | None, typer.Option(help=f"Steps between checkpoints. {_default('save_every')}")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help=f"Loader processes per rank. {_default('num_workers')}")
    ] = None,
    seed: Annotated[int | None, typer.Option(help=f"Seed of every random choice. {_default('seed')}")] = None,
    device: Annotated[str | None, typer.Option(help=f"auto, cpu or cuda. {_default('device')}")] = None,
    precision: Annotated[
        str | None, typer.Option(help=f"auto (bf16 on GPU), fp32, bf16 or fp16. {_default('precision')}")
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(help=f"What to train: dino or supervised (on KEY.json labels). {_default('objective')}"),
    ] = None,
    base_lr: Annotated[
        float | None,
        typer.Option("--lr", help=f"Base learning rate per 256 images (paper: 1e-4). {_default('base_lr')}"),
    ] = None,
    steps_per_epoch: Annotated[
        int | None, typer.Option(help=f"Fix the epoch length in steps. {_default('steps_per_epoch')}")
    ] = None,
    n_local_crops: Annotated[
        int | None, typer.Option("--local-crops", help=f"Local crops per image. {_default('n_local_crops')}")
    ] = None,
    padded: Annotated[
        bool | None, typer.Option("--padded/--padding-free", help=f"Forward path. {_default('padded')}")
    ] = None,
    channel_vocab: Annotated[
        Path | None,
        typer.Option(
            "--channel-vocab",
            help="Channel names -> raw labels (YAML/JSON) over the built-in table; with "
            "--set model.channel_embedding=name its names are the model's vocabulary.",
        ),
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(help="Model override KEY=VALUE, e.g. embed_dim=32 (repeatable)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any config field as dotted KEY=VALUE, e.g. dino.out_dim=4096 (repeatable)."
        ),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Log more (-v debug).")] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Pretrain ChAda-ViT with DINO on idrcell-v1 shards, on one CPU or with DDP."""
    given = [
        name
        for name, value in ctx.params.items()
        if name not in ("version", "verbose") and value not in (None, [], ())
    ]
    if ctx.invoked_subcommand is not None:
        if given:
            flags = ", ".join(param.opts[0] for param in ctx.command.params if param.name in given)
            _fail(f"training options ({flags}) go without a subcommand", 2)
        return
    level = logging.DEBUG if verbose else logging.INFO  # training reports its progress by default
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console)])
    from chadavit.train.loop import TrainingError, train

    try:
        config = build_config(ctx.params)
        result = train(config, RichReporter())
    except TrainingError as error:  # the run started and failed
        _fail(f"training failed: {error}", 1)
    except (ValueError, OSError) as error:  # bad setting, data, run folder or checkpoint: nothing done
        _fail(one_line(error), 2)
    except Exception as error:  # a bug: still one line (the log has the details)
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        _fail(f"{type(error).__name__}: {one_line(error)}", 1)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun every rank runs this command; rank 0 reports
    table = Table(title="chadavit-train", show_header=False)
    table.add_row("run", str(result.out_dir))
    table.add_row("model (teacher backbone)", str(result.model_dir))
    table.add_row("steps", str(result.final_step))
    table.add_row("last loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}")
    Console().print(table)


def one_line(error: BaseException) -> str:
    """An error's message on one line; an OSError names its file."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split()) or type(error).__name__


@app.command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint, e.g. RUN/checkpoints/last.pt.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Model folder to write (config.json + model.safetensors).")
    ],
    network: Annotated[str, typer.Option(help="teacher (default, as DINO) or student.")] = "teacher",
) -> None:
    """Export a checkpoint's backbone as a model folder loadable by chadavit.from_pretrained."""
    from chadavit.train.checkpoint import export_checkpoint

    try:
        directory = export_checkpoint(checkpoint, out, network)
    except (ValueError, OSError) as error:  # the checkpoint or --out is unusable
        _fail(one_line(error), 2)
    Console().print(f"exported the {network} backbone of {checkpoint} to {directory}")


if __name__ == "__main__":  # `torchrun --nproc-per-node N -m chadavit.train.cli ...`
    app()
