"""`linear`: a linear probe at 1 %, 10 % and 100 % of the training split, over seeds: on cached,
standardised features (default), or the authors' probe on augmented images (`--protocol paper`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Figure, Heading, Paragraph, Table
from chadavit_bench.report.tables import preferred_features, wide
from chadavit_bench.tasks.base import Headline, Task, TaskOutput
from chadavit_bench.tasks.checks import one_class
from chadavit_bench.tasks.context import ModelContext
from chadavit_bench.tasks.knn import PUBLIC_DATASETS
from chadavit_bench.tasks.selection import EachOfKind


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.imaging import in_unit_range
    from chadavit_bench.protocols.linear import run_linear_probe  # scikit-learn: only when a task runs
    from chadavit_bench.protocols.lowdata import stratified_subset
    from chadavit_bench.protocols.online_probe import CROP_SCALE, OnlineImages, run_online_probe

    (name,) = datasets
    dataset, fit, evaluate = context.splits(name)
    labels = dataset.labels(range(len(dataset)))
    warning = one_class(labels[fit], labels[evaluate], dataset.class_names)
    config = context.config
    fixed = context.fixed_channels  # a standard ViT sees the first channels, as its embeddings do

    def read(index: int) -> np.ndarray:
        return dataset.read(index)[:fixed]

    images = OnlineImages(
        read,
        config.img_size,
        config.batch_size,
        config.device,
        crop_scale=dict(config.online_crop_scales).get(name, CROP_SCALE),
        unit_range=in_unit_range(dataset.intensity),
    )
    output = TaskOutput()
    for kind, x in context.usable_features(name, "linear", "accuracy", output):
        for fraction in config.fractions:
            for seed in range(config.seeds):
                chosen = fit[stratified_subset(labels[fit], fraction, seed)]
                if config.linear_online:
                    metrics = run_online_probe(
                        context.loaded.model, images, chosen, labels[chosen], x[evaluate], labels[evaluate],
                        len(dataset.class_names), kind, seed, config.online_probe,
                    )  # fmt: skip
                else:
                    metrics = run_linear_probe(
                        x[chosen], labels[chosen], x[evaluate], labels[evaluate], len(dataset.class_names),
                        seed, config.linear,
                    )  # fmt: skip
                output.rows += context.rows(metrics, name, "linear", kind, fraction, seed)
        output.flags += context.flag(name, "linear", kind, warning)
    return output


def section(report: ReportContext) -> list[Block]:
    summary = report.summary
    linear = summary[(summary["task"] == "linear") & (summary["metric"] == "accuracy")]
    if linear.empty:
        return []
    from chadavit_bench.report import figures  # matplotlib: only when a report is drawn

    curves = pd.concat([preferred_features(part) for _, part in linear.groupby("dataset", sort=True)])
    figure = report.drew(
        figures.low_data_curves(curves, report.figure_dir / "fig4_low_data.png", report.models)
    )
    return [
        Heading("Linear probe and low-data regimes (Figure 4)"),
        Paragraph(
            "The authors' probe: a linear classifier on the frozen encoder's features of "
            "RandomResizedCrop + flip views, fresh every epoch (AdamW, 150 epochs, no standardisation), "
            "trained on a stratified, seeded fraction of the training split."
            if (report.run.get("config") or {}).get("linear_online")
            else "A linear classifier on standardised frozen features, trained on a stratified, seeded "
            "fraction of the training split."
        ),
        Figure(figure, "Linear-probe accuracy against the fraction of training data (CLS features)"),
        Table(wide(linear, ["dataset", "features", "regime"], report.models)),
    ]


TASK = Task(
    name="linear",
    help="linear probe at 1 %, 10 %, 100 % of the training split, over seeds (classification)",
    datasets=EachOfKind("classification", PUBLIC_DATASETS),
    run=run,
    headline=Headline("accuracy", "linear acc."),
    section=section,
)
