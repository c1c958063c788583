"""`OUT/report.md` and `OUT/report.html` from `OUT/results.parquet`, `OUT/run.json` and `OUT/artifacts/`.

The report can be rebuilt at any time (`chadavit-bench report OUT`): it reads only those files.
The common parts (models, datasets, headline scores, warnings, skips) are drawn here; each task's
section comes from its registry entry, in the registry's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from chadavit.atomic import atomic_write_text
from chadavit_bench import __version__
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Figure, Heading, Paragraph, Table, to_html, to_markdown
from chadavit_bench.report.headline import headline_scores
from chadavit_bench.report.tables import WARNING_MARK, dataset_table, model_table, wide
from chadavit_bench.report.verdict import verdict_blocks
from chadavit_bench.results import read_results, summarise
from chadavit_bench.runjson import read_run_json

TITLE = "ChAda-ViT downstream evaluation"


class ReportError(FileNotFoundError):
    """The output folder holds no results to report."""


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: list[Path]


def _headline_blocks(report: ReportContext) -> list[Block]:
    scores = headline_scores(report.summary)
    if scores.empty:
        return []
    from chadavit_bench.report import figures  # matplotlib: only when a report is drawn

    path = figures.score_bars(scores, report.figure_dir / "fig1_scores.png", report.models)
    return [
        Heading("Headline scores (Figure 1)"),
        Paragraph(
            "Each benchmark's headline metric on a 0 to 100 scale: accuracy or R2 times 100, "
            "clipped at 0; CLS features, all training data."
        ),
        Figure(report.drew(path), "Headline scores per benchmark, models side by side"),
        Table(wide(scores.assign(mean=scores["score"]), ["benchmark"], report.models, digits=1)),
    ]


def labels_in_run_order(summary: pd.DataFrame, run_order: list[str]) -> list[str]:
    """The summary's model labels (settings included when they differ), in the run's model order."""
    pairs = summary[["raw_model", "model"]].drop_duplicates().itertuples(index=False)
    by_model: dict[str, list[str]] = {}
    for raw, label in pairs:
        by_model.setdefault(raw, []).append(label)
    ordered = [raw for raw in run_order if raw in by_model] + sorted(set(by_model) - set(run_order))
    return [label for raw in ordered for label in sorted(by_model[raw])]


def _settings_blocks(summary: pd.DataFrame) -> list[Block]:
    """One sentence when the rows were made under different settings (then the labels name them)."""
    if (summary["model"] == summary["raw_model"]).all():
        return []
    return [
        Paragraph(
            "These results were made under different settings (image size, intensity mode, protocol, "
            "seed count or weights): each model label names the settings of its numbers, and numbers "
            "of different settings are never averaged together."
        )
    ]


def _warning_blocks(warnings: list[dict]) -> list[Block]:
    if not warnings:
        return []
    return [
        Heading("Warnings"),
        Paragraph(
            f"These evaluations ran but their numbers mean less than they seem (cells marked{WARNING_MARK} "
            "below; `n/a` where the embeddings were not numbers)."
        ),
        Table(pd.DataFrame(warnings)[["model", "dataset", "task", "features", "reason"]]),
    ]


def _protocol_blocks(run: dict) -> list[Block]:
    """The evaluation protocol of the last run (`--protocol`), named when it is the authors'."""
    if (run.get("config") or {}).get("protocol") != "paper":
        return []
    return [
        Paragraph(
            "Protocol: **paper** (`--protocol paper`): the authors' kNN sweep beside the fixed k = 20, "
            "T = 0.07 row, Resize 256 + CenterCrop 224 image preparation, BloodMNIST at 28 px, each "
            "dataset's pixels scaled as the authors' loaders scale them (the `intensity` column of "
            "results.csv: raw counts for BBBC021 and Bray) unless `--intensity` was given. "
            "docs/bench.md lists what differs from the default protocol."
        )
    ]


def build_report(out: Path) -> ReportFiles:
    """Write report.md, report.html and the figures under `out/figures/`."""
    from chadavit_bench.tasks import REGISTRY  # task modules import this package's helpers

    results = read_results(out)
    if results is None:
        raise ReportError(
            f"{out} has no results.parquet; run `chadavit-bench run-all` with --out {out} first"
        )
    run = read_run_json(out)
    warnings = run.get("warnings", [])
    run_order = [m["label"] for m in run.get("models", [])] or sorted(results["model"].unique())
    summary = summarise(results, warnings)
    models = labels_in_run_order(summary, run_order)
    report = ReportContext(out=out, summary=summary, run=run, models=models)
    blocks: list[Block] = [
        Heading(TITLE, 1),
        *verdict_blocks(out),
        Paragraph(
            f"Written by chadavit-bench {__version__}. Every number is the mean over seeds "
            "(± standard deviation where there are several); all rows are in `results.csv` and "
            "`results.parquet`, the means in `summary.csv`."
        ),
        *_settings_blocks(summary),
        *_protocol_blocks(run),
        Heading("Models"),
        Table(model_table(run)),
        Heading("Datasets"),
        Table(dataset_table(run)),
    ]
    blocks += _warning_blocks(warnings)
    blocks += _headline_blocks(report)
    for task in REGISTRY.values():
        if task.section is not None:
            blocks += task.section(report)
    skipped = run.get("skipped", [])
    if skipped:
        blocks += [Heading("Skipped"), Table(pd.DataFrame(skipped)[["task", "dataset", "model", "reason"]])]

    markdown_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(markdown_path, to_markdown(blocks, out))
    atomic_write_text(html_path, to_html(blocks, TITLE))
    return ReportFiles(markdown=markdown_path, html=html_path, figures=report.figures)
