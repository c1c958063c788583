"""The OME-Zarr options on HTCondor: `--pixel-source`, `--zarr-base-url`, `--max-response-mb` and the
list's `zarr` column reach each job's `idrcell stage` command (expanded from condor/scrape.sub by
HTCondor's own parser), and the jobs, run as a slot runs them, stage the same bytes as a local build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import htcondor2
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.client import ClientConfig
from idrcell.condor import CondorError, SubmitFile, arguments_to_argv, queue_slice, queued_jobs
from idrcell.emulator import EmulatorServer
from idrcell.executors import condor_queue, make_jobs, run_local, stage_variables
from idrcell.experiments import load_experiments
from idrcell.stage import StageConfig

REPO = Path(__file__).resolve().parents[2]
SCRAPE_SUB = REPO / "condor" / "scrape.sub"
IDRCELL = Path(sys.executable).parent / "idrcell"
CLI = get_command(app)
# The mitosis screen's stores are moved to a folder no naming rule (and no listing) finds: only the
# list's `zarr` column leads a job to them.
MOVED = "moved/{study_id}/{plate_id}.zarr"
LIST = f"""study,container,id,n_images,zarr
idr0901-emu-mitosis,screenA,901,3,{MOVED}
idr0902-emu-organelles,experimentA,902,3,
"""


def staged_files(out: Path) -> dict[str, bytes]:
    """What the stages wrote (samples, stage.json, params.json, listing.json), by relative path; the
    journal and failures.jsonl are left out: their lines come in the order concurrent fetches end."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted((out / "staging").rglob("*"))
        if path.is_file() and path.name not in (".lock", "journal.jsonl", "failures.jsonl")
    }


def slot_environment(submit: SubmitFile) -> dict[str, str]:
    declared = arguments_to_argv(submit.expand(("environment",))["environment"])
    values = dict(entry.split("=", 1) for entry in declared)
    return {**os.environ, **values, "IDRCELL_BIN": str(IDRCELL)}


@pytest.fixture(scope="module")
def server_2026():
    with EmulatorServer("tiny", mode="2026") as server:
        roots = server._emulator.zarr.roots
        for key in [k for k in roots if k.startswith("v0.4/idr0901A/")]:
            roots[key.replace("v0.4/idr0901A/", "moved/idr0901/")] = roots.pop(key)
        yield server


def test_zarr_options_and_column_reach_every_job_and_condor_jobs_stage_the_local_bytes(
    tmp_path: Path, server_2026: EmulatorServer
) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(LIST, encoding="utf-8")
    experiments = load_experiments(listing)
    client = ClientConfig(base_url=server_2026.base_url, max_retries=2, max_response_bytes=8 * 2**20)
    config = StageConfig(client=client, pixel_source="zarr", zarr_base_url=server_2026.zarr_base_url)

    # HTCondor's item reader hands each job its row, the zarr template included.
    description = htcondor2.Submit(f"list = {listing}\n" + SCRAPE_SUB.read_text())
    items = list(description.itemdata())[queue_slice(description.getQArgs())]
    assert [item["row"] for item in items] == [f"901,3,{MOVED}", "902,3,"]

    submit = SubmitFile.load(SCRAPE_SUB, stage_variables(listing, tmp_path / "condor", config))
    jobs = queued_jobs(submit)
    assert len(jobs) == 2
    for job in jobs:
        params = CLI.commands["stage"].make_context("stage", list(job.arguments[1:])).params
        assert params["pixel_source"] == "zarr" and params["zarr_base_url"] == server_2026.zarr_base_url
        assert params["max_response_mb"] == 8

    local = run_local(make_jobs(experiments, listing, tmp_path / "local", config))
    assert all(result.complete and result.selected == 3 for result in local), local
    for job in jobs:  # as a slot runs them: scrape.sh, the submit file's environment, one after another
        done = subprocess.run(
            [str(REPO / "condor" / "scrape.sh"), *job.arguments],
            env=slot_environment(submit),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    condor, here = staged_files(tmp_path / "condor"), staged_files(tmp_path / "local")
    assert sorted(condor) == sorted(here) and len([k for k in here if k.endswith(".tar")]) == 6
    assert condor == here
    assert b'"pixel_source": "zarr"' in here["staging/idr0901-emu-mitosis_screenA/params.json"]

    # A job whose command lacked the zarr column, or the base URL, would not find the stores.
    without_column = tmp_path / "plain.csv"
    without_column.write_text(LIST.replace(MOVED, ""), encoding="utf-8")
    plain = make_jobs(load_experiments(without_column), without_column, tmp_path / "plain", config)
    (mitosis, *_) = run_local(plain[:1])
    assert not mitosis.complete and "no OME-Zarr copy found" in (mitosis.error or "")


def test_any_cap_travels_to_a_job_exactly_and_bad_values_are_refused(tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(LIST, encoding="utf-8")
    experiments = load_experiments(listing)
    for cap in (100_000, 3 * 2**20 + 1, 64 * 2**20, 2**40 + 7):
        config = StageConfig(client=ClientConfig(max_response_bytes=cap))
        (job, _) = make_jobs(experiments, listing, tmp_path, config)
        assert job.config.client.max_response_bytes == cap, job.command
    bad_source = StageConfig(pixel_source="jpeg")
    with pytest.raises(CondorError, match="the stage command's --pixel-source 'jpeg' is not one of auto"):
        make_jobs(experiments, listing, tmp_path, bad_source)
    # A hand-edited submit variable is refused the same way before any job runs.
    for value in ("0", "-3", "nan", "inf", "lots"):
        variables = {**stage_variables(listing, tmp_path, StageConfig()), "max_response_mb": value}
        with pytest.raises(CondorError, match=f"--max-response-mb '{value}' is not a positive number"):
            condor_queue(experiments, listing, variables)


def test_build_and_stage_take_max_response_mb(tmp_path: Path, server_2026: EmulatorServer) -> None:
    """The option is checked like any other (0 is a usage error) and reaches the client: 1,049 bytes
    is less than the experiment's listing, which then fails naming the cap."""
    listing = tmp_path / "list.csv"
    listing.write_text(LIST, encoding="utf-8")
    args = ["stage", "-e", str(listing), "--study", "idr0902-emu-organelles", "--container", "experimentA"]
    args += ["-o", str(tmp_path / "out"), "--base-url", server_2026.base_url]
    args += ["--zarr-base-url", server_2026.zarr_base_url, "--pixel-source", "zarr"]
    zero = CliRunner().invoke(app, [*args, "--max-response-mb", "0"])
    assert zero.exit_code == 2 and "--max-response-mb" in zero.output
    tiny = CliRunner().invoke(app, [*args, "--max-response-mb", "0.001"])  # 1,049 bytes
    assert tiny.exit_code == 1 and "above the cap of 1049 bytes" in " ".join(tiny.output.split())
    built = CliRunner().invoke(app, [*args, "--max-response-mb", "1"])
    assert built.exit_code == 0, built.output
