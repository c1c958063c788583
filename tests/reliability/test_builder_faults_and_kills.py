"""The builder under a flaky server and under repeated SIGKILLs: the same bytes as an undisturbed build.

Both tests run the real `idrcell build` command against the offline emulator and compare every byte of
`shards/*.tar`, `index.parquet` and `dataset.json` with `reference_build` (same list, seed and limits).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from idrcell.emulator import ALL_FAULT_KINDS, EmulatorServer, FaultConfig
from idrcell.experiments import load_experiments

KILL_SEED = 20240  # the kill points below are drawn from this seed


def retries_in_summary(output: str) -> Counter[str]:
    """The totals line's `retries: 429 17, 500 14, ...`, as printed by `idrcell build`."""
    match = re.search(r"retries: ([^;]*);", " ".join(output.split()))
    assert match, output[-3000:]
    text = match.group(1).strip()
    if text == "none":
        return Counter()
    return Counter({kind: int(count) for kind, count in (item.rsplit(" ", 1) for item in text.split(", "))})


@pytest.mark.slow
def test_a_build_against_a_server_failing_one_request_in_five_gives_the_same_bytes(
    reference_build: Path, tmp_path: Path, rel
) -> None:
    # Every kind of fault at 20 %. The client gives up on a request after 1 s; a "timeout" fault
    # answers after 1.5 s, so each one costs a timeout and a retry.
    faults = FaultConfig(rate=0.2, kinds=ALL_FAULT_KINDS, timeout_sleep_s=1.5, backoff_ms=20, seed=8)
    out = tmp_path / "out"
    started = time.monotonic()
    with EmulatorServer("tiny", faults=faults) as server:
        args = rel.build_command(out, "--jobs", "2", "--timeout", "1", "--retries", "12")
        done = subprocess.run(args, env=rel.cli_env(server.base_url), capture_output=True, text=True)
        injected = Counter(server.stats.faults)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert set(injected) == set(ALL_FAULT_KINDS), injected

    # Exactly the requested number of images per experiment, and the very bytes of a fault-free build.
    requested = {e.study: e.n_images for e in load_experiments(rel.TINY_LIST)}
    rows = pq.read_table(out / "index.parquet", columns=["study"]).column("study").to_pylist()
    assert Counter(rows) == requested
    info = json.loads((out / "dataset.json").read_text())
    assert {s["selected"] for s in info["stages"].values()} == set(requested.values())
    assert rel.dataset_snapshot(out) == rel.dataset_snapshot(reference_build)

    # The summary counts every retry, by kind: one per injected fault. A request can also time out
    # on its own on a loaded machine, so "timeout" may count more than were injected.
    retries = retries_in_summary(done.stdout)
    for kind in ALL_FAULT_KINDS:
        if kind == "timeout":
            assert retries[kind] >= injected[kind]
        else:
            assert retries[kind] == injected[kind], (kind, retries, injected)
    assert not rel.temp_files(out)
    print(f"faults injected {dict(sorted(injected.items()))}, retried {dict(sorted(retries.items()))}, "
          f"{sum(injected.values())} in all, build {seconds:.1f} s")  # fmt: skip


def _staged(out: Path) -> int:
    return len(list(out.glob("staging/*/samples/*.tar")))


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may be slow to reap orphans)."""
    try:
        return "\tZ" not in (Path("/proc") / str(pid) / "status").read_text().split("State:", 1)[1][:4]
    except (OSError, IndexError):
        return False


def _descendants(rel, pid: int) -> set[int]:
    found = set(rel.children(pid))
    for child in list(found):
        found |= _descendants(rel, child)
    return found


def _kill_at_pause(rel, args: list[str], env: dict[str, str], request: str, folder: Path) -> None:
    """Start `args` asking it to park at `request` (idrcell.testpoint), SIGKILL it there, and check
    that its worker processes exit on their own: a killed build must leave no orphan behind."""
    process = subprocess.Popen(
        args, env=rel.pause_env(env, request, folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        rel.wait_for_pause(process, folder)
        workers = _descendants(rel, process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while (alive := [pid for pid in workers if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"orphans of the killed build: {[rel.cmdline(pid) for pid in alive]}"


@pytest.mark.slow
def test_five_sigkills_during_staging_and_merge_then_a_rerun_give_the_same_bytes(
    reference_build: Path, tmp_path: Path, rel
) -> None:
    out = tmp_path / "out"
    draw = random.Random(KILL_SEED)
    total = 60  # 3 experiments x 20 images
    # Each staging kill comes after 3 to 10 more samples than the killed run before it left; the
    # builder parks itself there (idrcell.testpoint), so the kill lands there on any machine.
    increments = [draw.randint(3, 10) for _ in range(4)]
    # The merge kill comes in the middle of a shard, after its first shards are complete.
    merged = draw.randint(rel.SHARD_SAMPLES + 1, total - rel.SHARD_SAMPLES - 1)
    with EmulatorServer("tiny") as server:
        env, args = rel.cli_env(server.base_url), rel.build_command(out, "--jobs", "2")
        for run, increment in enumerate(increments):
            before = _staged(out)
            _kill_at_pause(rel, args, env, f"staged:{increment}", tmp_path / f"pause-{run}")
            # Exactly `increment` more samples, from both worker processes together.
            assert _staged(out) == before + increment, (before, increment, _staged(out))
            assert not (out / "dataset.json").exists()
        # The last kill lands in the merge: staging is complete, some shards are written, not all.
        _kill_at_pause(rel, args, env, f"sharded:{merged}", tmp_path / "pause-merge")
        assert _staged(out) == total and not (out / "dataset.json").exists(), "not killed in the merge"
        rel.check_merge_stopped_after(out, reference_build, merged)
        server.reset_stats()
        started = time.monotonic()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        rerun_s = time.monotonic() - started
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert not server.stats.urls  # everything was staged: the last rerun only merged
    assert rel.dataset_snapshot(out) == rel.dataset_snapshot(reference_build)
    for stage in (reference_build / "staging").iterdir():
        resumed = out / "staging" / stage.name / "stage.json"
        assert resumed.read_bytes() == (stage / "stage.json").read_bytes()
    assert not rel.temp_files(out), rel.temp_files(out)
    print(f"killed after {increments} more staged samples, then {merged} merged; rerun {rerun_s:.1f} s")


@pytest.mark.parametrize(
    ("request_text", "folder", "named"),
    [("staged:x", "somewhere", "staged:N or sharded:N"), ("staged:3", "", "IDRCELL_TEST_PAUSE_DIR")],
)
def test_a_malformed_pause_request_is_a_one_line_usage_error(
    tmp_path: Path, rel, request_text: str, folder: str, named: str
) -> None:
    env = {**os.environ, "IDRCELL_TEST_PAUSE_AFTER": request_text, "IDRCELL_TEST_PAUSE_DIR": folder}
    done = subprocess.run(
        rel.build_command(tmp_path / "out"), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert named in rel.one_line_error(done)
    assert not (tmp_path / "out").exists()  # nothing was done
