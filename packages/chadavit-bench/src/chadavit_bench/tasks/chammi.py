"""`chammi`: the CHAMMI benchmark, 1-NN per task as MorphEm's official evaluator scores it.

Per model and feature kind: the nine tasks' macro-F1 and accuracy, each sub-dataset's mean over its
out-of-distribution tasks and the CHAMMI score, as rows of the result table; and, under
`OUT/chammi/<model>/`, the features in the layout MorphEm's `run_benchmark` reads
(`features/{Allen,HPA,CP}/<kind>.npy`) and its `knn_<distance>_full_results.csv`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chadavit_bench.datasets.chammi import SUBDATASETS, ChammiDataset
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Heading, Paragraph, Table
from chadavit_bench.tasks.base import Flag, Headline, Job, Skip, Task, TaskOutput
from chadavit_bench.tasks.context import ModelContext, slug

NAMES = tuple(sub.name for sub in SUBDATASETS)
SCORE_DATASET = "chammi"
OFFICIAL_COLUMNS = ["dataset", "task", "classifier", "accuracy", "f1_score_macro"]
TASK_LABELS = {"Task_one": "T1", "Task_two": "T2", "Task_three": "T3", "Task_four": "T4"}
SHORT = {"Allen": "WTC", "HPA": "HPA", "CP": "CP"}  # the papers call the Allen folder WTC


@dataclass(frozen=True)
class ChammiPresent:
    """One job over the CHAMMI sub-datasets found; the absent ones are skips (one when all are)."""

    def plan(self, task, found, missing, limit):
        present = tuple(name for name in NAMES if name in found)
        absent = [name for name in NAMES if name in missing]
        if not present and len(absent) == len(NAMES):
            reason = "; ".join(missing[name] for name in absent)
            return [], [Skip(task, SCORE_DATASET, "*", f"CHAMMI not found: {reason}")]
        skips = [Skip(task, name, "*", missing[name]) for name in absent]
        return ([Job(task, present)] if present else []), skips


def model_folder(label: str) -> str:
    """The model's folder under OUT/chammi: its label when that is a plain file name, else a slug."""
    return label if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label) else slug(label)


def _metric_rows(scores) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for score in scores:
        metrics[f"f1_macro_{score.task}"] = score.f1_macro
        metrics[f"accuracy_{score.task}"] = score.accuracy
    return metrics


def _export(
    folder: Path,
    kind: str,
    first_kind: bool,
    features: Mapping[str, np.ndarray],
    table: pd.DataFrame,
    metric: str,
) -> None:
    """Features as MorphEm reads them, and its results CSV (the first feature kind's at the top)."""
    from chadavit.atomic import atomic_write, atomic_write_text

    for sub_folder, x in features.items():
        path = folder / "features" / sub_folder / f"{kind}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(x, dtype=np.float32)

        def write(temporary: str, array: np.ndarray = array) -> None:
            with open(temporary, "wb") as stream:  # a file object: np.save would append .npy
                np.save(stream, array)

        atomic_write(path, write)
    csv_dir = folder if first_kind else folder / kind
    csv_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(csv_dir / f"knn_{metric}_full_results.csv", table.to_csv(index=False))


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.chammi import chammi_score, evaluate_subdataset, ood_means

    metric = context.config.chammi_metric
    found = {name: context.found[name] for name in datasets}
    for name in datasets:  # every image is read before anything is scored or written
        context.embeddings(name)
    output = TaskOutput()
    kinds = context.config.features
    for kind in kinds:
        f1: dict[tuple[str, str], float] = {}
        exported: dict[str, np.ndarray] = {}
        official: list[dict] = []
        partly_seen: list[str] = []  # a fixed-channel model's subsets of more channels than it takes
        for name, dataset in found.items():
            assert isinstance(dataset, ChammiDataset) and dataset.sub is not None
            sub = dataset.sub
            x = context.embeddings(name).features(kind)
            unusable = context.unusable_features(x, name, "chammi", kind, "f1_macro_ood_mean")
            if unusable is not None:
                output.add(unusable)
                continue
            indices = range(len(dataset))
            scores = evaluate_subdataset(
                sub.folder,
                x,
                dataset.labels(indices),
                [r.split for r in dataset.records],
                {task: dataset.task_rows(task) for task in dataset.tasks},
                leave_out=sub.leave_out if sub.leave_out in dataset.tasks else None,
                groups=dataset.groups(indices) if sub.group_column else None,
                metric=metric,
            )
            metrics = _metric_rows(scores)
            f1.update({(sub.folder, s.task): s.f1_macro for s in scores})
            mean = ood_means(f1).get(sub.folder)
            if mean is not None:
                metrics["f1_macro_ood_mean"] = mean
            output.rows += context.rows(metrics, name, "chammi", kind, 1.0, 0)
            partial = context.channel_subset_flags(name, "chammi", kind)
            output.flags += partial
            partly_seen += [name] if partial else []
            official += [
                {"dataset": sub.folder, "task": s.task, "classifier": "knn", "accuracy": s.accuracy,
                 "f1_score_macro": s.f1_macro}
                for s in scores
            ]  # fmt: skip
            if dataset.complete:
                exported[sub.folder] = x
            else:
                reason = (
                    f"a subset ({len(dataset)} of {dataset.rows} rows, --quick or --max-images): not "
                    "comparable to published CHAMMI figures; features not exported"
                )
                output.flags.append(Flag(context.label, name, "chammi", kind, reason))
        score = chammi_score(f1)
        if score is not None:
            output.rows += context.rows({"chammi_score": score}, SCORE_DATASET, "chammi", kind, 1.0, 0)
            if partly_seen:
                reason = f"{context.label} saw only the first channels of {', '.join(partly_seen)}"
                output.flags.append(Flag(context.label, SCORE_DATASET, "chammi", kind, reason))
        elif official and kind == kinds[0]:  # one skip, not one per feature kind
            output.skips.append(
                Skip("chammi", SCORE_DATASET, context.label, "the CHAMMI score needs all six OOD tasks of "
                     f"Allen, HPA and CP; scored: {sorted({d for d, _ in f1})}")
            )  # fmt: skip
        if official and len(exported) == len({row["dataset"] for row in official}):
            table = pd.DataFrame(official, columns=OFFICIAL_COLUMNS)
            folder = context.out / "chammi" / model_folder(context.label)
            _export(folder, kind, kind == kinds[0], exported, table, metric)
    return output


def _score_table(summary: pd.DataFrame, kind: str, models: list[str]) -> pd.DataFrame | None:
    """One row per model: the nine task macro-F1s, the three OOD means and the score, x 100."""
    part = summary[(summary["task"] == "chammi") & (summary["features"] == kind)]
    if part.empty:
        return None
    columns: list[tuple[str, str, str]] = []  # (dataset, metric, header)
    for sub in SUBDATASETS:
        short = SHORT[sub.folder]
        columns += [(sub.name, f"f1_macro_{t}", f"{short} {TASK_LABELS[t]}") for t in sub.tasks]
    columns += [(sub.name, "f1_macro_ood_mean", f"{SHORT[sub.folder]} OOD") for sub in SUBDATASETS]
    columns.append((SCORE_DATASET, "chammi_score", "score"))
    values = {(r.model, r.dataset, r.metric): (r.mean, r.warning) for r in part.itertuples(index=False)}
    rows = []
    for model in [m for m in models if m in set(part["model"])]:
        row = {"model": model}
        for dataset, metric, header in columns:
            mean, warning = values.get((model, dataset, metric), (np.nan, ""))
            row[header] = "" if np.isnan(mean) else f"{100 * mean:.2f}" + (" ⚠" if warning else "")
        rows.append(row)
    return pd.DataFrame(rows)


def section(report: ReportContext) -> list[Block]:
    from chadavit_bench.report.chammi_reference import reference_blocks

    present = set(report.summary.loc[report.summary["task"] == "chammi", "features"])
    kinds = [k for k in ("cls", "tokens") if k in present]
    if not kinds:
        return []
    distance = report.run.get("config", {}).get("chammi_metric", "l2")
    blocks: list[Block] = [
        Heading("CHAMMI"),
        Paragraph(
            f"1-nearest-neighbour classification on frozen features ({distance} distance), scored as "
            "MorphEm's official evaluator scores it: macro-F1 x 100 per task (T1 in distribution, "
            "T2 to T4 out of distribution; HPA T3 and CP T4 leave one cell type or plate out), each "
            "sub-dataset's mean over its out-of-distribution tasks, and the CHAMMI score, the mean of "
            "those three. Accuracies are in `results.csv`; features and the official results CSV are "
            "under `chammi/<model>/`."
        ),
    ]
    for kind in kinds:
        table = _score_table(report.summary, kind, report.models)
        if table is not None:
            blocks += [Paragraph(f"This run, {kind} features:"), Table(table)]
    return blocks + reference_blocks()


TASK = Task(
    name="chammi",
    help="the CHAMMI benchmark: 1-NN per task, scored as the official evaluator (--chammi-metric)",
    datasets=ChammiPresent(),
    run=run,
    headline=Headline("chammi_score", "score"),
    section=section,
)
