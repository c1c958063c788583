"""condor/scrape.sub read by HTCondor's own parser (the htcondor2 bindings; no daemons, no fake schedd):
its queue, the commands it expands, the local executor running those commands, and the pool path."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import classad2
import htcondor2
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.client import DEFAULT_BASE_URL, ClientConfig
from idrcell.condor import (
    CondorError,
    SubmitFile,
    arguments_to_argv,
    queue_slice,
    queued_jobs,
)
from idrcell.condor_pool import JobState, follow_jobs
from idrcell.executors import condor_queue, make_jobs, stage_variables
from idrcell.experiments import load_experiments
from idrcell.stage import StageConfig
from idrcell.zarr_resolve import DEFAULT_ZARR_BASE_URL

REPO = Path(__file__).resolve().parents[2]
SCRAPE_SUB = REPO / "condor" / "scrape.sub"
CLI = get_command(app)

# Empty optional fields, `;`-separated channel lists, z/t given or not: what HTCondor must not mangle.
MIXED_LIST = """study,container,id,n_images,channels,z,t
idr0002-heriche-condensation,screenA,,1300,2;1;3,,
idr0013-neumann-mitocheck,screenA,1101,50,,0,0
idr0016-wawer-bioactivecompoundprofiling,experimentA,,1300,1;2;3;4;5,,
"""


def write_list(folder: Path, text: str = MIXED_LIST, name: str = "list.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def stage_params(argv: list[str]) -> dict:
    """What `idrcell stage` makes of a command line (its own click parser, defaults and all)."""
    assert argv[0] == "stage"
    return CLI.commands["stage"].make_context("stage", list(argv[1:])).params


def test_scrape_sub_queues_one_job_per_data_row_with_the_rows_values(tmp_path: Path) -> None:
    plain = htcondor2.Submit(SCRAPE_SUB.read_text())  # as condor_submit reads the file, no overrides
    assert plain.getQArgs() == "study,container,row from [1:] $(list)" and plain["list"] == "experiments.csv"
    listing = write_list(tmp_path)
    description = htcondor2.Submit(f"list = {listing}\n" + SCRAPE_SUB.read_text())
    raw = list(description.itemdata())
    assert len(raw) == 4  # the bindings return the header too; the [1:] slice drops it at submit time
    assert queue_slice(description.getQArgs()) == slice(1, None)
    items = raw[queue_slice(description.getQArgs())]
    assert items == [
        {"study": "idr0002-heriche-condensation", "container": "screenA", "row": ",1300,2;1;3,,"},
        {"study": "idr0013-neumann-mitocheck", "container": "screenA", "row": "1101,50,,0,0"},
        {
            "study": "idr0016-wawer-bioactivecompoundprofiling",
            "container": "experimentA",
            "row": ",1300,1;2;3;4;5,,",
        },
    ]
    jobs = queued_jobs(SubmitFile.load(SCRAPE_SUB, {"list": str(listing), "out": "/data/idr cell"}))
    assert [job.process for job in jobs] == [0, 1, 2]
    assert jobs[1].executable == "condor/scrape.sh"
    assert list(jobs[1].arguments) == [
        "stage",
        "--experiments",
        str(listing),
        "--study",
        "idr0013-neumann-mitocheck",
        "--container",
        "screenA",
        "--out",
        "/data/idr cell",  # a space survives the quoting
        "--seed",
        "0",
        "--max-channels",
        "10",
        "--base-url",
        DEFAULT_BASE_URL,
        "--concurrency",
        "8",
        "--timeout",
        "60.0",
        "--retries",
        "8",
        "--max-response-mb",
        "64",
        "--pixel-source",
        "auto",
        "--zarr-base-url",
        DEFAULT_ZARR_BASE_URL,
    ]


def test_scrape_sub_defaults_are_the_stage_commands_defaults(tmp_path: Path) -> None:
    (job, *_) = queued_jobs(SubmitFile.load(SCRAPE_SUB, {"list": str(write_list(tmp_path))}))
    params = stage_params(list(job.arguments))
    defaults = {p.name: p.default for p in CLI.commands["stage"].params}
    for name in (
        "seed",
        "max_channels",
        "base_url",
        "concurrency",
        "timeout",
        "retries",
        "max_response_mb",
        "pixel_source",
        "zarr_base_url",
    ):
        assert params[name] == defaults[name], name


def test_the_local_executor_runs_the_commands_condor_would_queue(tmp_path: Path) -> None:
    listing = write_list(tmp_path)
    experiments = load_experiments(listing)
    client = ClientConfig(base_url="http://127.0.0.1:9", concurrency=6, timeout_s=2.5, max_retries=3)
    config = StageConfig(seed=7, max_channels=5, client=client)
    out = tmp_path / "out"
    for processes in (1, 3):  # three processes share the concurrency cap: 2 requests each
        local = make_jobs(experiments, listing, out, config, processes=processes)
        share = replace(config, client=replace(client, concurrency=6 // processes))
        queued = condor_queue(experiments, listing, stage_variables(listing, out, share))
        assert [job.argv() for job in local] == [["idrcell", *job.arguments] for job in queued]
        for job, experiment in zip(local, experiments, strict=True):
            params = stage_params(list(job.command))
            assert job.experiment == experiment and job.out == Path(params["out"]) == out
            assert (params["study"], params["container"]) == (experiment.study, experiment.container)
            assert (
                job.config.seed == params["seed"] == 7 and job.config.max_channels == params["max_channels"]
            )
            assert job.config.client.base_url == params["base_url"]
            assert job.config.client.concurrency == params["concurrency"] == 6 // processes
            assert job.config.client.timeout_s == params["timeout"] and job.config.client.max_retries == 3


def test_condor_jobs_prints_every_command_and_refuses_lists_htcondor_would_misread(tmp_path: Path) -> None:
    listing = write_list(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["condor-jobs", str(listing), "out=/scratch/o", "concurrency=3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line, experiment in zip(lines, load_experiments(listing), strict=True):
        words = shlex.split(line)
        assert words[0] == "condor/scrape.sh"
        params = stage_params(words[1:])
        assert (params["study"], params["out"], params["concurrency"]) == (
            experiment.study,
            Path("/scratch/o"),
            3,
        )

    commented = write_list(tmp_path, MIXED_LIST.replace("idr0013", "# idr0013"), "commented.csv")
    result = runner.invoke(app, ["condor-jobs", str(commented)])
    assert result.exit_code == 2 and "HTCondor reads data row 2 as study '#'" in result.output
    blank = write_list(tmp_path, MIXED_LIST.replace("\nidr0013", "\n\nidr0013"), "blank.csv")
    result = runner.invoke(app, ["condor-jobs", str(blank)])
    assert result.exit_code == 2 and "blank line" in result.output and str(blank) in result.output
    result = runner.invoke(app, ["condor-jobs", str(listing), "concurrency"])
    assert result.exit_code == 2 and "NAME=VALUE" in result.output


def test_arguments_are_split_by_the_rules_of_condor_submit() -> None:
    # The examples of the condor_submit manual page (arguments, new and old syntax).
    assert arguments_to_argv('"3 simple arguments"') == ["3", "simple", "arguments"]
    assert arguments_to_argv("\"one 'two with spaces' 3\"") == ["one", "two with spaces", "3"]
    assert arguments_to_argv("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"") == [
        "one",
        '"two"',
        "spacey 'quoted' argument",
    ]
    assert arguments_to_argv("one \\\"two\\\" 'three'") == ["one", '"two"', "'three'"]
    assert arguments_to_argv("\"a '' b\"") == ["a", "", "b"]
    with pytest.raises(CondorError, match="unbalanced"):
        arguments_to_argv('"a \'b"')


def test_exit_code_2_holds_the_job_and_the_rest_is_retried(tmp_path: Path) -> None:
    submit = SubmitFile.load(SCRAPE_SUB, {"list": str(write_list(tmp_path))})
    values = submit.expand(
        ("on_exit_hold", "on_exit_hold_reason", "max_retries"), {"study": "S", "container": "C"}
    )
    hold = classad2.ExprTree(values["on_exit_hold"])
    assert hold.eval(classad2.ClassAd({"ExitBySignal": False, "ExitCode": 2})) is True
    assert hold.eval(classad2.ClassAd({"ExitBySignal": False, "ExitCode": 1})) is False
    assert hold.eval(classad2.ClassAd({"ExitBySignal": True, "ExitSignal": 9})) is False
    assert int(values["max_retries"]) >= 3
    reason = classad2.ExprTree(values["on_exit_hold_reason"]).eval(classad2.ClassAd())
    assert "bad input for S/C" in reason and "condor_release" in reason


def test_file_transfer_moves_the_list_in_and_the_staging_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = {"list": "lists/tiny.csv", "out": "run_out"}
    (tmp_path / "lists").mkdir()
    write_list(tmp_path / "lists", name="tiny.csv")
    names = ("should_transfer_files", "arguments", "environment")
    monkeypatch.chdir(tmp_path)  # item files are read relative to the submit directory, like condor_submit
    shared = SubmitFile.load(SCRAPE_SUB, variables)
    moved = shared.with_variables({"file_transfer": "true"})
    assert queued_jobs(shared) == queued_jobs(moved)  # the same commands in both layouts
    assert shared.expand(names)["should_transfer_files"] == "NO"
    values = moved.expand(
        (*names, "transfer_input_files", "transfer_output_files", "preserve_relative_paths")
    )
    assert values["should_transfer_files"] == "YES" and values["preserve_relative_paths"] == "true"
    assert values["transfer_input_files"] == "lists/tiny.csv"
    assert values["transfer_output_files"] == "run_out/staging"
    assert "IDRCELL_FILE_TRANSFER=true" in arguments_to_argv(values["environment"])


def test_build_on_condor_without_a_pool_fails_in_one_sentence_and_writes_nothing(
    tmp_path: Path, tiny_list: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["build", "-e", str(tiny_list), "-o", str(out), "--executor", "condor"])
    assert result.exit_code == 2  # nothing was submitted: a usage error, not a failed run
    message = " ".join(result.output.split())
    assert "error: no HTCondor pool is reachable from this machine" in message
    assert "--executor local" in message
    assert not out.exists()
    args = ["build", "-e", str(tiny_list), "-o", str(out), "--executor", "condor"]
    result = CliRunner().invoke(app, [*args, "--condor-set", "file_transfer=true"])
    message = " ".join(result.output.split())
    assert (
        result.exit_code == 2 and "filesystem the execute nodes share" in message and "build.dag" in message
    )
    assert not out.exists()


EVENT_TIME = "2024-01-15 10:00:00"
USAGE = "".join(
    f"\t\tUsr 0 00:00:01, Sys 0 00:00:00  -  {what}\n"
    for what in ("Run Remote Usage", "Run Local Usage", "Total Remote Usage", "Total Local Usage")
) + "".join(
    f"\t0  -  {what}\n"
    for what in (
        "Run Bytes Sent By Job",
        "Run Bytes Received By Job",
        "Total Bytes Sent By Job",
        "Total Bytes Received By Job",
    )
)


def event(code: int, job: tuple[int, int], text: str) -> str:
    """One event in the user log format HTCondor writes (docs: job event log codes)."""
    return f"{code:03d} ({job[0]:03d}.{job[1]:03d}.000) {EVENT_TIME} {text}...\n"


def executed(job: tuple[int, int]) -> str:
    return event(1, job, "Job executing on host: <10.0.0.2:9618>\n")


def exited(job: tuple[int, int], code: int) -> str:
    return event(5, job, f"Job terminated.\n\t(1) Normal termination (return value {code})\n{USAGE}")


def killed(job: tuple[int, int]) -> str:
    return event(
        5, job, f"Job terminated.\n\t(0) Abnormal termination (signal 9)\n\t(0) No core file\n{USAGE}"
    )


def test_job_logs_are_followed_until_every_job_is_done_failed_held_or_removed(tmp_path: Path) -> None:
    cluster = 42
    logs = {proc: tmp_path / f"scrape.42.{proc}.log" for proc in range(4)}
    submitted = {p: event(0, (cluster, p), "Job submitted from host: <10.0.0.1:9618>\n") for p in range(4)}
    # What each job's log gains at each poll (proc 3's log only appears at the second one).
    chunks = [
        {
            0: submitted[0] + executed((cluster, 0)) + exited((7, 0), 0),  # another cluster's line is ignored
            1: submitted[1] + executed((cluster, 1)),
            2: submitted[2] + executed((cluster, 2)) + killed((cluster, 2)),
        },
        {
            0: exited((cluster, 0), 1),  # transient: HTCondor runs it again
            1: event(
                12, (cluster, 1), "Job was held.\n\tidrcell stage: bad input for S/C\n\tCode 3 Subcode 2\n"
            ),
            2: executed((cluster, 2)) + killed((cluster, 2)),
            3: submitted[3],
        },
        {
            0: executed((cluster, 0)) + exited((cluster, 0), 0),
            2: executed((cluster, 2)) + exited((cluster, 2), 1),
        },
        {3: event(9, (cluster, 3), "Job was aborted.\n\tvia condor_rm (by user alice)\n")},
    ]
    polls: list[dict[int, str]] = []

    def write_next(_seconds: float = 0.0) -> None:
        for proc, text in chunks.pop(0).items():
            with open(logs[proc], "a") as log:
                log.write(text)

    write_next()
    states = follow_jobs(
        logs,
        max_retries=2,
        on_poll=lambda s: polls.append({p: state.status for p, state in s.items()}),
        sleep=write_next,
        cluster=cluster,
    )
    assert not chunks and len(polls) == 4
    assert polls[0] == {0: "running", 1: "running", 2: "idle", 3: "idle"}
    assert states[0] == JobState(0, "done", attempts=2, exit_code=0)
    assert states[1].status == "held" and states[1].reason == "idrcell stage: bad input for S/C"
    assert states[2] == JobState(2, "failed", attempts=3, exit_code=1, reason="exited with code 1")
    assert states[3].status == "removed" and "condor_rm" in states[3].reason
