"""What one task is: its help line, the datasets it runs on, its run function, its headline, its report.

A task module defines `TASK = Task(...)`; `chadavit_bench.tasks` lists the modules. Nothing else in
the package names a task, so adding one is one new module plus one line in that list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry is read by the CLI's help: no heavy imports at run time
    from chadavit_bench.report.context import ReportContext
    from chadavit_bench.report.document import Block
    from chadavit_bench.results import Row
    from chadavit_bench.tasks.context import ModelContext
    from chadavit_bench.tasks.selection import DatasetChoice


@dataclass(frozen=True)
class Job:
    task: str
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class Skip:
    """A task that did not run on a dataset, and why."""

    task: str  # "*" when the dataset could not be used by any task
    dataset: str
    model: str  # "*" when the data are missing for every model
    reason: str


@dataclass(frozen=True)
class Flag:
    """An evaluation that ran but whose numbers mean less than they seem (one class, NaN features)."""

    model: str
    dataset: str
    task: str
    features: str
    reason: str


@dataclass
class TaskOutput:
    rows: list[Row] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    def add(self, other: TaskOutput) -> None:
        self.rows += other.rows
        self.skips += other.skips
        self.flags += other.flags


@dataclass(frozen=True)
class Headline:
    """The task's metric in the Figure 1 style headline scores (x 100 on a 0-100 scale)."""

    metric: str
    label: str  # the benchmark's name after the dataset's, e.g. "kNN acc."


@dataclass(frozen=True)
class Task:
    name: str
    help: str  # one line for `chadavit-bench run --help`
    datasets: DatasetChoice
    run: Callable[[ModelContext, tuple[str, ...]], TaskOutput]
    headline: Headline | None = None
    section: Callable[[ReportContext], list[Block]] | None = None  # the task's part of the report
