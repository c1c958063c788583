"""Condor jobs killed and retried, as an eviction or a dead node does to them: the scrape job of one
experiment SIGKILLed four times and the DAG's merge job once, each rerun as HTCondor reruns a job
(max_retries). The result must be the bytes of an uninterrupted `idrcell build`.

The jobs are run as a slot runs them (condor/scrape.sh with the arguments HTCondor's own parser expands
from condor/scrape.sub and condor/merge.sub); the helpers for that are tests/idrcell/test_condor_jobs.py's.
"""

from __future__ import annotations

import importlib.util
import random
import signal
import subprocess
from pathlib import Path

import pytest

from idrcell.condor import SubmitFile, queued_jobs
from idrcell.emulator import EmulatorServer

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "condor_job_helpers", REPO / "tests/idrcell/test_condor_jobs.py"
)
assert _spec is not None and _spec.loader is not None
condor_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(condor_helpers)

PAINTING = condor_helpers.PAINTING  # the tiny list's 10-channel screen: the slowest job
KILL_SEED = 7


def _kill_at_pause(rel, command: list[str], env: dict[str, str], request: str, folder: Path) -> None:
    """Run a job asking it to park at `request` (idrcell.testpoint) and SIGKILL it there."""
    process = subprocess.Popen(
        command, env=rel.pause_env(env, request, folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        rel.wait_for_pause(process, folder)
        process.send_signal(signal.SIGKILL)  # scrape.sh exec's idrcell: the signal reaches it
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_condor_jobs_killed_and_retried_give_the_bytes_of_an_uninterrupted_build(
    reference_build: Path, tmp_path: Path, rel
) -> None:
    out = tmp_path / "out"
    staging = out / "staging" / PAINTING
    staged = lambda: len(list(staging.glob("samples/*.tar")))  # noqa: E731
    draw = random.Random(KILL_SEED)
    with EmulatorServer("tiny") as server:
        variables = {"list": str(rel.TINY_LIST), "out": str(out), "base_url": server.base_url}
        scrape = SubmitFile.load(REPO / "condor" / "scrape.sub", {**variables, "concurrency": "4"})
        env = condor_helpers.slot_environment(scrape)
        jobs = {f"{j.item['study']}_{j.item['container']}": j for j in queued_jobs(scrape)}
        commands = {name: [str(REPO / "condor" / "scrape.sh"), *job.arguments] for name, job in jobs.items()}
        others = [subprocess.Popen(commands[name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                  for name in commands if name != PAINTING]  # fmt: skip
        kills = []
        for attempt in range(4):
            increment = draw.randint(2, 4)  # 2 to 4 samples more than the last attempt left
            before = staged()
            _kill_at_pause(rel, commands[PAINTING], env, f"staged:{increment}", tmp_path / f"pause-{attempt}")
            assert staged() == before + increment, (before, increment, staged())
            kills.append(("scrape", staged()))
            assert not (staging / "stage.json").exists()
        rerun = subprocess.run(commands[PAINTING], env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
        for process in others:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr.decode()[-2000:]

    # The DAG's merge node, with the reference's shard limit; killed once in the middle of a shard
    # after its first shards are complete, then retried.
    merge = SubmitFile.load(
        REPO / "condor" / "merge.sub", {**variables, "max_shard_samples": str(rel.SHARD_SAMPLES)}
    )
    (merge_job,) = queued_jobs(merge)
    command = [str(REPO / "condor" / "scrape.sh"), *merge_job.arguments]
    merge_env = condor_helpers.slot_environment(merge)
    merged = draw.randint(rel.SHARD_SAMPLES + 1, 3 * rel.SHARD_SAMPLES)
    _kill_at_pause(rel, command, merge_env, f"sharded:{merged}", tmp_path / "pause-merge")
    kills.append(("merge", merged))
    assert not (out / "dataset.json").exists()
    rel.check_merge_stopped_after(out, reference_build, merged)
    retried = subprocess.run(command, env=merge_env, capture_output=True, text=True, timeout=300)
    assert retried.returncode == 0, retried.stdout[-2000:] + retried.stderr[-2000:]
    assert rel.dataset_snapshot(out) == rel.dataset_snapshot(reference_build)
    reference_stage = reference_build / "staging" / PAINTING / "stage.json"
    assert (staging / "stage.json").read_bytes() == reference_stage.read_bytes()
    assert not rel.temp_files(out), rel.temp_files(out)
    print(f"condor kills (job, samples staged or merged at the kill): {kills}")
