"""Where stage jobs run. One experiment = one `StageJob`, independent of every other.

`run_local` runs jobs in this process (one at a time) or in a pool of worker processes; the
HTCondor executor builds on the same `StageJob` and its `argv()` (the `idrcell stage` command line).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from idrcell.client import IDRError
from idrcell.experiments import Experiment
from idrcell.journal import StagingLockedError
from idrcell.listing import ListingError
from idrcell.stage import ProgressCallback, StageConfig, StageResult, stage_experiment


@dataclass(frozen=True)
class StageJob:
    """Stage one experiment of a list into `out/staging/<study>_<container>/`."""

    experiment: Experiment
    experiments_path: Path  # the list it comes from, for the equivalent command line
    out: Path
    config: StageConfig

    @property
    def name(self) -> str:
        return self.experiment.name

    def argv(self) -> list[str]:
        """The `idrcell stage` command that runs this job anywhere the package is installed."""
        client = self.config.client
        return [
            "idrcell",
            "stage",
            "--experiments",
            str(self.experiments_path),
            "--study",
            self.experiment.study,
            "--container",
            self.experiment.container,
            "--out",
            str(self.out),
            "--seed",
            str(self.config.seed),
            "--max-channels",
            str(self.config.max_channels),
            "--base-url",
            client.base_url,
            "--concurrency",
            str(client.concurrency),
            "--timeout",
            str(client.timeout_s),
            "--retries",
            str(client.max_retries),
        ]


def make_jobs(
    experiments: Sequence[Experiment],
    experiments_path: Path,
    out: Path,
    config: StageConfig,
    processes: int = 1,
) -> list[StageJob]:
    """One job per experiment; the global concurrency cap is shared out among the processes."""
    share = max(1, config.client.concurrency // max(1, min(processes, len(experiments))))
    job_config = replace(config, client=replace(config.client, concurrency=share))
    return [StageJob(e, Path(experiments_path), Path(out), job_config) for e in experiments]


def failed_result(experiment: Experiment, error: BaseException) -> StageResult:
    return StageResult(
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
    context = multiprocessing.get_context("fork")
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
