"""`reconstruction`: decode Actin from the embedding of DAPI + Tubulin (BBBC021)."""

from __future__ import annotations

from chadavit_bench.embed import EmbedSetting, channel_targets
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Heading, Paragraph, Table
from chadavit_bench.tasks.base import Headline, Task, TaskOutput
from chadavit_bench.tasks.context import ModelContext
from chadavit_bench.tasks.selection import Together

DATASET = "bbbc021"


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.reconstruction import run_reconstruction

    (name,) = datasets
    dataset, fit, evaluate = context.splits(name)
    config = context.config
    settings = config.reconstruction
    setting = EmbedSetting(
        img_size=config.img_size,
        channels=config.reconstruction_inputs,
        patch_maps=settings.use_patch_tokens,
        prepare=config.image_prep,
    )
    embeddings = context.embeddings(name, setting)
    if settings.use_patch_tokens:
        x, kind = embeddings.patch_maps, "patch-map"
    else:
        x, kind = embeddings.cls, "cls"
    unusable = context.unusable_features(x, name, "reconstruction", kind, "r2")
    if unusable is not None:
        return unusable
    targets = channel_targets(
        dataset, config.reconstruction_target, settings.target_size, context.cache_dir, config.workers
    )
    output = TaskOutput()
    for seed in range(config.seeds):
        metrics = run_reconstruction(x[fit], targets[fit], x[evaluate], targets[evaluate], seed, settings)
        output.rows += context.rows(metrics, name, "reconstruction", kind, 1.0, seed)
    return output


def section(report: ReportContext) -> list[Block]:
    table = report.table("reconstruction")
    if table is None:
        return []
    return [
        Heading("Channel reconstruction"),
        Paragraph(
            "A convolutional decoder on the frozen embedding of DAPI and Tubulin predicts Actin; "
            "`*_mean_image` rows score the train split's mean image, the baseline to beat."
        ),
        Table(table),
    ]


TASK = Task(
    name="reconstruction",
    help="decode Actin from the embedding of DAPI + Tubulin (BBBC021)",
    datasets=Together((DATASET,)),
    run=run,
    headline=Headline("r2", "recon. R2"),
    section=section,
)
