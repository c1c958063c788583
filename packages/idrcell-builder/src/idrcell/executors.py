"""Where stage jobs run. One experiment = one `StageJob`, independent of every other.

A job *is* the `idrcell stage` command that condor/scrape.sub runs for its experiment: `make_jobs`
expands that submit file (the copy shipped in the package) with HTCondor's own parser for each
experiment, and `job_from_command` reads the command back into what `stage_experiment` needs. So
`run_local` (this machine, one process or a pool of them) and an HTCondor pool (condor_pool.py, or
`condor_submit condor/scrape.sub`) run the same commands.

Exit codes of `idrcell stage`, hence of a condor job: 0 the experiment is staged; 1 something
transient stopped it and a rerun resumes it (scrape.sub retries: `max_retries`); 2 bad input that no
rerun fixes (scrape.sub holds the job with a reason: `on_exit_hold`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from idrcell.client import IDRError, PermanentHTTPError
from idrcell.condor import CondorError, CondorJob, SubmitFile, check_jobs_match_list, expand_job, queued_jobs
from idrcell.experiments import Experiment, find_experiment
from idrcell.journal import StagingLockedError
from idrcell.listing import ListingError
from idrcell.stage import ProgressCallback, StageConfig, StageResult, stage_experiment
from idrcell.zarr_source import PIXEL_SOURCES

EXIT_OK, EXIT_RETRY, EXIT_BAD_INPUT = 0, 1, 2


class ExecutorKind(StrEnum):
    """Where `idrcell build` runs its stage jobs."""

    local = "local"  # a process pool on this machine (run_local)
    condor = "condor"  # one HTCondor job per experiment (condor_pool.build_on_condor)


# The options scrape.sub gives `idrcell stage`. All are required in a command: one left out would take
# the CLI's default on a pool but the caller's value here, and the two runs would differ.
STAGE_OPTIONS = (
    "--experiments",
    "--study",
    "--container",
    "--out",
    "--seed",
    "--max-channels",
    "--base-url",
    "--concurrency",
    "--timeout",
    "--retries",
    "--max-response-mb",
    "--pixel-source",
    "--zarr-base-url",
)
MIB = 2**20  # --max-response-mb counts MiB (ClientConfig.max_response_bytes counts bytes)


def response_cap_mb(max_response_bytes: int) -> str:
    """The cap as `--max-response-mb` text that reads back to the same bytes: n / 2^20 is exact in a
    float for any n below 2^53, and repr() round-trips it."""
    return repr(max_response_bytes / MIB)


def response_cap_bytes(text: str) -> int | None:
    """`--max-response-mb` text as bytes, None unless it is a number giving at least one byte."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or round(value * MIB) < 1:
        return None
    return round(value * MIB)


@dataclass(frozen=True)
class StageJob:
    """Stage one experiment of a list into `out/staging/<study>_<container>/`."""

    experiment: Experiment
    experiments_path: Path  # the list it comes from, as named in the command
    out: Path
    config: StageConfig
    command: tuple[str, ...]  # the `idrcell` arguments expanded from scrape.sub: what this job runs

    @property
    def name(self) -> str:
        return self.experiment.name

    def argv(self) -> list[str]:
        """The `idrcell stage` command that runs this job anywhere the package is installed."""
        return ["idrcell", *self.command]


def stage_variables(experiments_path: Path | str, out: Path | str, config: StageConfig) -> dict[str, str]:
    """The submit variables of scrape.sub that make its jobs run with `config`."""
    client = config.client
    return {
        "list": str(experiments_path),
        "out": str(out),
        "seed": str(config.seed),
        "max_channels": str(config.max_channels),
        "base_url": client.base_url,
        "concurrency": str(client.concurrency),
        "timeout": str(client.timeout_s),
        "retries": str(client.max_retries),
        "max_response_mb": response_cap_mb(client.max_response_bytes),
        "pixel_source": config.pixel_source,
        "zarr_base_url": config.zarr_base_url,
    }


def job_from_command(
    command: Sequence[str], experiments: Sequence[Experiment], config: StageConfig
) -> StageJob:
    """Read an `idrcell stage` command back into a job. Every value the command names comes from it;
    `config` supplies only what a command line cannot set (backoff timing, tiling, worker threads)."""
    words = list(command)
    if not words or words[0] != "stage":
        raise CondorError(f"the job runs {' '.join(words[:1]) or 'nothing'!r}, not `idrcell stage`")
    values: dict[str, str] = {}
    pairs = words[1:]
    if len(pairs) % 2:
        raise CondorError(f"the stage command {' '.join(words)!r} has an option without a value")
    for option, value in zip(pairs[::2], pairs[1::2], strict=True):
        if option not in STAGE_OPTIONS or option in values:
            raise CondorError(f"the stage command repeats or does not know option {option!r}")
        values[option] = value
    missing = [option for option in STAGE_OPTIONS if option not in values]
    if missing:
        raise CondorError(f"the stage command lacks {', '.join(missing)}")
    if values["--pixel-source"] not in PIXEL_SOURCES:
        raise CondorError(
            f"the stage command's --pixel-source {values['--pixel-source']!r} is not one of "
            f"{', '.join(PIXEL_SOURCES)}"
        )
    max_response_bytes = response_cap_bytes(values["--max-response-mb"])
    if max_response_bytes is None:
        raise CondorError(
            f"the stage command's --max-response-mb {values['--max-response-mb']!r} is not a positive "
            "number of MiB"
        )
    try:
        experiment = find_experiment(list(experiments), values["--study"], values["--container"])
        client = replace(
            config.client,
            base_url=values["--base-url"],
            concurrency=int(values["--concurrency"]),
            timeout_s=float(values["--timeout"]),
            max_retries=int(values["--retries"]),
            max_response_bytes=max_response_bytes,
        )
        job_config = replace(
            config,
            seed=int(values["--seed"]),
            max_channels=int(values["--max-channels"]),
            client=client,
            pixel_source=values["--pixel-source"],
            zarr_base_url=values["--zarr-base-url"],
        )
    except KeyError as error:
        raise CondorError(f"{values['--experiments']}: {error.args[0]}") from None
    except ValueError as error:
        raise CondorError(f"the stage command has a bad number: {error}") from None
    return StageJob(
        experiment, Path(values["--experiments"]), Path(values["--out"]), job_config, tuple(words)
    )


def _item(experiment: Experiment) -> dict[str, str]:
    """The item data scrape.sub's `queue study,container,row from ...` gives this experiment's job."""
    row = experiment.to_row()
    rest = ",".join(value for column, value in row.items() if column not in ("study", "container"))
    return {"study": experiment.study, "container": experiment.container, "row": rest}


def make_jobs(
    experiments: Sequence[Experiment],
    experiments_path: Path,
    out: Path,
    config: StageConfig,
    processes: int = 1,
    submit_file: Path | None = None,
) -> list[StageJob]:
    """One job per experiment, its command expanded from scrape.sub (default: the packaged copy).

    The global concurrency cap is shared out among the processes that run at once."""
    share = max(1, config.client.concurrency // max(1, min(processes, len(experiments))))
    job_config = replace(config, client=replace(config.client, concurrency=share))
    submit = SubmitFile.load(submit_file, stage_variables(experiments_path, out, job_config))
    return [
        job_from_command(expand_job(submit, _item(experiment), process).arguments, experiments, job_config)
        for process, experiment in enumerate(experiments)
    ]


def condor_queue(
    experiments: Sequence[Experiment],
    experiments_path: Path,
    variables: Mapping[str, str] | None = None,
    submit_file: Path | None = None,
    config: StageConfig = StageConfig(),
) -> list[CondorJob]:
    """The jobs `condor_submit scrape.sub list=LIST name=value ...` would queue, checked to be exactly
    the list's experiments in order, each running a stage command the local executor can run."""
    submit = SubmitFile.load(submit_file, {"list": str(experiments_path), **(variables or {})})
    try:
        jobs = queued_jobs(submit)
    except CondorError as error:
        raise CondorError(f"{experiments_path}: {error}") from None
    check_jobs_match_list(jobs, experiments, Path(experiments_path))
    for job in jobs:
        job_from_command(job.arguments, experiments, config)
    return jobs


@dataclass(frozen=True)
class FailedStage(StageResult):
    """A stage that could not run at all; `permanent` when no rerun can fix it (bad input)."""

    permanent: bool = False


# Errors that retrying cannot fix: a container that does not exist or is not readable, a refused
# request, a malformed list or URL, a staging folder made with other parameters.
_PERMANENT_ERRORS = (ListingError, PermanentHTTPError, ValueError)


def exit_code(result: StageResult) -> int:
    """The exit status of `idrcell stage` (and of its condor job) for this result."""
    if result.complete:
        return EXIT_OK
    if isinstance(result, FailedStage) and result.permanent:
        return EXIT_BAD_INPUT
    return EXIT_RETRY


def failed_result(
    experiment: Experiment, error: BaseException | str, permanent: bool | None = None
) -> FailedStage:
    """The result of a stage that could not run; `permanent` defaults to what the error says."""
    if permanent is None:
        permanent = isinstance(error, _PERMANENT_ERRORS)
    return FailedStage(
        name=experiment.name,
        study=experiment.study,
        container=experiment.container,
        requested=experiment.n_images,
        selected=0,
        candidates=0,
        skipped={},
        failed=0,
        complete=False,
        already_done=False,
        error=str(error),
        permanent=permanent,
    )


def run_job(
    job: StageJob, progress: ProgressCallback | None = None, parent_pid: int | None = None
) -> StageResult:
    """Run one job; errors a user can act on come back in `StageResult.error` instead of raising."""
    try:
        return stage_experiment(job.experiment, job.out, job.config, progress, parent_pid)
    except (IDRError, ListingError, StagingLockedError, ValueError, OSError) as error:
        return failed_result(job.experiment, error)


# Worker-process state, set by the pool initializer (a queue can only be inherited, not pickled).
_progress_queue: Any = None
_parent_pid: int | None = None


def _init_worker(queue: Any, parent_pid: int) -> None:
    global _progress_queue, _parent_pid
    _progress_queue, _parent_pid = queue, parent_pid
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="idrcell-parent", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """End an idle worker whose build died. Between jobs a worker waits on the pool's call queue,
    whose pipe it holds both ends of, so it would never see an end of file and would wait forever."""
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(70)


def _run_in_worker(job: StageJob) -> StageResult:
    return run_job(job, _progress_queue.put, _parent_pid)


def _drain(queue: Any, progress: ProgressCallback | None) -> None:
    while (event := queue.get()) is not None:
        if progress is not None:
            progress(event)


def run_local(
    jobs: Sequence[StageJob], processes: int = 1, progress: ProgressCallback | None = None
) -> list[StageResult]:
    """Run every job here; with `processes > 1` in that many worker processes. Results in job order.

    Workers watch their parent and exit if it dies, so a killed build leaves no orphan writing.
    """
    if processes <= 1 or len(jobs) <= 1:
        return [run_job(job, progress) for job in jobs]
    # spawn, not fork: a forked worker would inherit locks held by this process's other threads
    # (progress display, an in-process emulator) and pools it cannot shut down, and can hang.
    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    drainer = threading.Thread(target=_drain, args=(queue, progress), name="idrcell-progress", daemon=True)
    drainer.start()
    try:
        with ProcessPoolExecutor(
            max_workers=min(processes, len(jobs)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(queue, os.getpid()),
        ) as pool:
            futures = [pool.submit(_run_in_worker, job) for job in jobs]
            return [future.result() for future in futures]
    finally:
        queue.put(None)
        drainer.join()


Executor = Callable[[Sequence[StageJob], int, ProgressCallback | None], list[StageResult]]
