"""`chadavit-train`: honest help, config file under flags, one-sentence errors with nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chadavit.data.testing import write_shards
from chadavit.train.cli import app
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import TINY_MODEL, TINY_OVERRIDES

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "chadavit-train")


def test_help_shows_the_training_form_and_the_export_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for text in (
        "--data",
        "--model",
        "--out",
        "--epochs",
        "--batch-size",
        "--config",
        "--nproc",
        "--resume",
        "export",
    ):
        assert text in result.output
    assert runner.invoke(app, ["export", "--help"]).exit_code == 0


def test_config_file_values_apply_and_flags_override_them(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [6, 6], image_size=64)
    sections: dict = {"model": "chadavit_petit", "model_overrides": TINY_MODEL, "epochs": 5}
    for dotted, value in TINY_OVERRIDES.items():
        section, _, key = dotted.rpartition(".")
        (sections.setdefault(section, {}) if section else sections)[key] = value
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(sections))
    args = [
        "--config",
        str(tmp_path / "run.yaml"),
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
    ]
    result = runner.invoke(
        app, [*args, "--epochs", "1", "--batch-size", "4", "--set", "data.steps_per_epoch=2"]
    )
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["epochs"] == 1 and resolved["data"]["batch_size"] == 4  # flags win
    assert (
        resolved["dino"]["out_dim"] == 256 and resolved["model_overrides"]["embed_dim"] == 32
    )  # from the file
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [0, 1]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_a_missing_data_dir_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "nope does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_an_unknown_config_key_is_named(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [2], image_size=32)
    result = runner.invoke(
        app,
        ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--set", "optim.learning_rat=1"],
    )
    assert result.exit_code == 2 and "optim.learning_rat" in result.output


def test_export_of_a_file_that_is_not_a_checkpoint_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["export", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2 and "bad.pt" in result.output
    assert not (tmp_path / "model").exists()


def tiny_args(data: Path, run: Path) -> list[str]:
    """The tiny run with --lr and --batch-size as flags, so that a later flag replaces them."""
    args = ["--data", str(data), "--out", str(run), "--model", "chadavit_petit", "--epochs", "1"]
    for key, value in TINY_MODEL.items():
        args += ["--model-arg", f"{key}={value}"]
    flags = {"optim.base_lr": "--lr", "data.batch_size": "--batch-size"}
    for key, value in TINY_OVERRIDES.items():
        args += [flags[key], str(value)] if key in flags else ["--set", f"{key}={value}"]
    return args


def error_line(output: str) -> str:
    """The one error line (a progress bar may precede it), and no traceback."""
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "-1"], "optim.base_lr must be > 0, got -1"),
        (["--lr", "nan"], "optim.base_lr must be a finite number, got nan"),
        (["--set", "dino.center_momentum=2"], "dino.center_momentum must be in [0, 1], got 2"),
        (["--set", "data.batch_size=2.5"], "data.batch_size must be a whole number >= 1, got 2.5"),
        (["--batch-size", "1000000"], "data.batch_size 1000000 is larger than the 12 samples"),
        (["--set", "data.group_by_channels='no'"], "data.group_by_channels must be true or false"),
        (["--set", "dino.out_dim"], "--set: expected KEY=VALUE, got 'dino.out_dim'"),
    ],
)
def test_a_bad_setting_is_a_usage_error_naming_the_key_with_nothing_written(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    write_shards(tmp_path / "data", [6, 6], image_size=64)
    result = runner.invoke(app, [*tiny_args(tmp_path / "data", tmp_path / "run"), *flags])
    assert result.exit_code == 2
    assert message in error_line(result.output)
    assert not (tmp_path / "run").exists()


def test_a_run_whose_loss_turns_nan_fails_with_exit_1_naming_the_step(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [6, 6], image_size=64)
    args = [*tiny_args(tmp_path / "data", tmp_path / "run"), "--lr", "1e30"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    line = error_line(result.output)
    assert line.startswith("error: training failed: the loss is nan at step 1"), line
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.slow
def test_a_failing_rank_is_named_in_one_line(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [6, 6], image_size=64)
    args = [*tiny_args(tmp_path / "data", tmp_path / "run"), "--lr", "1e30", "--nproc", "2"]
    args += ["--batch-size", "4"]
    result = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert re.fullmatch(r"error: training failed: rank [01]: the loss is nan at step 1 .*", errors[0]), errors


def test_export_to_a_file_or_from_a_missing_checkpoint_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "last.pt").write_bytes(b"x")
    result = runner.invoke(app, ["export", str(tmp_path / "last.pt"), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'taken'} exists and is not a folder" in error_line(result.output)
    result = runner.invoke(app, ["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "nope.pt does not exist" in error_line(result.output)
    assert not (tmp_path / "m").exists()


def test_training_options_before_a_subcommand_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--lr", "0.1", "export", "x.pt", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "training options (--lr) go without a subcommand" in error_line(result.output)
