"""The report: `build.py` assembles it, `headline.py` scores, `tables.py` and `figures.py` draw,
`document.py` renders Markdown and HTML; each task's section lives with the task (`chadavit_bench.tasks`)."""

from chadavit_bench.report.build import ReportError, ReportFiles, build_report
from chadavit_bench.report.headline import headline_scores

__all__ = ["ReportError", "ReportFiles", "build_report", "headline_scores"]
