"""One command-line convention across idrcell, chadavit-train and chadavit-bench (README,
"Command-line conventions"), checked on every command's --help as a user reads it."""

from __future__ import annotations

import functools

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from chadavit.train.cli import SHOWN_DEFAULTS
from chadavit.train.cli import app as train_app
from chadavit.train.config import TrainConfig, config_key
from chadavit_bench.cli import app as bench_app
from idrcell.cli import app as idrcell_app

APPS = {"idrcell": idrcell_app, "chadavit-train": train_app, "chadavit-bench": bench_app}
# Outputs are -o/--out; a folder a command only reads is positional. These positional folders are
# inputs (a results folder, a dataset, a checkpoint...), never where a command writes anew.
OUTPUT_NAMES = {"out", "out_dir", "output"}


def command_paths(app: typer.Typer) -> list[tuple[list[str], object]]:
    """Every command of `app` (groups included) with the words that reach it."""
    paths = []

    def walk(command, words: list[str]) -> None:
        paths.append((words, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return paths


def help_text(app: typer.Typer, words: list[str]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("tool", list(APPS))
def test_every_help_screen_follows_the_convention(tool: str) -> None:
    app = APPS[tool]
    for words, command in command_paths(app):
        text = help_text(app, words)
        where = " ".join([tool, *words])
        assert "<bool>" not in text and "<int>]" not in text, where  # flags and counters have no type
        for param in command.params:
            if param.name in OUTPUT_NAMES:
                assert param.param_type_name == "option", f"{where}: {param.name} must be -o/--out"
                assert {"-o", "--out"} <= set(param.opts), f"{where}: {param.opts}"
                assert "-o, --out" in text, where
    top = help_text(app, [])
    assert "-v, --verbose" in top, tool  # -v counts, before any subcommand
    verbose = next(p for p in typer.main.get_command(app).params if p.name == "verbose")
    assert verbose.count, tool


def test_chadavit_train_help_shows_the_config_defaults_it_falls_back_to() -> None:
    text = " ".join(help_text(train_app, []).split())
    config = TrainConfig()
    # Defaults that are not a value: no checkpoint, the data's own epoch length, the padding-free path.
    worded = {"resume": None, "steps_per_epoch": None, "padded": False}
    for name, shown in SHOWN_DEFAULTS.items():
        assert f"[default: {shown}]" in text, name
        value = functools.reduce(getattr, config_key(name).split("."), config)
        if name in worded:
            assert value is worded[name], name
        else:
            assert shown == str(value), (name, value, shown)


def test_bench_datasets_without_a_data_root_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHADAVIT_DATA", raising=False)
    result = CliRunner().invoke(bench_app, ["datasets"])
    assert result.exit_code == 2
    assert "error: no data root: pass --data-root DIR or set $CHADAVIT_DATA" in " ".join(
        result.output.split()
    )
