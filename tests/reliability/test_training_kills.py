"""Training under failures: one DDP rank SIGKILLed mid-epoch, then `--resume auto` from a damaged run dir."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chadavit.data.testing import write_shards
from chadavit.train.checkpoint import read_checkpoint
from chadavit.train.loop import PAUSE_AT_STEP_VARIABLE, train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import tiny_cli_args, tiny_config

EPOCHS = 2  # 6 steps each; a checkpoint every 4 steps and at each epoch end: the kill lands in epoch 1
STOP_TIMEOUT_S = 90  # the parent must notice the dead rank and exit well before this


def rank_processes(rel, parent: int) -> list[int]:
    """The ranks `--nproc` spawned (multiprocessing's spawn_main children), in start order."""
    return [pid for pid in rel.children(parent) if "spawn_main" in rel.cmdline(pid)]


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_and_resume_gives_the_uninterrupted_losses(tmp_path: Path, rel) -> None:
    data = tmp_path / "data"
    write_shards(data, [7, 6, 5, 6], channel_counts=(1, 2, 3), image_size=64, seed=4)
    reference = tmp_path / "reference"
    train(tiny_config(data, reference, epochs=EPOCHS, nproc=2))
    expected = [m["loss"] for m in read_metrics(reference)]
    assert len(expected) == 6 * EPOCHS

    run = tmp_path / "run"
    args = rel.command("chadavit-train", *tiny_cli_args(data, run, epochs=EPOCHS), "--nproc", "2")
    # Both ranks park themselves once step 9 begins (the checkpoint of step 8, epoch 1 step 2 of 6,
    # is on disk), whatever the machine's speed; the kill lands there.
    env = {**os.environ, PAUSE_AT_STEP_VARIABLE: "9"}
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        paused = [run / "paused-rank0", run / "paused-rank1"]
        deadline = time.monotonic() + 300
        while not all(p.exists() for p in paused) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None and all(p.exists() for p in paused), "the ranks did not reach step 9"
        ranks = rank_processes(rel, process.pid)
        assert len(ranks) == 2, [rel.cmdline(pid) for pid in rel.children(process.pid)]
        os.kill(ranks[-1], signal.SIGKILL)  # one rank dies, as on an out-of-memory kill
        killed_at = time.monotonic()
        _, stderr = process.communicate(timeout=STOP_TIMEOUT_S)  # no hang: the parent stops the run
        stopped_after = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0, stderr[-2000:]
    assert "Traceback" not in stderr  # a one-line report, not a stack dump
    for pid in ranks:  # the surviving rank was stopped too, not left behind
        assert not Path(f"/proc/{pid}").exists() or "zombie" in (Path(f"/proc/{pid}") / "status").read_text()
    checkpoints = run / "checkpoints"
    state = read_checkpoint(checkpoints / "last.pt")
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (8, 1, 2)  # killed mid-epoch 1
    print(f"run stopped {stopped_after:.1f} s after the rank was killed, checkpoint at step {state['step']}")

    # On top of the kill, the newest checkpoint is truncated on disk: the previous one must be used.
    last = checkpoints / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    resumed = subprocess.run([*args, "--resume", "auto"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    warning = " ".join(resumed.stderr.split())
    assert "last.pt cannot be read (truncated or not a checkpoint)" in warning, warning[-2000:]
    assert "trying the previous checkpoint" in warning
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == list(range(6 * EPOCHS))
    assert [m["loss"] for m in metrics] == expected  # bit-identical, step for step
    assert not rel.temp_files(run)
