"""The `idrcell` command line. It only parses arguments, calls library functions and reports."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from idrcell import __version__
from idrcell.client import BASE_URL_ENV, DEFAULT_BASE_URL, ClientConfig
from idrcell.dataset import ShardLimits
from idrcell.emulator.cli import emulator_command
from idrcell.executors import ExecutorKind, response_cap_bytes
from idrcell.experiments import Experiment, ExperimentListError, find_experiment, load_experiments
from idrcell.stage import StageConfig
from idrcell.testpoint import requested_pause
from idrcell.zarr_resolve import DEFAULT_ZARR_BASE_URL, ZARR_BASE_URL_ENV
from idrcell.zarr_source import PIXEL_SOURCES

app = typer.Typer(
    name="idrcell",
    help="Build multi-channel 224 x 224 WebDataset shards from the Image Data Resource (IDR).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help, as the three CLIs share (README "Command-line conventions")
)
experiments_app = typer.Typer(
    help="Experiment lists: the curated default, and validation.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(experiments_app, name="experiments")
app.command("emulator")(emulator_command)

console = Console()
errors = Console(stderr=True)

# Options shared by several commands, each declared once; a command gives its default beside it.
Experiments = Annotated[
    Path, typer.Option("--experiments", "-e", help="Experiment list CSV (study,container,id,n_images,...).")
]
Out = Annotated[
    Path,
    typer.Option("--out", "-o", help="Output directory (staging/, shards/, index.parquet, dataset.json)."),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the sampling and of the global shuffle.")]
BaseUrl = Annotated[str, typer.Option("--base-url", envvar=BASE_URL_ENV, help="IDR (or emulator) base URL.")]
Concurrency = Annotated[
    int, typer.Option("--concurrency", min=1, help="Most requests in flight at once, over all jobs.")
]
Timeout = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds before one request counts as timed out.")
]
Retries = Annotated[
    int, typer.Option("--retries", min=0, help="Retries of a request after transient errors.")
]
MaxChannels = Annotated[
    int, typer.Option("--max-channels", min=1, help="Skip images with more channels than this.")
]
PixelSource = Annotated[
    str,
    typer.Option(
        "--pixel-source",
        help="auto: render_image where the server still renders (imgData answers sizes), OME-Zarr where "
        "it answers an Exception (the IDR since 2026); zarr or render: only that source.",
    ),
]
ZarrBaseUrl = Annotated[
    str,
    typer.Option(
        "--zarr-base-url",
        envvar=ZARR_BASE_URL_ENV,
        help="Base URL of the OME-Zarr copies (the IDR's object store, or an emulator's /idr/zarr).",
    ),
]
MaxResponseMb = Annotated[
    float,
    typer.Option(
        "--max-response-mb",
        help="Largest answer body read from the server or the OME-Zarr store, in MiB (fractions allowed); "
        "a larger one skips its image as response_too_large.",
    ),
]
ShardSamples = Annotated[int, typer.Option("--max-shard-samples", min=1, help="Most samples in one shard.")]
ShardBytes = Annotated[int, typer.Option("--max-shard-bytes", min=1, help="Most bytes in one shard.")]
ImportJobs = Annotated[
    int,
    typer.Option(
        "--jobs", "-j", min=1, help="Processes decoding images (the output bytes do not depend on it)."
    ),
]
ImportWindow = Annotated[
    str,
    typer.Option(
        "--window",
        help="Window of a channel the manifest gives none: percentiles (its 0.1-99.9 percentiles), "
        "dtype (the pixel type's whole range: 8-bit images are kept as they are), minmax (its min and "
        "max) or bench (dtype for 8-bit pixels, else minmax: how chadavit-bench reads images).",
    ),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"idrcell {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more (-v info, -vv debug).")
    ] = 0,
) -> None:
    """Build multi-channel 224 x 224 WebDataset shards from the Image Data Resource (IDR)."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:  # tests only (testpoint.py): a malformed pause request is a usage error before any work
        requested_pause()
    except ValueError as error:
        raise _fail(escape(str(error)), USAGE_ERROR) from None


# Exit codes, the same in the three CLIs (README.md, "Exit codes"): 0 success; USAGE_ERROR when the
# command line, or a file or setting it names, is unusable and nothing was done; RUN_FAILED when the
# work started and failed. `idrcell stage` keeps the meaning its HTCondor job relies on (its docstring).
RUN_FAILED, USAGE_ERROR = 1, 2


def _fail(message: str, code: int) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load_list(path: Path) -> list[Experiment]:
    try:
        return load_experiments(path)
    except ExperimentListError as error:
        raise _fail(str(error), USAGE_ERROR) from None


def _dataset_dir(path: Path) -> Path:
    if not path.is_dir():
        raise _fail(f"{path} is not a directory; give the dataset folder (with dataset.json)", USAGE_ERROR)
    return path


def _stage_config(
    seed: int,
    base_url: str,
    concurrency: int,
    timeout: float,
    retries: int,
    max_channels: int,
    pixel_source: str = "auto",
    zarr_base_url: str = DEFAULT_ZARR_BASE_URL,
    max_response_mb: float = 64.0,
) -> StageConfig:
    if pixel_source not in PIXEL_SOURCES:
        raise _fail(
            f"--pixel-source must be one of {', '.join(PIXEL_SOURCES)}, got {pixel_source!r}", USAGE_ERROR
        )
    max_response_bytes = response_cap_bytes(str(max_response_mb))
    if max_response_bytes is None:
        raise _fail(f"--max-response-mb must be a positive number of MiB, got {max_response_mb}", USAGE_ERROR)
    client = ClientConfig(
        base_url=base_url,
        concurrency=concurrency,
        timeout_s=timeout,
        max_retries=retries,
        seed=seed,
        max_response_bytes=max_response_bytes,
    )
    return StageConfig(
        seed=seed,
        max_channels=max_channels,
        client=client,
        pixel_source=pixel_source,
        zarr_base_url=zarr_base_url,
    )


# -- experiments -------------------------------------------------------------------------------
@experiments_app.command("default")
def experiments_default() -> None:
    """Print the default list: the paper-era experiments the IDR can serve since 2026 (OME-Zarr)."""
    from idrcell.zarr_catalogue import fetchable_default_csv_text

    typer.echo(fetchable_default_csv_text(), nl=False)


@experiments_app.command("paper")
def experiments_paper() -> None:
    """Print the paper-era list (the 79 experiments of IDRCell100k, curated against the classic IDR)."""
    from idrcell.default_list import default_experiments_csv_text

    typer.echo(default_experiments_csv_text(), nl=False)


@experiments_app.command("zarr-coverage")
def experiments_zarr_coverage(
    path: Annotated[
        Path | None, typer.Argument(help="Experiment list CSV (default: the default list).")
    ] = None,
) -> None:
    """How many experiments of a list have a known OME-Zarr copy (data/zarr_studies.csv, 2026 facts)."""
    from idrcell.default_list import default_experiments_csv_text
    from idrcell.experiments import parse_experiments
    from idrcell.zarr_catalogue import zarr_coverage

    rows = _load_list(path) if path is not None else parse_experiments(default_experiments_csv_text())
    covered = zarr_coverage(rows)
    for experiment in rows:
        known = covered.get(experiment.name)
        typer.echo(f"{experiment.omero_name}\t{known or '-'}")
    typer.echo(
        f"{sum(1 for v in covered.values() if v)} of {len(rows)} experiments have a known OME-Zarr copy"
    )


@experiments_app.command("check")
def experiments_check(path: Annotated[Path, typer.Argument(help="Experiment list CSV to validate.")]) -> None:
    """Validate an experiment list and show what it asks for; exit 2 listing every problem."""
    experiments = _load_list(path)
    table = Table(title=f"{len(experiments)} experiments in {path}")
    for column in ("study", "container", "kind", "id", "n_images", "channels", "z", "t"):
        table.add_column(column)
    for e in experiments:
        channels = ";".join(map(str, e.channels)) if e.channels else "all"
        table.add_row(e.study, e.container, e.kind, *(str(v) for v in (e.id, e.n_images, channels, e.z, e.t)))
    console.print(table)


# -- stage / merge / build ---------------------------------------------------------------------
def _staging_bars(targets: dict[str, int]):
    from idrcell.cli_report import StageBars

    return StageBars(console, targets)


def _report_stages(results, out: Path, seconds: float) -> None:
    from idrcell.cli_report import failure_logs, stage_table, totals_line

    console.print(stage_table(results))
    console.print(totals_line(results, seconds), highlight=False)
    for result in results:
        if result.error:
            errors.print(f"[red]{result.name}:[/red] {result.error}", highlight=False)
        elif result.short:
            console.print(
                f"[yellow]{result.name}: only {result.selected} usable images of {result.requested} "
                "asked for; all were taken[/yellow]",
                highlight=False,
            )
    logs = failure_logs(out, results)
    if logs:
        console.print(
            f"skipped and failed images are logged in: {', '.join(str(p) for p in logs)}", highlight=False
        )


@app.command()
def stage(
    experiments: Experiments,
    study: Annotated[str, typer.Option("--study", help="Study of the experiment to stage, as in the list.")],
    container: Annotated[
        str, typer.Option("--container", help="Container of the experiment, as in the list.")
    ],
    out: Out,
    seed: Seed = 0,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    concurrency: Concurrency = 8,
    timeout: Timeout = 60.0,
    retries: Retries = 8,
    max_channels: MaxChannels = 10,
    pixel_source: PixelSource = "auto",
    zarr_base_url: ZarrBaseUrl = DEFAULT_ZARR_BASE_URL,
    max_response_mb: MaxResponseMb = 64.0,
) -> None:
    """Stage one experiment of a list (one independent, resumable job) into OUT/staging/.

    Exit code 0: staged. 1: stopped by something transient; run it again to resume. 2: bad input
    that rerunning cannot fix (HTCondor holds such a job; see docs/condor.md)."""
    from idrcell.condor import CondorError
    from idrcell.executors import EXIT_BAD_INPUT, exit_code, make_jobs, run_job

    rows = _load_list(experiments)  # USAGE_ERROR is EXIT_BAD_INPUT: HTCondor holds the job
    try:
        experiment = find_experiment(rows, study, container)
    except KeyError as error:
        raise _fail(f"{experiments}: {error.args[0]}", EXIT_BAD_INPUT) from None
    config = _stage_config(
        seed,
        base_url,
        concurrency,
        timeout,
        retries,
        max_channels,
        pixel_source,
        zarr_base_url,
        max_response_mb,
    )
    try:
        (job,) = make_jobs([experiment], experiments, out, config)
    except CondorError as error:
        raise _fail(str(error), EXIT_BAD_INPUT) from None
    started = time.monotonic()
    with _staging_bars({experiment.name: experiment.n_images}) as bars:
        result = run_job(job, bars.update)
    _report_stages([result], out, time.monotonic() - started)
    if result.already_done:
        console.print(f"Nothing to do: {experiment.omero_name} is already staged in {out}.")
    if not result.complete:
        hint = "" if result.error else "; run the same command again to retry them"
        raise _fail(
            f"{experiment.omero_name} did not finish ({result.failed} images failed{hint})", exit_code(result)
        )


def _merge_bar():
    return Progress(
        TextColumn("writing shards"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
def merge(
    experiments: Experiments,
    out: Out,
    seed: Seed = 0,
    max_shard_samples: ShardSamples = 2000,
    max_shard_bytes: ShardBytes = 1_000_000_000,
) -> None:
    """Combine the staged experiments of a list into shuffled shards, index.parquet and dataset.json."""
    from idrcell.merge import MergeError, merge_stages

    rows = _load_list(experiments)
    with _merge_bar() as bar:
        task = bar.add_task("merge", total=None)
        try:
            result = merge_stages(
                rows,
                out,
                seed=seed,
                limits=ShardLimits(max_shard_samples, max_shard_bytes),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except MergeError as error:  # raised before anything is written: OUT is not ready to merge
            raise _fail(str(error), USAGE_ERROR) from None
    _report_merge(result, out)


def _report_merge(result, out: Path) -> None:
    s = result.summary
    if result.already_done:
        console.print(f"Nothing to do: {out} is already complete ({s.samples} samples in {s.shards} shards).")
    else:
        console.print(
            f"Wrote {s.samples} samples ({s.channels} channels) in {s.shards} shards, "
            f"{s.bytes / 1e6:.1f} MB, to {out}.",
            highlight=False,
        )


@app.command()
def build(
    experiments: Experiments,
    out: Out,
    seed: Seed = 0,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Experiments staged at once (worker processes).")
    ] = 1,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    concurrency: Concurrency = 8,
    timeout: Timeout = 60.0,
    retries: Retries = 8,
    max_channels: MaxChannels = 10,
    max_shard_samples: ShardSamples = 2000,
    max_shard_bytes: ShardBytes = 1_000_000_000,
    pixel_source: PixelSource = "auto",
    zarr_base_url: ZarrBaseUrl = DEFAULT_ZARR_BASE_URL,
    max_response_mb: MaxResponseMb = 64.0,
    executor: Annotated[
        ExecutorKind,
        typer.Option(
            "--executor",
            help="local: a process pool here (--jobs). condor: one HTCondor job per experiment through the "
            "local schedd (OUT and this environment on a shared filesystem; --concurrency is per job), "
            "then the merge here.",
        ),
    ] = ExecutorKind.local,
    condor_set: Annotated[
        list[str] | None,
        typer.Option(
            "--condor-set",
            metavar="NAME=VALUE",
            help="With --executor condor: a submit variable of condor/scrape.sub, e.g. memory=8GB "
            "(repeatable).",
        ),
    ] = None,
) -> None:
    """Stage every experiment of a list, then merge: the whole dataset. Kill it and rerun to resume."""
    from idrcell.build import build as run_build
    from idrcell.condor import CondorError
    from idrcell.dataset import OutputDirError
    from idrcell.merge import MergeError

    rows = _load_list(experiments)
    config = _stage_config(
        seed,
        base_url,
        concurrency,
        timeout,
        retries,
        max_channels,
        pixel_source,
        zarr_base_url,
        max_response_mb,
    )
    limits = ShardLimits(max_shard_samples, max_shard_bytes)
    variables = _assignments(condor_set or [])
    submitted = False

    def on_submit(cluster: int, count: int, logs: Path) -> None:
        nonlocal submitted
        submitted = True
        console.print(
            f"Submitted {count} stage jobs as HTCondor cluster {cluster} (logs in {logs}); "
            f"Ctrl-C stops following them, condor_rm {cluster} stops them.",
            highlight=False,
        )

    started = time.monotonic()
    try:
        with _staging_bars({e.name: e.n_images for e in rows}) as bars:
            if executor is ExecutorKind.condor:
                from idrcell.condor_pool import build_on_condor

                result = build_on_condor(
                    rows,
                    experiments,
                    out,
                    config,
                    limits,
                    progress=bars.update,
                    merge_progress=bars.merge_progress,
                    variables=variables,
                    on_submit=on_submit,
                )
            else:
                result = run_build(
                    rows,
                    experiments,
                    out,
                    config,
                    limits,
                    processes=jobs,
                    progress=bars.update,
                    merge_progress=bars.merge_progress,
                )
    except CondorError as error:
        # Before the schedd took jobs nothing ran: the list, a --condor-set value or the pool is unusable.
        raise _fail(str(error), RUN_FAILED if submitted else USAGE_ERROR) from None
    except MergeError as error:
        raise _fail(str(error), RUN_FAILED) from None
    except OutputDirError as error:  # checked before any job started
        raise _fail(str(error), USAGE_ERROR) from None
    _report_stages(result.stages, out, time.monotonic() - started)
    if not result.complete:
        from idrcell.executors import EXIT_BAD_INPUT, exit_code

        names = ", ".join(r.name for r in result.unfinished)
        # Rerunning cannot fix bad input (an unknown study, a row the server cannot serve): say so.
        bad_input = all(exit_code(r) == EXIT_BAD_INPUT for r in result.unfinished)
        hint = (
            "fix the experiment list (see the errors above)"
            if bad_input
            else "run the same command again to resume them"
        )
        raise _fail(f"{len(result.unfinished)} experiment(s) did not finish ({names}); {hint}", RUN_FAILED)
    _report_merge(result.merge, out)


def _assignments(pairs: list[str]) -> dict[str, str]:
    """`NAME=VALUE` words, as condor_submit takes them, as a dict."""
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise _fail(f"{pair!r} is not a NAME=VALUE submit variable assignment", USAGE_ERROR)
        values[name.strip()] = value.strip()
    return values


@app.command("condor-jobs")
def condor_jobs(
    experiments: Annotated[Path, typer.Argument(help="Experiment list CSV (the list=... of condor_submit).")],
    assignments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[NAME=VALUE]...", help="Submit variables as on the condor_submit command line."
        ),
    ] = None,
    submit_file: Annotated[
        Path | None,
        typer.Option(
            "--submit-file", help="Submit file to expand (default: the packaged copy of condor/scrape.sub)."
        ),
    ] = None,
) -> None:
    """Print the command line of every job `condor_submit condor/scrape.sub list=LIST ...` would queue,
    expanded by HTCondor's own parser; `idrcell build` runs the same commands locally."""
    import shlex

    from idrcell.condor import CondorError
    from idrcell.executors import condor_queue

    rows = _load_list(experiments)
    try:
        queued = condor_queue(rows, experiments, _assignments(assignments or []), submit_file)
    except CondorError as error:  # it only expands the submit file: any problem is in the input
        raise _fail(str(error), USAGE_ERROR) from None
    for job in queued:
        typer.echo(shlex.join(job.command))
    summary = f"{len(queued)} jobs for the {len(rows)} experiments of {experiments}"
    errors.print(summary, highlight=False, soft_wrap=True)


# -- checking and describing a dataset ---------------------------------------------------------
@app.command()
def verify(
    path: Annotated[Path, typer.Argument(help="Dataset directory (with dataset.json and shards/).")],
) -> None:
    """Check every shard, sample, checksum and the index against the idrcell-v1 contract."""
    from idrcell.verify import verify_dataset

    _dataset_dir(path)
    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("verify", total=None)
        report = verify_dataset(
            path, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    if report.ok:
        console.print(f"OK: {report.samples} samples in {report.shards} shards.")
        return
    for problem in report.problems:
        errors.print(problem, highlight=False, markup=False)
    raise _fail(f"{len(report.problems)} problems in {path}", RUN_FAILED)


@app.command()
def stats(
    path: Annotated[Path, typer.Argument(help="Dataset directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Counts per experiment, imaging method and channel count."""
    from idrcell.cli_report import stats_tables
    from idrcell.stats import StatsError, dataset_stats

    _dataset_dir(path)
    try:
        numbers = dataset_stats(path)
    except StatsError as error:  # a damaged dataset.json or index.parquet: the folder named is unusable
        raise _fail(str(error), USAGE_ERROR) from None
    if as_json:
        typer.echo(json.dumps(numbers, indent=1, sort_keys=True))
        return
    for table in stats_tables(numbers):
        console.print(table)


@app.command()
def probe(
    base_url: BaseUrl = DEFAULT_BASE_URL,
    zarr_base_url: ZarrBaseUrl = DEFAULT_ZARR_BASE_URL,
    image: Annotated[
        int | None, typer.Option("--image", help="Image id to try (default: the first listed).")
    ] = None,
) -> None:
    """Report which routes a server answers (API, imgData, render, thumbnail, Zarr store)."""
    import asyncio

    from idrcell.client import IDRError
    from idrcell.probe import probe as run_probe

    try:
        report = asyncio.run(run_probe(base_url, zarr_base_url, image))
    except (IDRError, OSError) as error:
        raise _fail(f"{base_url}: {error}", RUN_FAILED) from None
    table = Table(title=f"{base_url} (OME-Zarr: {zarr_base_url})")
    for column in ("route", "answers", "detail"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(check.route, "yes" if check.ok else "no", check.detail)
    console.print(table)
    console.print(f"--pixel-source auto would use: {report.pixel_source}", highlight=False)
    if not report.checks[0].ok:
        raise _fail(f"{base_url} does not answer the JSON API: {report.checks[0].detail}", RUN_FAILED)


@app.command("import-hf")
def import_hf(
    source: Annotated[
        Path, typer.Argument(help="Folder of the published IDRCell100k (holding imgs/part_<k>/).")
    ],
    out: Out,
    seed: Seed = 0,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            help="IDR study catalogue TSV mapping screen ids to studies (default: the shipped one).",
        ),
    ] = None,
    max_shard_samples: ShardSamples = 2000,
    max_shard_bytes: ShardBytes = 1_000_000_000,
) -> None:
    """Convert the authors' published per-channel PNGs into idrcell-v1 shards, index and dataset.json."""
    from idrcell.importhf import HFLayoutError
    from idrcell.importhf import import_hf as run_import

    result = _run_import(
        lambda progress: run_import(
            source,
            out,
            seed=seed,
            limits=ShardLimits(max_shard_samples, max_shard_bytes),
            catalogue=catalogue,
            progress=progress,
        ),
        usage_errors=(HFLayoutError,),
    )
    if result.ignored_files:
        console.print(f"[yellow]ignored {result.ignored_files} files that do not follow the layout[/yellow]")
    _report_import(result, out)


def _report_import(result, out: Path) -> None:
    """The summary lines of the import commands; skipped images one line each."""
    for key, reason in result.summary.skipped:  # also listed in dataset.json under "skipped"
        errors.print(f"skipped {key}: {reason}", highlight=False, markup=False, soft_wrap=True)
    s = result.summary
    if result.already_done:
        console.print(f"Nothing to do: {out} is already complete ({s.samples} samples in {s.shards} shards).")
    else:
        console.print(f"Imported {s.samples} images ({s.channels} channels) into {s.shards} shards in {out}.")


def _run_import(run, usage_errors: tuple[type[Exception], ...] = ()):
    """Run an importer under a progress bar and return its result.

    Input errors (`ImportInputError`, a bad OUT, and the importer's own `usage_errors`) are found
    before anything is written: usage errors, one line each. A failure reading or writing files is 1.
    """
    from idrcell.dataset import OutputDirError
    from idrcell.import_images import ImportInputError

    with _merge_bar() as bar:
        task = bar.add_task("import", total=None)
        try:
            return run(lambda done, total: bar.update(task, completed=done, total=total))
        except ImportInputError as error:
            bar.stop()
            for problem in error.problems[:-1]:
                errors.print(f"[red]error:[/red] {problem}", highlight=False, markup=True, soft_wrap=True)
            raise _fail(error.problems[-1], USAGE_ERROR) from None
        except (OutputDirError, *usage_errors) as error:
            raise _fail(str(error), USAGE_ERROR) from None
        except OSError as error:
            raise _fail(str(error), RUN_FAILED) from None


def _check_window(window: str) -> None:
    from idrcell.image_files import WINDOW_MODES

    if window not in WINDOW_MODES:
        raise _fail(f"--window must be one of {', '.join(WINDOW_MODES)}, got {window!r}", USAGE_ERROR)


@app.command("import-images")
def import_images(
    manifest: Annotated[Path, typer.Argument(help="CSV or parquet, one row per image (docs/builder.md).")],
    out: Out,
    seed: Seed = 0,
    study: Annotated[
        str | None,
        typer.Option("--study", help="Study name in keys and KEY.json (default: the manifest's name)."),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="Import only the rows of this split.")] = None,
    window: ImportWindow = "percentiles",
    allow_outside: Annotated[
        bool, typer.Option("--allow-outside", help="Read files outside the manifest's folder too.")
    ] = False,
    jobs: ImportJobs = 1,
    max_shard_samples: ShardSamples = 2000,
    max_shard_bytes: ShardBytes = 1_000_000_000,
) -> None:
    """Import your own images (per-channel files, stacks or tape images) into idrcell-v1 shards."""
    from idrcell.import_images import import_images as run_import

    _check_window(window)
    result = _run_import(
        lambda progress: run_import(
            manifest,
            out,
            seed=seed,
            limits=ShardLimits(max_shard_samples, max_shard_bytes),
            study=study,
            split=split,
            window_mode=window,
            allow_outside=allow_outside,
            jobs=jobs,
            progress=progress,
        ),
    )
    _report_import(result, out)


CHAMMI_SUBSETS = ("Allen", "HPA", "CP")


@app.command("import-chammi")
def import_chammi(
    source: Annotated[Path, typer.Argument(help="The unpacked CHAMMI folder (holding Allen/, HPA/, CP/).")],
    out: Out,
    split: Annotated[
        str, typer.Option("--split", help="The train_test_split value to import, or all.")
    ] = "Train",
    subset: Annotated[
        list[str], typer.Option("--subset", help="Sub-datasets to import (repeat the option).")
    ] = CHAMMI_SUBSETS,
    seed: Seed = 0,
    window: Annotated[
        str,
        typer.Option(
            "--window",
            help="bench (8-bit pixels as they are, others by min and max, as chadavit-bench reads "
            "them), percentiles, dtype or minmax.",
        ),
    ] = "bench",
    jobs: ImportJobs = 1,
    max_shard_samples: ShardSamples = 2000,
    max_shard_bytes: ShardBytes = 1_000_000_000,
) -> None:
    """Import one split of CHAMMI (tape images, labels, channel names) into idrcell-v1 shards."""
    from idrcell.import_chammi import import_chammi as run_import

    _check_window(window)
    result = _run_import(
        lambda progress: run_import(
            source,
            out,
            split=split,
            subsets=tuple(subset),
            seed=seed,
            limits=ShardLimits(max_shard_samples, max_shard_bytes),
            window_mode=window,
            jobs=jobs,
            progress=progress,
        ),
    )
    _report_import(result, out)
