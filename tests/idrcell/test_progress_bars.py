"""The staging progress bars: the rate counts only images this run staged."""

from __future__ import annotations

import io
import time

from rich.console import Console

from idrcell.cli_report import StageBars
from idrcell.stage import StageProgress


def _rates(bars: StageBars) -> dict[str, str]:
    columns = bars._progress.columns
    rate_column = next(c for c in columns if type(c).__name__ == "_RateColumn")
    return {task.description.split(" ")[0]: str(rate_column.render(task)) for task in bars._progress.tasks}


def test_a_rerun_with_everything_staged_shows_no_rate_and_new_work_does() -> None:
    console = Console(file=io.StringIO(), width=160)
    with StageBars(console, {"done-before": 20, "new": 10}) as bars:
        bars.update(StageProgress("done-before", "done", 20, staged=20))
        rates = _rates(bars)
        assert rates["done-before"].strip() == "-  img/s" and rates["[bold]all"].strip() == "-  img/s"
        bars.update(StageProgress("new", "fetching", 10, staged=0))
        time.sleep(0.05)
        bars.update(StageProgress("new", "fetching", 10, staged=5))
        rates = _rates(bars)
    # 5 new images over the elapsed time: a finite positive rate, the 20 old ones not counted.
    new_rate = float(rates["new"].split()[0])
    overall = float(rates["[bold]all"].split()[0])
    assert 0 < new_rate < 5 / 0.05 + 1 and 0 < overall <= new_rate * 1.5
