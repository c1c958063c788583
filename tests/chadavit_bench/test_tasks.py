"""The task registry: a task is one entry, and the CLI, the runner, the headline scores and the report
all follow it (issue: adding a task used to touch four files)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Heading, Table
from chadavit_bench.tasks import REGISTRY, TASK_MODULES, Headline, Task, TaskOutput
from chadavit_bench.tasks.context import ModelContext
from chadavit_bench.tasks.selection import EachOfKind
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE


def test_every_task_module_defines_the_entry_of_its_name_and_its_help_reaches_the_cli() -> None:
    assert list(REGISTRY) == list(TASK_MODULES)
    for name in TASK_MODULES:
        assert importlib.import_module(f"chadavit_bench.tasks.{name}").TASK is REGISTRY[name]
    help_text = " ".join(CliRunner().invoke(app, ["run", "--help"]).output.replace("│", " ").split())
    for task in REGISTRY.values():
        assert f"{task.name}: {task.help.split()[0]}" in help_text


def _run_norm(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    (name,) = datasets
    _, _, evaluate = context.splits(name)
    x = context.embeddings(name).features("cls")[evaluate]
    score = float(np.mean(np.linalg.norm(x, axis=1) > 0))  # 1.0: every embedding is non-zero
    return TaskOutput(rows=context.rows({"nonzero": score}, name, "norm", "cls", 1.0, 0))


def _norm_section(report: ReportContext) -> list[Block]:
    table = report.table("norm")
    return [] if table is None else [Heading("Embedding norms"), Table(table)]


NORM = Task(
    name="norm",
    help="share of non-zero embeddings (a test task)",
    datasets=EachOfKind("classification"),
    run=_run_norm,
    headline=Headline("nonzero", "non-zero"),
    section=_norm_section,
)


def test_a_new_task_is_one_registry_entry(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "norm", NORM)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["run", "norm", "--quick", "-d", "cyclops", "--data-root", str(synthetic_root), "--out", str(out),
         "--img-size", str(TINY_IMG_SIZE), "--workers", "1", "-m", TINY_CHADAVIT],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cyclops non-zero" in result.output  # the headline table the CLI prints
    results = pd.read_parquet(out / "results.parquet")
    assert set(zip(results["task"], results["dataset"], results["metric"], strict=True)) == {
        ("norm", "cyclops", "nonzero")
    }
    assert results["value"].tolist() == [1.0]
    report = (out / "report.md").read_text()
    # The headline table is on the 0 to 100 scale its heading announces (1.0 -> 100.0).
    assert "## Embedding norms" in report and "| cyclops non-zero | 100.0 |" in report
    assert json.loads((out / "run.json").read_text())["skipped"] == []
