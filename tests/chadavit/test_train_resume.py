"""Checkpoints: a run killed mid-epoch resumes to the same losses; truncated files fall back; export."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import chadavit
from chadavit.data.testing import write_shards
from chadavit.train.checkpoint import (
    CheckpointError,
    load_latest,
    read_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from chadavit.train.loop import PAUSE_AT_STEP_VARIABLE, train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import tiny_cli_args, tiny_config

CLI = str(Path(sys.executable).parent / "chadavit-train")
EPOCHS = 2  # 6 steps each; checkpoints every 4 steps and at epoch ends: the kill lands in epoch 1


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_with_the_losses_of_an_uninterrupted_run(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [8, 8, 6], channel_counts=(1, 2, 3), image_size=64, seed=2)
    reference = tmp_path / "reference"
    train(tiny_config(tmp_path / "data", reference, epochs=EPOCHS, data__num_workers=1))
    expected = [m["loss"] for m in read_metrics(reference)]
    assert len(expected) == 6 * EPOCHS

    run = tmp_path / "run"
    args = [CLI, *tiny_cli_args(tmp_path / "data", run, epochs=EPOCHS), "--num-workers", "1"]
    # The run parks itself once step 9 begins (the checkpoint of step 8, epoch 1 step 2 of 6, is on
    # disk), whatever the machine's speed; the kill lands there.
    env = {**os.environ, PAUSE_AT_STEP_VARIABLE: "9"}
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env
    )
    try:
        deadline = time.monotonic() + 300
        while not (run / "paused-rank0").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None and (run / "paused-rank0").exists(), "the run did not reach step 9"
        os.killpg(process.pid, signal.SIGKILL)  # no chance to clean up, as a node failure
    finally:
        process.wait(timeout=60)
    state = read_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (8, 1, 2)  # killed mid-epoch 1

    resumed = subprocess.run([*args, "--resume", "auto"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == list(range(6 * EPOCHS))
    assert [m["loss"] for m in metrics] == expected  # bit-identical, step for step
    restarted = chadavit.from_pretrained(run / "model").state_dict()
    uninterrupted = chadavit.from_pretrained(reference / "model").state_dict()
    assert all(torch.equal(restarted[name], uninterrupted[name]) for name in uninterrupted)

    exported = tmp_path / "exported"
    result = subprocess.run(
        [CLI, "export", str(run / "checkpoints" / "last.pt"), "--out", str(exported)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    model = chadavit.from_pretrained(exported)
    assert all(torch.equal(model.state_dict()[name], uninterrupted[name]) for name in uninterrupted)
    assert json.loads((exported / "config.json").read_text())["embed_dim"] == 32


def fake_state(step: int) -> dict:
    fields = ("model", "model_overrides", "student", "teacher", "optimizer", "scaler", "loss", "epoch",
              "step_in_epoch", "steps_per_epoch", "rng", "config")  # fmt: skip
    return {**{name: {} for name in fields}, "model": "chadavit_petit", "step": step}


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "checkpoints"
    save_checkpoint(fake_state(4), directory)
    save_checkpoint(fake_state(8), directory)
    assert read_checkpoint(directory / "last.pt")["step"] == 8
    assert read_checkpoint(directory / "prev.pt")["step"] == 4
    last = directory / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        state, path = load_latest(directory)
    assert path.name == "prev.pt" and state["step"] == 4
    assert "last.pt" in caplog.text
    (directory / "prev.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_latest(directory)
    assert not list(directory.glob("*.tmp"))


def test_a_fresh_run_refuses_a_run_dir_that_has_checkpoints(tmp_path: Path) -> None:
    save_checkpoint(fake_state(1), tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match="--resume auto"):
        resolve_resume(None, tmp_path)
    assert resolve_resume("auto", tmp_path / "elsewhere") is None


def test_a_resume_with_changed_settings_names_them_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_shards(tmp_path / "data", [8, 8], channel_counts=(1, 2), image_size=64, seed=2)
    train(tiny_config(tmp_path / "data", tmp_path / "run", epochs=1))
    changed = tiny_config(
        tmp_path / "data", tmp_path / "run", epochs=2, resume="auto", seed=5, optim__base_lr=0.01
    )
    with caplog.at_level(logging.WARNING, logger="chadavit.train"):
        train(changed)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    listed = [m for m in warnings if "changed settings" in m]
    assert len(listed) == 1, warnings
    # The changed sections, and only those: more epochs is how a finished run is extended.
    assert "['optim', 'seed']" in listed[0] and "will not match an uninterrupted one" in listed[0], listed
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == list(range(12))

    caplog.clear()
    same = tiny_config(
        tmp_path / "data", tmp_path / "run", epochs=3, resume="auto", seed=5, optim__base_lr=0.01
    )
    with caplog.at_level(logging.WARNING, logger="chadavit.train"):
        train(same)
    assert not [r for r in caplog.records if "changed settings" in r.getMessage()]
