"""`regression`: ridge regression of the target (NF-kB and regression manifests), or the authors'
linear head trained with MSE (`--regression-head linear_mse`, one fit per seed)."""

from __future__ import annotations

from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Heading, Paragraph, Table
from chadavit_bench.tasks.base import Headline, Task, TaskOutput
from chadavit_bench.tasks.checks import constant_target
from chadavit_bench.tasks.context import ModelContext
from chadavit_bench.tasks.selection import EachOfKind


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.paper_heads import run_linear_mse_regression
    from chadavit_bench.protocols.regression import run_regression  # scikit-learn: only when a task runs

    (name,) = datasets
    dataset, fit, evaluate = context.splits(name)
    targets = dataset.targets(range(len(dataset)))
    warning = constant_target(targets[fit], targets[evaluate])
    output = TaskOutput()
    for kind, x in context.usable_features(name, "regression", "r2", output):
        config = context.config.regression
        if config.head == "linear_mse":
            for seed in range(context.config.seeds):
                metrics = run_linear_mse_regression(
                    x[fit], targets[fit], x[evaluate], targets[evaluate], seed
                )
                output.rows += context.rows(metrics, name, "regression", kind, 1.0, seed)
        else:
            metrics = run_regression(x[fit], targets[fit], x[evaluate], targets[evaluate], config)
            output.rows += context.rows(metrics, name, "regression", kind, 1.0, 0)
        output.flags += context.flag(name, "regression", kind, warning)
    return output


def section(report: ReportContext) -> list[Block]:
    table = report.table("regression")
    if table is None:
        return []
    head = ((report.run.get("config") or {}).get("regression") or {}).get("head", "ridge")
    text = (
        "The authors' head: nn.Linear trained with MSE on raw features (AdamW, 150 epochs), mean over seeds."
        if head == "linear_mse"
        else "Ridge regression on standardised features."
    )
    return [Heading("Regression"), Paragraph(text), Table(table)]


TASK = Task(
    name="regression",
    help="ridge regression of the target (NF-kB and regression manifests)",
    datasets=EachOfKind("regression", ("nfkb",)),
    run=run,
    headline=Headline("r2", "R2"),
    section=section,
)
