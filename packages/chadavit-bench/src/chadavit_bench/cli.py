"""The `chadavit-bench` command line. It only parses arguments, calls library functions and reports."""

from __future__ import annotations

import dataclasses
import enum
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chadavit_bench import __version__
from chadavit_bench.datasets import DATA_ROOT_VARIABLE, DatasetFormatError, DatasetNotFoundError, discover
from chadavit_bench.models import ModelSpecError, parse_model_spec
from chadavit_bench.tasks import REGISTRY, TASK_HELP, TASKS

if TYPE_CHECKING:
    from chadavit_bench.config import BenchConfig

app = typer.Typer(
    name="chadavit-bench",
    help="Evaluate channel-adaptive microscopy encoders on downstream biological tasks.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help, as the three CLIs share (README "Command-line conventions")
)
console = Console()
errors = Console(stderr=True)

MODEL_HELP = (
    "Model to evaluate (repeat for several): a model directory (config.json + model.safetensors), "
    "an authors' .ckpt (?weights=teacher; num_heads=2 unless given, as the authors' scripts), or a "
    "registry name at seeded random init, "
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
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="Log more (-v steps and a failure's traceback, -vv debug)."
        ),
    ] = 0,
) -> None:
    """Evaluate channel-adaptive microscopy encoders on downstream biological tasks."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")


def _fail(message: str, code: int = 2) -> None:
    # One line, paths unbroken; the message is text, never markup (a path may hold brackets).
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _split_tasks(values: list[str] | None) -> list[str]:
    all_tasks = tuple(REGISTRY)
    if not values:
        return list(all_tasks)
    tasks = [t.strip() for value in values for t in value.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in all_tasks]
    if unknown:
        _fail(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(all_tasks)}")
    return list(dict.fromkeys(tasks))


# Options shared by `run-all` and `run`, each declared once.
Models = Annotated[list[str], typer.Option("--model", "-m", help=MODEL_HELP)]
DataRoot = Annotated[
    Path | None, typer.Option("--data-root", envvar=DATA_ROOT_VARIABLE, help=DATA_HELP, show_envvar=False)
]
Out = Annotated[
    Path, typer.Option("--out", "-o", help="Output folder (created; earlier results there are merged).")
]
Seeds = Annotated[
    int | None,
    typer.Option(
        "--seeds", min=1, help="Seeds for the linear probe and reconstruction (default 5; 2 with --quick)."
    ),
]
Quick = Annotated[bool, typer.Option("--quick", help="Small subsets, 2 seeds, short training, no kNN grid.")]
ImgSize = Annotated[
    int, typer.Option("--img-size", min=1, help="Images are resized to this square size before the encoder.")
]


class IntensityChoice(enum.StrEnum):
    dataset = "dataset"
    dtype = "dtype"
    minmax = "minmax"
    raw = "raw"
    clip255 = "clip255"


IntensityOption = Annotated[
    IntensityChoice | None,
    typer.Option(
        "--intensity",
        help="How pixels are scaled: dataset (the default: per-channel percentiles of the fit split; "
        "keeps brightness differences between images), dtype (uint8 / 255, uint16 / 65535), minmax "
        "(per image; erases intensity phenotypes), raw (unscaled) or clip255 (clipped to 0-255, / 255). "
        "Given, it applies to every dataset, also under --protocol paper (which otherwise scales each "
        "dataset as the authors did). docs/bench.md.",
        show_default=False,
    ),
]
Manifests = Annotated[
    list[Path] | None,
    typer.Option("--manifest", help="A manifest CSV/parquet of your own images (repeatable)."),
]
Datasets = Annotated[
    list[str] | None, typer.Option("--dataset", "-d", help="Only these datasets (by name; repeatable).")
]
KnnGrid = Annotated[bool, typer.Option("--knn-grid", help="Also report kNN accuracy over a grid of k and T.")]
PatchTokens = Annotated[
    bool, typer.Option("--reconstruction-patch-tokens", help="Decode from the patch-token map, not CLS.")
]
MaxImages = Annotated[
    int | None,
    typer.Option("--max-images", min=1, help="At most this many images per split (seeded, stratified)."),
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Images per encoder batch.")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Threads decoding image files.")]
Device = Annotated[str, typer.Option("--device", help="torch device for the encoder, e.g. cpu or cuda.")]


class ChammiDistance(enum.StrEnum):
    l2 = "l2"
    cosine = "cosine"


ChammiMetric = Annotated[
    ChammiDistance,
    typer.Option(
        "--chammi-metric",
        help="CHAMMI 1-NN distance: l2 (the official default) or cosine (as DiChaViT, ChA-MAEViT).",
    ),
]


class RegressionHead(enum.StrEnum):
    ridge = "ridge"
    linear_mse = "linear_mse"


RegressionHeadOption = Annotated[
    RegressionHead | None,
    typer.Option(
        "--regression-head",
        help="ridge (default) or linear_mse (the authors' nn.Linear + MSE head; --protocol paper's).",
    ),
]
ReconstructionSize = Annotated[
    int | None,
    typer.Option(
        "--reconstruction-size",
        min=4,
        help="Side of the reconstruction target in pixels, 4 times a power of two (default 32, the "
        "project's choice: the authors' code has no reconstruction task).",
    ),
]


class ProtocolChoice(enum.StrEnum):
    default = "default"
    paper = "paper"


ProtocolOption = Annotated[
    ProtocolChoice,
    typer.Option(
        "--protocol",
        help="default (the project's evaluation) or paper (the authors': kNN sweep, Resize 256 + "
        "CenterCrop 224, BloodMNIST at 28 px; docs/bench.md).",
    ),
]


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What `run-all` and `run` were asked to do, as parsed from the command line."""

    tasks: list[str]
    models: list[str]
    data_root: Path | None
    out: Path
    seeds: int | None = None
    quick: bool = False
    img_size: int = 224
    intensity: str | None = None  # None: "dataset", or the protocol's per-dataset modes
    manifests: list[Path] = dataclasses.field(default_factory=list)
    datasets: list[str] | None = None
    knn_grid: bool = False
    patch_tokens: bool = False
    max_images: int | None = None
    batch_size: int = 64
    workers: int = 4
    device: str = "cpu"
    chammi_metric: str = "l2"
    protocol: str = "default"
    regression_head: str | None = None
    reconstruction_size: int | None = None

    def config(self) -> BenchConfig:
        from chadavit_bench.config import BenchConfig, quick_config  # protocols: only when a run starts
        from chadavit_bench.protocol import apply_protocol

        config = BenchConfig(
            img_size=self.img_size,
            intensity=IntensityChoice(self.intensity or "dataset").value,
            knn_grid=self.knn_grid,
            max_images_per_split=self.max_images,
            batch_size=self.batch_size,
            workers=self.workers,
            device=self.device,
            chammi_metric=ChammiDistance(self.chammi_metric).value,
        )
        config = dataclasses.replace(
            config,
            reconstruction=dataclasses.replace(config.reconstruction, use_patch_tokens=self.patch_tokens),
        )
        if self.quick:
            config = quick_config(config, self.seeds)
        elif self.seeds is not None:
            config = dataclasses.replace(config, seeds=self.seeds)
        config = apply_protocol(config, ProtocolChoice(self.protocol).value)
        if self.intensity is not None:  # an explicit mode wins over the protocol's per-dataset ones
            config = dataclasses.replace(config, dataset_intensity=())
        if self.regression_head is not None:  # an explicit head wins over the protocol's
            head = RegressionHead(self.regression_head).value
            config = dataclasses.replace(config, regression=dataclasses.replace(config.regression, head=head))
        if self.reconstruction_size is not None:
            size = self.reconstruction_size
            if size < 4 or size & (size - 1):  # the decoder doubles a 4 x 4 map
                raise ValueError(f"--reconstruction-size must be a power of two >= 4 (16, 32...), got {size}")
            config = dataclasses.replace(
                config, reconstruction=dataclasses.replace(config.reconstruction, target_size=size)
            )
        return config


def _execute(request: RunRequest) -> None:
    from chadavit_bench.results import ResultsError
    from chadavit_bench.runjson import RunFileError
    from chadavit_bench.runner import BenchRunError, OutputFolderError, run_all
    from chadavit_bench.runner import Progress as Hooks

    try:
        specs = [parse_model_spec(text) for text in request.models]
    except ModelSpecError as error:
        _fail(str(error))
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
            outcome = run_all(
                specs,
                request.data_root,
                request.out,
                request.config(),
                request.tasks,
                request.manifests,
                request.datasets,
                hooks,
            )
        except BenchRunError as error:  # the run started and failed
            bar.stop()
            logging.getLogger(__name__).info("run failed", exc_info=True)  # the traceback, with --verbose
            _fail(str(error), code=1)
        except (
            ModelSpecError,
            DatasetNotFoundError,
            DatasetFormatError,
            OutputFolderError,
            ResultsError,
            RunFileError,
            ValueError,
        ) as error:  # an input the user named is unusable; nothing was evaluated
            bar.stop()
            logging.getLogger(__name__).info("run refused", exc_info=True)
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
        what = "" if skip.task == "*" else f"{skip.task} on "
        console.print(
            f"[yellow]skipped[/yellow] {escape(what + skip.dataset + who)}: {escape(skip.reason)}",
            highlight=False,
        )
    for flag in outcome.warnings:
        what = f"{flag.task} on {flag.dataset} for {flag.model} ({flag.features})"
        console.print(f"[yellow]warning[/yellow] {escape(what)}: {escape(flag.reason)}", highlight=False)
    console.print(f"results and summary written to {escape(str(outcome.out))}", highlight=False)
    console.print(f"report: {escape(str(outcome.out / 'report.html'))}", highlight=False, soft_wrap=True)


TasksOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tasks", help=f"Tasks to run (comma-separated or repeated; default all: {', '.join(TASKS)})."
    ),
]


@app.command("run-all")
def run_all_command(
    models: Models,
    out: Out,
    data_root: DataRoot = None,
    tasks: TasksOption = None,
    seeds: Seeds = None,
    quick: Quick = False,
    img_size: ImgSize = 224,
    intensity: IntensityOption = None,
    manifests: Manifests = None,
    datasets: Datasets = None,
    knn_grid: KnnGrid = False,
    patch_tokens: PatchTokens = False,
    max_images: MaxImages = None,
    batch_size: BatchSize = 64,
    workers: Workers = 4,
    device: Device = "cpu",
    chammi_metric: ChammiMetric = ChammiDistance.l2,
    protocol: ProtocolOption = ProtocolChoice.default,
    regression_head: RegressionHeadOption = None,
    reconstruction_size: ReconstructionSize = None,
) -> None:
    """Run every task whose data is present, for every model; write tables and the report."""
    # Every other parameter is the RunRequest field of the same name.
    options = {k: v for k, v in locals().items() if k not in ("tasks", "manifests", "datasets")}
    _execute(RunRequest(_split_tasks(tasks), manifests=manifests or [], datasets=datasets or None, **options))


@app.command("run")
def run_command(
    task: Annotated[
        str, typer.Argument(help="; ".join(f"{name}: {text}" for name, text in TASK_HELP.items()))
    ],
    models: Models,
    out: Out,
    data_root: DataRoot = None,
    seeds: Seeds = None,
    quick: Quick = False,
    img_size: ImgSize = 224,
    intensity: IntensityOption = None,
    manifests: Manifests = None,
    datasets: Datasets = None,
    knn_grid: KnnGrid = False,
    patch_tokens: PatchTokens = False,
    max_images: MaxImages = None,
    batch_size: BatchSize = 64,
    workers: Workers = 4,
    device: Device = "cpu",
    chammi_metric: ChammiMetric = ChammiDistance.l2,
    protocol: ProtocolOption = ProtocolChoice.default,
    regression_head: RegressionHeadOption = None,
    reconstruction_size: ReconstructionSize = None,
) -> None:
    """Run one task; its rows replace earlier rows of the same task in OUT, and the report is rebuilt."""
    # Every other parameter is the RunRequest field of the same name.
    options = {k: v for k, v in locals().items() if k not in ("task", "manifests", "datasets")}
    _execute(
        RunRequest(_split_tasks([task]), manifests=manifests or [], datasets=datasets or None, **options)
    )


# An input: the results folder run-all or run wrote (inputs are positional, outputs -o/--out).
ResultsFolder = Annotated[
    Path, typer.Argument(metavar="RESULTS", help="A results folder written by run-all or run (its --out).")
]


def _results_errors() -> tuple[type[Exception], ...]:
    from chadavit_bench.report import ReportError
    from chadavit_bench.results import ResultsError
    from chadavit_bench.runjson import RunFileError

    return ReportError, ResultsError, RunFileError


@app.command("report")
def report_command(results: ResultsFolder) -> None:
    """Rebuild report.md, report.html and the figures in RESULTS from its results."""
    from chadavit_bench.report import build_report

    try:
        files = build_report(results)
    except _results_errors() as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"writing the report under {results} failed: {error}", code=1)
    console.print(f"wrote {files.markdown} and {files.html} ({len(files.figures)} figures)")


@app.command("compare")
def compare_command(
    results: ResultsFolder,
    model: Annotated[str, typer.Argument(help="Label of the model under test, as in the report.")],
    baseline: Annotated[str, typer.Argument(help="Label of the model to beat, e.g. random-init.")],
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write the comparison table here.")
    ] = None,
    features: Annotated[
        str,
        typer.Option("--features", help="Embedding to compare where a task ran on several: cls or tokens."),
    ] = "cls",
    in_report: Annotated[
        bool,
        typer.Option(
            "--in-report",
            help="Also put the verdict at the top of RESULTS' report (rebuilt now and at every rebuild).",
        ),
    ] = False,
    note: Annotated[
        str, typer.Option("--note", help="With --in-report: a note under the verdict saying what the run is.")
    ] = "",
) -> None:
    """MODEL against BASELINE on every headline score both have: difference, seed spread, verdict."""
    from chadavit.atomic import atomic_write_text
    from chadavit_bench.compare import compare_run
    from chadavit_bench.report import build_report
    from chadavit_bench.report.verdict import ComparisonRequest, write_request

    if csv_path is not None and (csv_path.is_dir() or not csv_path.absolute().parent.is_dir()):
        _fail(f"--csv {csv_path} must be a file in an existing folder")
    if note and not in_report:
        _fail("--note goes with --in-report (it is shown under the verdict in the report)")
    try:
        comparison, outcome = compare_run(results, model, baseline, features)
    except (*_results_errors(), ValueError) as error:
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
    if csv_path is not None:
        try:
            atomic_write_text(csv_path, comparison.to_csv(index=False))
        except OSError as error:
            _fail(f"cannot write --csv {csv_path}: {error}", code=1)
    if in_report:
        try:
            write_request(results, ComparisonRequest(model, baseline, features, note))
            files = build_report(results)
        except OSError as error:
            _fail(f"writing the report under {results} failed: {error}", code=1)
        console.print(f"verdict at the top of {files.html}")
    # Last, so that a script's output ends with the answer.
    console.print(outcome.sentence())


@app.command("datasets")
def datasets_command(data_root: DataRoot = None, manifests: Manifests = None) -> None:
    """List the datasets found under the data root, and for the others what is missing."""
    if data_root is None and not manifests:
        _fail(f"no data root: pass --data-root DIR or set ${DATA_ROOT_VARIABLE}")
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
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Data root to write the synthetic datasets into (created).")
    ],
    image_size: Annotated[
        int, typer.Option("--image-size", min=8, help="Side of the synthetic images in pixels.")
    ] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    scale: Annotated[
        int,
        typer.Option(
            "--scale",
            min=1,
            help="Multiply every dataset's size: 1 is 6 train and 3 eval images per class, 60 NF-kB, "
            "60 BBBC021 and 40 Bray images.",
        ),
    ] = 1,
    pretraining_images: Annotated[
        int,
        typer.Option(
            "--pretraining-images",
            min=0,
            help="Also write this many unlabelled images as idrcell shards in OUT/pretraining, for "
            "chadavit-train --data OUT/pretraining (same generators, another random stream).",
        ),
    ] = 0,
) -> None:
    """Write synthetic datasets in every public layout (for trying the suite without downloads)."""
    from chadavit_bench.datasets.synthetic import (
        SyntheticConfig,
        scaled,
        write_pretraining_shards,
        write_synthetic,
    )

    if out.exists() and not out.is_dir():
        _fail(f"{out} is a file; give a folder (it is created if absent)")
    config = scaled(SyntheticConfig(image_size=image_size, seed=seed), scale)
    try:
        written = write_synthetic(out, config=config)
        console.print(f"wrote {len(written)} synthetic datasets under {out}: {', '.join(written)}")
        if pretraining_images:
            keys = write_pretraining_shards(out / "pretraining", pretraining_images, image_size, seed)
            console.print(f"wrote {len(keys)} unlabelled pretraining images under {out / 'pretraining'}")
    except OSError as error:
        _fail(f"writing under {out} failed: {error}", code=1)
