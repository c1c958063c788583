"""`knn`: weighted kNN on cosine similarity, on every classification dataset."""

from __future__ import annotations

from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Heading, Paragraph, Table
from chadavit_bench.tasks.base import Headline, Task, TaskOutput
from chadavit_bench.tasks.checks import one_class
from chadavit_bench.tasks.context import ModelContext
from chadavit_bench.tasks.selection import EachOfKind

PUBLIC_DATASETS = ("bloodmnist", "cyclops", "bbbc048")


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.knn import run_knn  # scikit-learn: only when a task runs

    (name,) = datasets
    dataset, fit, evaluate = context.splits(name)
    labels = dataset.labels(range(len(dataset)))
    warning = one_class(labels[fit], labels[evaluate], dataset.class_names)
    output = TaskOutput()
    for kind, x in context.usable_features(name, "knn", "accuracy", output):
        metrics = run_knn(
            x[fit], labels[fit], x[evaluate], labels[evaluate], len(dataset.class_names),
            context.config.knn, grid=context.config.knn_grid, sweep=context.config.knn_sweep,
        )  # fmt: skip
        output.rows += context.rows(metrics, name, "knn", kind, 1.0, 0)
        output.flags += context.flag(name, "knn", kind, warning)
    return output


def section(report: ReportContext) -> list[Block]:
    table = report.table("knn", ["accuracy", "f1_macro", "accuracy_best_of_sweep"])
    if table is None:
        return []
    text = "Cosine similarity, weighted vote, k = 20, T = 0.07 (DINO's defaults)."
    if (report.run.get("config") or {}).get("knn_sweep"):
        text += (
            " `accuracy_best_of_sweep`: the best accuracy over the authors' sweep (k 1-200, T 0.01-1, "
            "cosine and euclidean), chosen on the evaluation split itself: an upper bound."
        )
    return [Heading("kNN classification"), Paragraph(text), Table(table)]


TASK = Task(
    name="knn",
    help="weighted kNN on cosine similarity (classification datasets)",
    datasets=EachOfKind("classification", PUBLIC_DATASETS),
    run=run,
    headline=Headline("accuracy", "kNN acc."),
    section=section,
)
