"""The `chadavit-bench` command line. It only parses arguments, calls library functions and reports."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chadavit_bench import __version__
from chadavit_bench.datasets import DATA_ROOT_VARIABLE, DatasetFormatError, DatasetNotFoundError, discover
from chadavit_bench.models import ModelSpecError, parse_model_spec
from chadavit_bench.tasks import TASK_HELP, TASKS

app = typer.Typer(
    name="chadavit-bench",
    help="Evaluate channel-adaptive microscopy encoders on downstream biological tasks.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

MODEL_HELP = (
    "Model to evaluate (repeat for several): a model directory (config.json + model.safetensors), "
    "an authors' .ckpt (?weights=teacher&num_heads=12), or a registry name at seeded random init, "
    "e.g. 'random:chadavit_petit?embed_dim=32&depth=2&seed=0' or 'onechannel_vit_tiny'. "
    "Add ?label=NAME to name it in the report."
)
DATA_HELP = f"Folder holding the datasets in their public layouts (default: ${DATA_ROOT_VARIABLE})."


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chadavit-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log each step (and the traceback of a failure)."
    ),
) -> None:
    """Evaluate channel-adaptive microscopy encoders on downstream biological tasks."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


def _fail(message: str, code: int = 2) -> None:
    # One line, paths unbroken; the message is text, never markup (a path may hold brackets).
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _split_tasks(values: list[str] | None, all_tasks: tuple[str, ...]) -> list[str]:
    if not values:
        return list(all_tasks)
    tasks = [t.strip() for value in values for t in value.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in all_tasks]
    if unknown:
        _fail(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(all_tasks)}")
    return list(dict.fromkeys(tasks))


def _execute(
    tasks: list[str],
    models: list[str],
    data_root: Path | None,
    out: Path,
    seeds: int | None,
    quick: bool,
    img_size: int,
    manifests: list[Path],
    datasets: list[str] | None,
    knn_grid: bool,
    patch_tokens: bool,
    max_images: int | None,
    batch_size: int,
    workers: int,
    device: str,
) -> None:
    from chadavit_bench.runner import BenchConfig, quick_config, run_all
    from chadavit_bench.runner import Progress as Hooks

    if not models:
        _fail("give at least one --model")
    try:
        specs = [parse_model_spec(text) for text in models]
    except ModelSpecError as error:
        _fail(str(error))
    config = BenchConfig(
        img_size=img_size,
        knn_grid=knn_grid,
        max_images_per_split=max_images,
        batch_size=batch_size,
        workers=workers,
        device=device,
    )
    config = dataclasses.replace(
        config, reconstruction=dataclasses.replace(config.reconstruction, use_patch_tokens=patch_tokens)
    )
    if quick:
        config = quick_config(config, seeds)
    elif seeds is not None:
        config = dataclasses.replace(config, seeds=seeds)
    if config.seeds < 1:
        _fail(f"--seeds must be at least 1, got {config.seeds}")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        handle = bar.add_task("evaluating", total=None)
        hooks = Hooks(
            start=lambda total: bar.update(handle, total=total),
            advance=lambda text: bar.update(handle, advance=1, description=text),
        )
        try:
            outcome = run_all(specs, data_root, out, config, tasks, manifests, datasets, hooks)
        except (ModelSpecError, DatasetNotFoundError, DatasetFormatError, ValueError) as error:
            bar.stop()
            logging.getLogger(__name__).info("run failed", exc_info=True)  # the traceback, with --verbose
            _fail(str(error))
    _print_outcome(outcome)


def _print_outcome(outcome) -> None:
    from chadavit_bench.report import headline_scores
    from chadavit_bench.results import summarise

    scores = headline_scores(summarise(outcome.results))
    if not scores.empty:
        table = Table(title="Headline scores (0-100)")
        models = list(dict.fromkeys(scores["model"]))
        table.add_column("benchmark")
        for model in models:
            table.add_column(model, justify="right")
        for benchmark, part in scores.groupby("benchmark", sort=False):
            by_model = dict(zip(part["model"], part["score"], strict=True))
            table.add_row(benchmark, *(f"{by_model[m]:.1f}" if m in by_model else "" for m in models))
        console.print(table)
    for skip in outcome.skipped:
        who = "" if skip.model == "*" else f" for {skip.model}"
        console.print(
            f"[yellow]skipped[/yellow] {skip.task} on {skip.dataset}{who}: {skip.reason}", highlight=False
        )
    console.print(f"results, summary and report written to {outcome.out}")


# Options shared by `run-all` and `run` (typer needs them spelled out per command).
_MODEL = typer.Option(..., "--model", "-m", help=MODEL_HELP)
_DATA = typer.Option(None, "--data-root", envvar=DATA_ROOT_VARIABLE, help=DATA_HELP, show_envvar=False)
_OUT = typer.Option(..., "--out", "-o", help="Output folder (created; earlier results there are merged).")
_SEEDS = typer.Option(
    None, "--seeds", help="Seeds for the linear probe and reconstruction (default 5; 2 with --quick)."
)
_QUICK = typer.Option(False, "--quick", help="Small subsets, 2 seeds, short training, no kNN grid.")
_IMG = typer.Option(224, "--img-size", help="Images are resized to this square size before the encoder.")
_MANIFEST = typer.Option(None, "--manifest", help="A manifest CSV/parquet of your own images (repeatable).")
_DATASET = typer.Option(None, "--dataset", "-d", help="Only these datasets (by name; repeatable).")
_GRID = typer.Option(False, "--knn-grid", help="Also report kNN accuracy over a grid of k and T.")
_PATCH = typer.Option(
    False, "--reconstruction-patch-tokens", help="Decode from the patch-token map, not CLS."
)
_MAX = typer.Option(None, "--max-images", help="At most this many images per split (seeded, stratified).")
_BATCH = typer.Option(64, "--batch-size", help="Images per encoder batch.")
_WORKERS = typer.Option(4, "--workers", help="Threads decoding image files.")
_DEVICE = typer.Option("cpu", "--device", help="torch device for the encoder, e.g. cpu or cuda.")


@app.command("run-all")
def run_all_command(
    models: list[str] = _MODEL,
    data_root: Path | None = _DATA,
    out: Path = _OUT,
    tasks: list[str] | None = typer.Option(
        None, "--tasks", help=f"Tasks to run (comma-separated or repeated; default all: {', '.join(TASKS)})."
    ),
    seeds: int | None = _SEEDS,
    quick: bool = _QUICK,
    img_size: int = _IMG,
    manifests: list[Path] | None = _MANIFEST,
    datasets: list[str] | None = _DATASET,
    knn_grid: bool = _GRID,
    patch_tokens: bool = _PATCH,
    max_images: int | None = _MAX,
    batch_size: int = _BATCH,
    workers: int = _WORKERS,
    device: str = _DEVICE,
) -> None:
    """Run every task whose data is present, for every model; write tables and the report."""
    _execute(
        _split_tasks(tasks, TASKS), models, data_root, out, seeds, quick, img_size, manifests or [],
        datasets or None, knn_grid, patch_tokens, max_images, batch_size, workers, device,
    )  # fmt: skip


@app.command("run")
def run_command(
    task: str = typer.Argument(..., help="; ".join(f"{name}: {text}" for name, text in TASK_HELP.items())),
    models: list[str] = _MODEL,
    data_root: Path | None = _DATA,
    out: Path = _OUT,
    seeds: int | None = _SEEDS,
    quick: bool = _QUICK,
    img_size: int = _IMG,
    manifests: list[Path] | None = _MANIFEST,
    datasets: list[str] | None = _DATASET,
    knn_grid: bool = _GRID,
    patch_tokens: bool = _PATCH,
    max_images: int | None = _MAX,
    batch_size: int = _BATCH,
    workers: int = _WORKERS,
    device: str = _DEVICE,
) -> None:
    """Run one task; its rows replace earlier rows of the same task in OUT, and the report is rebuilt."""
    _execute(
        _split_tasks([task], TASKS), models, data_root, out, seeds, quick, img_size, manifests or [],
        datasets or None, knn_grid, patch_tokens, max_images, batch_size, workers, device,
    )  # fmt: skip


@app.command("report")
def report_command(
    out: Path = typer.Argument(..., help="An output folder written by run-all or run."),
) -> None:
    """Rebuild report.md, report.html and the figures from OUT's results."""
    from chadavit_bench.report import ReportError, build_report

    try:
        files = build_report(out)
    except ReportError as error:
        _fail(str(error))
    console.print(f"wrote {files.markdown} and {files.html} ({len(files.figures)} figures)")


@app.command("compare")
def compare_command(
    out: Path = typer.Argument(..., help="An output folder written by run-all or run."),
    model: str = typer.Argument(..., help="Label of the model under test, as in the report."),
    baseline: str = typer.Argument(..., help="Label of the model to beat, e.g. random-init."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Also write the comparison table here."),
    features: str = typer.Option(
        "cls", "--features", help="Embedding to compare where a task ran on several: cls or tokens."
    ),
) -> None:
    """MODEL against BASELINE on every headline score both have: difference, seed spread, verdict."""
    from chadavit.atomic import atomic_write_text
    from chadavit_bench.compare import compare_run
    from chadavit_bench.report import ReportError

    try:
        comparison, outcome = compare_run(out, model, baseline, features)
    except (ReportError, ValueError) as error:
        _fail(str(error))
    table = Table(title=f"{model} vs {baseline} (scores 0-100, {features} features)")
    for column in ("benchmark", model, baseline, "difference", "vs seed spread", "outcome"):
        table.add_column(column)
    for row in comparison.itertuples(index=False):
        table.add_row(
            row.benchmark,
            f"{row.model:.1f}",
            f"{row.baseline:.1f}",
            f"{row.difference:+.1f}",
            row.seed_spread,
            row.outcome,
        )
    console.print(table)
    console.print(outcome.sentence())
    if csv_path is not None:
        atomic_write_text(csv_path, comparison.to_csv(index=False))


@app.command("datasets")
def datasets_command(
    data_root: Path | None = _DATA,
    manifests: list[Path] | None = _MANIFEST,
) -> None:
    """List the datasets found under the data root, and for the others what is missing."""
    found, missing = discover(data_root, manifests or [])
    table = Table(title=f"Datasets under {data_root}")
    for column in ("dataset", "status", "images", "channels", "details"):
        table.add_column(column)
    for name, dataset in found.items():
        table.add_row(name, "found", str(len(dataset)), ", ".join(dataset.channel_names), dataset.kind)
    for name, reason in missing.items():
        table.add_row(name, "missing", "", "", reason)
    console.print(table)


@app.command("synthetic")
def synthetic_command(
    out: Path = typer.Argument(..., help="Data root to write the synthetic datasets into."),
    image_size: int = typer.Option(32, "--image-size", help="Side of the synthetic images in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw."),
    scale: int = typer.Option(
        1,
        "--scale",
        min=1,
        help="Multiply every dataset's size: 1 is 6 train and 3 eval images per class, 60 NF-kB, "
        "60 BBBC021 and 40 Bray images.",
    ),
    pretraining_images: int = typer.Option(
        0,
        "--pretraining-images",
        min=0,
        help="Also write this many unlabelled images as idrcell shards in OUT/pretraining, for "
        "chadavit-train --data OUT/pretraining (same generators, another random stream).",
    ),
) -> None:
    """Write synthetic datasets in every public layout (for trying the suite without downloads)."""
    from chadavit_bench.datasets.synthetic import (
        SyntheticConfig,
        scaled,
        write_pretraining_shards,
        write_synthetic,
    )

    config = scaled(SyntheticConfig(image_size=image_size, seed=seed), scale)
    written = write_synthetic(out, config=config)
    console.print(f"wrote {len(written)} synthetic datasets under {out}: {', '.join(written)}")
    if pretraining_images:
        keys = write_pretraining_shards(out / "pretraining", pretraining_images, image_size, seed)
        console.print(f"wrote {len(keys)} unlabelled pretraining images under {out / 'pretraining'}")
