"""`idrcell build --executor condor`: the stage jobs on an HTCondor pool, then the merge here.

The jobs are the ones `condor_submit condor/scrape.sub` would queue (the packaged copy of that file,
expanded by HTCondor's parser; see condor.py), submitted with `htcondor2.Schedd().submit`. Every
job's user log is followed with `htcondor2.JobEventLog` until the job staged its experiment, ran out
of retries, was removed, or was held for bad input; when all of them staged, the merge runs here.

This path assumes the pool's usual layout: OUT and this Python environment on a filesystem that the
execute nodes share (jobs then resume in place, and the image counts of running jobs are read from
their journals). For HTCondor file transfer, submit condor/build.dag instead (docs/condor.md).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idrcell.build import BuildResult, merge_when_staged
from idrcell.condor import (
    JOB_WRAPPER,
    PACKAGED_FILES,
    SCRAPE_SUBMIT,
    CondorError,
    SubmitFile,
    htcondor_bindings,
    packaged_condor_dir,
)
from idrcell.dataset import ShardLimits
from idrcell.executors import condor_queue, failed_result, stage_variables
from idrcell.experiments import Experiment
from idrcell.journal import stage_dir
from idrcell.stage import ProgressCallback, StageConfig, StageProgress, StageResult, _result_from_summary

logger = logging.getLogger(__name__)

FINAL_STATES = ("done", "failed", "held", "removed")


class NoPoolError(CondorError):
    """No HTCondor schedd can be located from this machine."""


def locate_schedd() -> Any:
    """The local pool's schedd; NoPoolError (one sentence) where this machine belongs to no pool."""
    htcondor2 = htcondor_bindings()
    try:
        return htcondor2.Schedd()
    except htcondor2.HTCondorException as error:
        raise NoPoolError(
            f"no HTCondor pool is reachable from this machine (locating the schedd failed: {error}); "
            "run on an access point of a pool, or build here with --executor local"
        ) from None


@dataclass
class JobState:
    """What a job's user log says about it so far."""

    process: int
    status: str = "idle"  # idle | running | done | failed | held | removed
    attempts: int = 0  # runs that ended (normally or by a signal)
    exit_code: int | None = None
    reason: str | None = None

    @property
    def final(self) -> bool:
        """Nothing more will happen to it without a person (held) or at all (done, failed, removed)."""
        return self.status in FINAL_STATES


def apply_event(state: JobState, event: Any, max_retries: int) -> None:
    """Advance `state` by one `htcondor2.JobEvent`, knowing the job is retried `max_retries` times."""
    kinds = htcondor_bindings().JobEventType
    kind = event.type
    if kind == kinds.EXECUTE:
        state.status = "running"
    elif kind == kinds.JOB_TERMINATED:
        state.attempts += 1
        if event.get("TerminatedNormally", False):
            state.exit_code = int(event.get("ReturnValue", -1))
            state.reason = None if state.exit_code == 0 else f"exited with code {state.exit_code}"
        else:
            state.exit_code = None
            state.reason = f"killed by signal {event.get('TerminatedBySignal', '?')}"
        if state.exit_code == 0:
            state.status = "done"
        elif state.attempts > max_retries:
            state.status = "failed"
        else:
            state.status = "idle"  # HTCondor runs it again (max_retries)
    elif kind == kinds.JOB_HELD:
        state.status, state.reason = "held", str(event.get("HoldReason", "held"))
    elif kind == kinds.JOB_RELEASED:
        state.status = "idle"
    elif kind == kinds.JOB_ABORTED:
        state.status, state.reason = "removed", str(event.get("Reason", "removed from the queue"))
    elif kind in (kinds.JOB_EVICTED, kinds.SHADOW_EXCEPTION, kinds.JOB_RECONNECT_FAILED):
        state.status = "idle"


def follow_jobs(
    logs: Mapping[int, Path],
    max_retries: int,
    on_poll: Callable[[dict[int, JobState]], None] | None = None,
    poll_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    cluster: int | None = None,
) -> dict[int, JobState]:
    """Read each job's user log (proc id -> path) until every job is final; returns their states.

    Logs that do not exist yet are waited for; events of other jobs (a log shared by several, or
    reused by an earlier cluster) are ignored. `on_poll` gets the states after every poll.
    """
    htcondor2 = htcondor_bindings()
    states = {process: JobState(process) for process in logs}
    readers: dict[int, Any] = {}
    while True:
        for process, path in logs.items():
            state = states[process]
            if state.final:
                continue
            if process not in readers:
                if not Path(path).exists():
                    continue
                readers[process] = htcondor2.JobEventLog(str(path))
            for event in readers[process].events(stop_after=0):
                if event.proc != process or (cluster is not None and event.cluster != cluster):
                    continue
                apply_event(state, event, max_retries)
                if state.final:
                    break
        if on_poll is not None:
            on_poll(states)
        if all(state.final for state in states.values()):
            for reader in readers.values():
                reader.close()
            return states
        sleep(poll_s)


def _journal_counts(path: Path) -> tuple[int, int]:
    """(staged, skipped) images in a staging folder's journal; a line cut by a kill is ignored."""
    staged = skipped = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0, 0
    for line in lines:
        try:
            status = json.loads(line).get("status")
        except (ValueError, AttributeError):
            continue
        staged += status == "staged"
        skipped += status == "skipped"
    return staged, skipped


def _idrcell_executable() -> str:
    """This environment's `idrcell`, by absolute path, for execute nodes that share the filesystem."""
    sibling = Path(sys.executable).parent / "idrcell"
    if sibling.is_file():
        return str(sibling)
    return shutil.which("idrcell") or "idrcell"


def _install_submit_files(target: Path) -> Path:
    """Copy the packaged scrape.sub and scrape.sh into OUT/condor/ (a record of what was submitted)."""
    (target / "logs").mkdir(parents=True, exist_ok=True)
    for name in PACKAGED_FILES:
        shutil.copyfile(packaged_condor_dir() / name, target / name)
    (target / JOB_WRAPPER).chmod(0o755)
    return target / SCRAPE_SUBMIT


def _stage_results(
    procs: Mapping[int, Experiment],
    out: Path,
    states: Mapping[int, JobState],
    errors: Mapping[int, str],
    cluster: int,
) -> list[StageResult]:
    """One result per job, in list order: the stage's own summary, or why its job did not finish."""
    results: list[StageResult] = []
    for proc, experiment in procs.items():
        state = states[proc]
        summary = stage_dir(out, experiment.name).read_stage() if state.status == "done" else None
        if summary is not None:
            results.append(_result_from_summary(summary, already_done=False))
            continue
        reason = state.reason or "it finished without writing stage.json"
        detail = f"HTCondor job {state.status}: {reason} (see {errors[proc]})"
        if state.status == "held":
            detail += f"; condor_release {cluster}.{proc} once fixed, or condor_rm it"
        results.append(failed_result(experiment, detail, permanent=state.status == "held"))
    return results


def build_on_condor(
    experiments: Sequence[Experiment],
    experiments_path: Path,
    out: Path,
    config: StageConfig = StageConfig(),
    limits: ShardLimits = ShardLimits(),
    progress: ProgressCallback | None = None,
    merge_progress: Callable[[int, int], None] | None = None,
    variables: Mapping[str, str] | None = None,
    poll_s: float = 5.0,
    on_submit: Callable[[int, int, Path], None] | None = None,
) -> BuildResult:
    """One HTCondor job per experiment, followed to the end; then the merge if every job staged.

    `variables` override scrape.sub's submit variables (e.g. memory, idrcell); `on_submit` hears
    (cluster, jobs, logs folder) once the schedd took the jobs. Raises NoPoolError before writing
    anything when there is no pool, CondorError when the list or the variables cannot be used.
    """
    out, list_path = Path(out).absolute(), Path(experiments_path).absolute()
    settings = {**stage_variables(list_path, out, config), "idrcell": _idrcell_executable()}
    settings.update(variables or {})
    if settings.get("file_transfer", "false").lower() == "true":
        raise CondorError(
            "--executor condor needs OUT on a filesystem the execute nodes share; for HTCondor file "
            'transfer submit condor/build.dag with file_transfer="true" (docs/condor.md)'
        )
    # Check everything that needs no pool first, so that a bad list fails the same way anywhere.
    condor_queue(experiments, list_path, settings, None, config)
    schedd = locate_schedd()

    condor_dir = out / "condor"
    settings.update({"condor_dir": str(condor_dir), "logs": str(condor_dir / "logs")})
    submit = SubmitFile.load(_install_submit_files(condor_dir), settings)
    try:
        submitted = schedd.submit(submit.parse())
    except (htcondor_bindings().HTCondorException, RuntimeError, ValueError) as error:
        raise CondorError(f"the schedd refused the stage jobs: {error}") from None
    cluster, first = submitted.cluster(), submitted.first_proc()
    if submitted.num_procs() != len(experiments):
        raise CondorError(
            f"the schedd queued {submitted.num_procs()} jobs for {len(experiments)} experiments "
            f"(cluster {cluster}); remove it with condor_rm {cluster}"
        )
    logger.info("submitted %d stage jobs as cluster %d", submitted.num_procs(), cluster)
    if on_submit is not None:
        on_submit(cluster, submitted.num_procs(), condor_dir / "logs")

    procs = {first + index: experiment for index, experiment in enumerate(experiments)}
    paths = {proc: submit.expand(("log", "error"), process=proc, cluster=cluster) for proc in procs}
    max_retries = int(submit.expand(("max_retries",))["max_retries"])
    reported: dict[int, tuple[str, int, int, int]] = {}

    def report(states: dict[int, JobState]) -> None:
        """Image counts of every started job, read from its journal on the shared filesystem."""
        if progress is None:
            return
        for proc, state in states.items():
            if state.status == "idle" and state.attempts == 0:
                continue  # not started yet
            experiment = procs[proc]
            staged, skipped = _journal_counts(stage_dir(out, experiment.name).journal_file)
            failed = int(state.final and state.status != "done")  # keeps an unfinished bar's total
            phase = "done" if state.final else ("listing" if staged + skipped == 0 else "fetching")
            if (phase, staged, skipped, failed) != reported.get(proc):
                reported[proc] = (phase, staged, skipped, failed)
                progress(StageProgress(experiment.name, phase, experiment.n_images, staged, skipped, failed))

    logs = {proc: Path(p["log"]) for proc, p in paths.items()}
    states = follow_jobs(logs, max_retries, report, poll_s, cluster=cluster)
    results = _stage_results(procs, out, states, {proc: p["error"] for proc, p in paths.items()}, cluster)
    return merge_when_staged(results, experiments, out, config, limits, merge_progress)
