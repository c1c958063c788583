"""Condor jobs run as a slot runs them: condor/scrape.sh with the command HTCondor's parser expands from
condor/scrape.sub, in the job's directory, with the submit file's environment. A killed job's rerun,
the exit codes that decide retry or hold, and the file-transfer layout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from typer.testing import Result as CliResult

from idrcell.cli import app
from idrcell.condor import CondorJob, SubmitFile, arguments_to_argv, queued_jobs
from idrcell.emulator import EmulatorServer
from idrcell.testpoint import PAUSE_AFTER_VARIABLE, PAUSE_DIR_VARIABLE, REACHED_FILE

REPO = Path(__file__).resolve().parents[2]
IDRCELL = Path(sys.executable).parent / "idrcell"
PAINTING = "idr0903-emu-painting_screenA"  # the tiny list's 10-channel screen: the slowest to stage


def slot_environment(submit: SubmitFile) -> dict[str, str]:
    """The job's environment as the submit file sets it (new-syntax `environment`), on this machine."""
    declared = arguments_to_argv(submit.expand(("environment",))["environment"])
    values = dict(entry.split("=", 1) for entry in declared)
    assert values["IDRCELL_BIN"] == "idrcell"  # the default: idrcell on the node's PATH
    return {**os.environ, **values, "IDRCELL_BIN": str(IDRCELL)}


def job_for(submit: SubmitFile, name: str) -> CondorJob:
    (job,) = [j for j in queued_jobs(submit) if f"{j.item['study']}_{j.item['container']}" == name]
    return job


def staged_ids(staging: Path) -> list[int]:
    lines = (staging / "journal.jsonl").read_text().splitlines()
    return [entry["image_id"] for entry in map(json.loads, lines) if entry["status"] == "staged"]


@pytest.mark.slow
def test_a_killed_job_rerun_finishes_its_experiment_without_duplicates(
    tmp_path: Path, tiny_list: Path, clean_build: Path
) -> None:
    out = tmp_path / "out"
    staging = out / "staging" / PAINTING
    # The job parks itself after 5 staged samples (idrcell.testpoint), and is killed there, as an
    # eviction or a dead node would.
    pause = {PAUSE_AFTER_VARIABLE: "staged:5", PAUSE_DIR_VARIABLE: str(tmp_path / "pause")}
    with EmulatorServer("tiny") as server:
        submit = SubmitFile.load(
            REPO / "condor" / "scrape.sub",
            {"list": str(tiny_list), "out": str(out), "base_url": server.base_url, "concurrency": "4"},
        )
        job, env = job_for(submit, PAINTING), slot_environment(submit)
        command = [str(REPO / "condor" / "scrape.sh"), *job.arguments]
        process = subprocess.Popen(
            command, env={**env, **pause}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while not (tmp_path / "pause" / REACHED_FILE).exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # scrape.sh exec's idrcell: the signal reaches the stage
        assert process.wait() == -signal.SIGKILL
        process.stderr.close()
        assert len(list(staging.glob("samples/*.tar"))) == 5
        assert not (staging / "stage.json").exists()
        had = set(staged_ids(staging))
        server.reset_stats()
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        fetched_again = {
            int(url.split("/")[3]) for url in server.stats.urls if url.startswith("/webgateway/imgData/")
        }
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    ids = staged_ids(staging)
    assert len(ids) == len(set(ids)) == 20 and had and not had & fetched_again
    reference = clean_build / "staging" / PAINTING
    assert (staging / "stage.json").read_bytes() == (reference / "stage.json").read_bytes()
    samples = sorted(p.name for p in (staging / "samples").iterdir())
    assert samples == sorted(p.name for p in (reference / "samples").iterdir())
    for name in samples:
        assert (staging / "samples" / name).read_bytes() == (reference / "samples" / name).read_bytes()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_stage_exit_codes_say_retry_or_hold(
    tmp_path: Path, tiny_list: Path, tiny_emulator: EmulatorServer
) -> None:
    runner = CliRunner()

    def stage(listing: Path, study: str, base_url: str, out: str) -> CliResult:
        args = [
            "stage",
            "-e",
            str(listing),
            "--study",
            study,
            "--container",
            "screenA",
            "-o",
            str(tmp_path / out),
        ]
        return runner.invoke(app, [*args, "--base-url", base_url, "--retries", "0", "--timeout", "1"])

    # Bad input, held: an experiment the list does not have, a list that does not parse, an unknown id.
    assert stage(tiny_list, "idr0999-not-listed", tiny_emulator.base_url, "a").exit_code == 2
    broken = tmp_path / "broken.csv"
    broken.write_text("study,container,n_images\nidr0901-emu-mitosis,screenA,many\n")
    assert stage(broken, "idr0901-emu-mitosis", tiny_emulator.base_url, "b").exit_code == 2
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("study,container,id,n_images\nidr0901-emu-mitosis,screenA,424242,5\n")
    assert stage(unknown, "idr0901-emu-mitosis", tiny_emulator.base_url, "c").exit_code == 2
    assert not list((tmp_path / "c").rglob("*")), "a failed start leaves no empty staging folder"
    # Transient, retried: nothing answers at that address (yet).
    assert stage(tiny_list, "idr0901-emu-mitosis", "http://127.0.0.1:9", "d").exit_code == 1
    # A staging folder made with other parameters is bad input too: a rerun would mix two samplings.
    assert stage(tiny_list, "idr0901-emu-mitosis", tiny_emulator.base_url, "e").exit_code == 0
    changed = tmp_path / "changed.csv"
    changed.write_text(tiny_list.read_text().replace("901,20", "901,19"))
    result = stage(changed, "idr0901-emu-mitosis", tiny_emulator.base_url, "e")
    assert result.exit_code == 2 and "different parameters" in result.output


def test_a_file_transfer_job_writes_what_transfer_output_files_brings_back(
    tmp_path: Path, tiny_list: Path, clean_build: Path, tiny_emulator: EmulatorServer
) -> None:
    submit_dir, scratch = tmp_path / "submit", tmp_path / "scratch"
    (submit_dir / "lists").mkdir(parents=True)
    shutil.copyfile(tiny_list, submit_dir / "lists" / "tiny.csv")
    variables = {"list": "lists/tiny.csv", "out": "run_out", "file_transfer": "true"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(submit_dir)  # condor_submit reads the item file from the submit directory
        variables["base_url"] = tiny_emulator.base_url
        submit = SubmitFile.load(REPO / "condor" / "scrape.sub", variables)
        job = job_for(submit, "idr0902-emu-organelles_experimentA")
    moved = submit.expand(("transfer_input_files", "transfer_output_files"))
    # What the starter does with preserve_relative_paths: inputs at their relative paths in scratch.
    (scratch / "lists").mkdir(parents=True)
    shutil.copyfile(submit_dir / moved["transfer_input_files"], scratch / moved["transfer_input_files"])
    command = [str(REPO / "condor" / "scrape.sh"), *job.arguments]
    done = subprocess.run(command, cwd=scratch, env=slot_environment(submit), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    brought_back = scratch / moved["transfer_output_files"]
    assert sorted(p.name for p in brought_back.iterdir()) == ["idr0902-emu-organelles_experimentA"]
    reference = clean_build / "staging" / "idr0902-emu-organelles_experimentA" / "stage.json"
    assert (
        brought_back / "idr0902-emu-organelles_experimentA" / "stage.json"
    ).read_bytes() == reference.read_bytes()
    # An absolute output folder would escape the scratch directory: bad input, held, nothing written.
    absolute = [word if word != "run_out" else str(tmp_path / "elsewhere") for word in command]
    refused = subprocess.run(
        absolute, cwd=scratch, env=slot_environment(submit), capture_output=True, text=True
    )
    assert refused.returncode == 2 and "must be a path relative to the submit directory" in refused.stderr
    assert not (tmp_path / "elsewhere").exists()
