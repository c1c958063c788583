"""`chadavit-train`: honest help, config file under flags, one-sentence errors with nothing written."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from chadavit.data.testing import write_shards
from chadavit.train.cli import app
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import TINY_MODEL, TINY_OVERRIDES

runner = CliRunner()


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
