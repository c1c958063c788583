"""What the `idrcell` command line shows: progress bars and summary tables (rich). CLI-side only."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from idrcell.stage import StageProgress, StageResult


class _RateColumn(ProgressColumn):
    """Images per second staged by this run: images found already staged (field `already`) do not count."""

    def render(self, task: Any) -> Any:
        from rich.text import Text

        new_images = task.completed - task.fields.get("already", 0)
        # A finished bar keeps the rate it ended with rather than decaying as the clock runs on.
        elapsed = (task.finished_time if task.finished else task.elapsed) or 0.0
        if new_images <= 0 or elapsed <= 0:
            return Text("    -  img/s", style="progress.data.speed")
        return Text(f"{new_images / elapsed:7.1f} img/s", style="progress.data.speed")


class StageBars:
    """One bar per experiment and one overall bar; `update` is safe to call from another thread."""

    def __init__(self, console: Console, targets: dict[str, int]) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._targets = dict(targets)
        self._staged: dict[str, int] = dict.fromkeys(targets, 0)
        self._already = 0  # images staged by an earlier run, left out of the rate
        self._overall = self._progress.add_task("[bold]all experiments", total=sum(targets.values()))
        self._tasks: dict[str, TaskID] = {}
        self._merge_task: TaskID | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> StageBars:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, event: StageProgress) -> None:
        with self._lock:
            if event.name not in self._tasks:
                # An experiment whose first report is "done" was staged by an earlier run.
                already = event.staged if event.phase == "done" else 0
                self._already += already
                self._tasks[event.name] = self._progress.add_task(
                    event.name, total=event.target, already=already
                )
            task = self._tasks[event.name]
            notes = (
                f" [dim]({event.skipped} skipped" + (f", {event.failed} failed" if event.failed else "") + ")"
            )
            label = event.name + (notes if event.skipped or event.failed else "")
            if event.phase == "listing":
                label += " [dim]listing..."
            total = event.target
            if event.phase == "done" and not event.failed and event.staged < event.target:
                total = event.staged  # fewer usable images than asked for: the bar ends full
            self._progress.update(task, description=label, completed=event.staged, total=total)
            self._staged[event.name] = event.staged
            self._targets[event.name] = total
            self._progress.update(
                self._overall,
                completed=sum(self._staged.values()),
                total=sum(self._targets.values()),
                already=self._already,
            )

    def merge_progress(self, done: int, total: int) -> None:
        with self._lock:
            if self._merge_task is None:
                self._merge_task = self._progress.add_task("[bold]writing shards", total=total)
            self._progress.update(self._merge_task, completed=done, total=total)


def stage_table(results: Sequence[StageResult]) -> Table:
    """One row per experiment. `nulled`: staged images with server numbers that were no finite number,
    stored as null (stage.json `nulled_values`; each is named in failures.jsonl, status `nulled`)."""
    table = Table(title="Staging summary", show_lines=False)
    for column in (
        "experiment",
        "selected",
        "asked",
        "listed",
        "skipped",
        "failed",
        "nulled",
        "requests",
        "retries",
        "MB",
        "s",
    ):
        table.add_column(column, justify="left" if column in ("experiment", "skipped") else "right")
    for r in results:
        status = "" if r.complete else " [red](unfinished)"
        if r.already_done:
            status = " [dim](already staged)"
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(r.skipped.items())) or "0"
        table.add_row(
            r.name + status,
            f"{r.selected}" + (" [yellow](short)" if r.short else ""),
            str(r.requested),
            str(r.candidates),
            skipped,
            str(r.failed),
            str(r.nulled),
            str(r.requests),
            str(sum(r.retries.values())),
            f"{r.downloaded_bytes / 1e6:.1f}",
            f"{r.elapsed_s:.1f}",
        )
    return table


def totals_line(results: Sequence[StageResult], seconds: float) -> str:
    skipped: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    for r in results:
        skipped.update(r.skipped)
        retries.update(r.retries)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"
    retry_text = ", ".join(f"{k} {v}" for k, v in sorted(retries.items())) or "none"
    return (
        f"images {sum(r.selected for r in results)}, channels {sum(r.channels for r in results)}, "
        f"skipped: {reasons}; images with nulled values {sum(r.nulled for r in results)}; "
        f"retries: {retry_text}; "
        f"downloaded {sum(r.downloaded_bytes for r in results) / 1e6:.1f} MB in {seconds:.1f} s"
    )


def stats_tables(stats: dict[str, Any]) -> list[Table]:
    experiments = Table(title=f"{stats['samples']} samples, {stats['channels']} channels")
    experiments.add_column("experiment")
    experiments.add_column("samples", justify="right")
    experiments.add_column("channels", justify="right")
    for name, counts in stats["experiments"].items():
        experiments.add_row(name, str(counts["samples"]), str(counts["channels"]))
    methods = Table(title="imaging method")
    methods.add_column("imaging method")
    methods.add_column("samples", justify="right")
    for name, count in stats["imaging_methods"].items():
        methods.add_row(name, str(count))
    channels = Table(title="channels per image")
    channels.add_column("channels", justify="right")
    channels.add_column("samples", justify="right")
    for n_channels, count in stats["channel_counts"].items():
        channels.add_row(n_channels, str(count))
    return [experiments, methods, channels]


def failure_logs(out: Path, results: Sequence[StageResult]) -> list[Path]:
    logs = [Path(out) / "staging" / r.name / "failures.jsonl" for r in results]
    return [log for log in logs if log.exists()]
