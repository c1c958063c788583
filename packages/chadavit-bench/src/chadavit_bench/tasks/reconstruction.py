"""`reconstruction`: decode Actin from the embedding of DAPI + Tubulin (BBBC021)."""

from __future__ import annotations

from chadavit_bench.embed import EmbedSetting, channel_targets
from chadavit_bench.imaging import in_unit_range
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Heading, Paragraph, Table
from chadavit_bench.tasks.base import Headline, Skip, Task, TaskOutput
from chadavit_bench.tasks.context import ModelContext
from chadavit_bench.tasks.selection import Together

DATASET = "bbbc021"


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.reconstruction import run_reconstruction

    (name,) = datasets
    dataset, fit, evaluate = context.splits(name)
    config = context.config
    settings = config.reconstruction
    inputs = config.reconstruction_inputs
    fixed = context.fixed_channels
    if fixed is not None and fixed != len(inputs):
        # A standard ViT's Conv2d takes exactly `fixed` channels; handing it the held-out channel
        # too (or a copy) would leak the target, so there is no fair way to run it here.
        reason = (
            f"{context.label} takes {fixed}-channel images; the reconstruction encodes "
            f"{len(inputs)} ({', '.join(inputs)}) to predict {config.reconstruction_target}"
        )
        return TaskOutput(skips=[Skip("reconstruction", name, context.label, reason)])
    setting = EmbedSetting(
        img_size=config.img_size,
        channels=inputs,
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
    unit_range = in_unit_range(dataset.intensity)
    output = TaskOutput()
    for seed in range(config.seeds):
        metrics = run_reconstruction(
            x[fit], targets[fit], x[evaluate], targets[evaluate], seed, settings, unit_range
        )
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
