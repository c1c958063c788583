"""`joint`: BBBC021 and Bray through one encoder: PCA, UMAP, separation scores (Figure 5)."""

from __future__ import annotations

import dataclasses

import numpy as np

from chadavit_bench.embed import save_npz
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Figure, Heading, Paragraph, Table
from chadavit_bench.tasks.base import Headline, Skip, Task, TaskOutput
from chadavit_bench.tasks.context import ModelContext, slug
from chadavit_bench.tasks.selection import Together

DATASETS = ("bbbc021", "bray")


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.joint import JointEmbeddingError, run_joint  # scikit-learn

    first, second = datasets
    pair = f"{first}+{second}"
    found = context.found
    compounds = {n: found[n].groups(range(len(found[n]))) for n in datasets}
    config = context.config
    output = TaskOutput()
    for kind in config.features:
        embeddings = {n: context.embeddings(n).features(kind) for n in datasets}
        unusable = [context.unusable_features(x, n, "joint", kind, "compound_transfer_accuracy")
                    for n, x in embeddings.items()]  # fmt: skip
        if any(u is not None for u in unusable):
            flags = [flag for u in unusable if u is not None for flag in u.flags]
            output.flags += flags
            output.rows += context.rows({"compound_transfer_accuracy": np.nan}, pair, "joint", kind, 1.0, 0)
            continue
        # The figure shows the first feature kind; UMAP costs seconds, so only that one gets it.
        for_figure = kind == config.features[0]
        try:
            result = run_joint(embeddings, compounds, seed=0, config=config.joint, with_umap=for_figure)
        except JointEmbeddingError as error:
            return TaskOutput(skips=[Skip("joint", pair, context.label, str(error))])
        output.rows += context.rows(result.metrics, pair, "joint", kind, 1.0, 0)
        for name in datasets:  # a standard ViT: the first 3 channels of each (the flag names them)
            partial = context.channel_subset_flags(name, "joint", kind)
            output.flags += [dataclasses.replace(flag, dataset=pair) for flag in partial]
        if for_figure and result.umap is not None:
            save_npz(
                context.out / "artifacts" / "joint" / f"{slug(context.label)}.npz",
                model=np.array(context.label),
                features=np.array(kind),
                pca=result.pca,
                umap=result.umap,
                dataset=result.dataset,
                compound=result.compound,
                explained_variance=np.array(result.explained_variance),
            )
    return output


def section(report: ReportContext) -> list[Block]:
    table = report.table("joint")
    artifacts = sorted((report.out / "artifacts" / "joint").glob("*.npz"))
    if table is None and not artifacts:
        return []
    blocks: list[Block] = [
        Heading("Joint embedding (Figure 5)"),
        Paragraph(
            "BBBC021 (3 channels) and Bray (5 channels) through the same encoder, shared compounds "
            "only. `pc1_dataset_accuracy`: how well PC1 alone separates the datasets; "
            "`pc12_compound_accuracy`: compounds from PC1 and PC2; `compound_transfer_accuracy`: "
            "kNN compound accuracy across datasets."
        ),
    ]
    if artifacts:
        from chadavit_bench.report import figures  # matplotlib: only when a report is drawn

        path = figures.joint_embedding(artifacts, report.figure_dir / "fig5_joint_embedding.png")
        blocks.append(
            Figure(
                report.drew(path), "PCA and UMAP of the joint embedding (colour: compound, marker: dataset)"
            )
        )
    if table is not None:
        blocks.append(Table(table))
    return blocks


TASK = Task(
    name="joint",
    help="joint embedding of BBBC021 and Bray: PCA, UMAP, separation scores",
    datasets=Together(DATASETS),
    run=run,
    headline=Headline("compound_transfer_accuracy", "compound transfer"),
    section=section,
)
