"""What a task's report section reads: the summary, run.json, the model order, where figures go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from chadavit_bench.report.tables import task_table


@dataclass
class ReportContext:
    out: Path
    summary: pd.DataFrame  # results.summarise(), with a `warning` column
    run: dict  # run.json (empty when absent)
    models: list[str]  # model labels in the run's order: columns and colours
    figures: list[Path] = field(default_factory=list)  # every figure drawn, in order

    @property
    def figure_dir(self) -> Path:
        return self.out / "figures"

    def drew(self, path: Path) -> Path:
        self.figures.append(path)
        return path

    def table(self, task: str, metrics: list[str] | None = None, index: list[str] | None = None):
        """The task's summary rows as a wide table (default rows: dataset, features, metric), or None."""
        return task_table(
            self.summary, task, metrics, index or ["dataset", "features", "metric"], self.models
        )
