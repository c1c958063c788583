"""`attention`: per-channel attention maps of a few images of each dataset (Figure 3, no score)."""

from __future__ import annotations

import json

import numpy as np

from chadavit_bench.embed import read_images, save_npz
from chadavit_bench.report.context import ReportContext
from chadavit_bench.report.document import Block, Figure, Heading
from chadavit_bench.tasks.base import Skip, Task, TaskOutput
from chadavit_bench.tasks.context import ModelContext, slug
from chadavit_bench.tasks.selection import FirstPresent


def run(context: ModelContext, datasets: tuple[str, ...]) -> TaskOutput:
    from chadavit_bench.protocols.attention import attention_per_channel

    config = context.config
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for name in datasets:
        dataset = context.found[name]
        chosen = dataset.indices(dataset.eval_split)[: config.attention_images]
        positions = list(range(dataset.n_channels))
        images = read_images(dataset, chosen, positions, config.img_size, workers=1)
        try:
            maps = attention_per_channel(context.loaded.model, images, config.device)
        except (TypeError, NotImplementedError) as error:
            return TaskOutput(skips=[Skip("attention", name, context.label, str(error))])
        for index, image, attention in zip(chosen, images, maps, strict=True):
            arrays[f"image_{len(meta)}"] = image.numpy()
            arrays[f"attention_{len(meta)}"] = attention
            meta.append(
                {"dataset": name, "key": dataset.records[index].key, "channels": list(dataset.channel_names)}
            )
    save_npz(
        context.out / "artifacts" / "attention" / f"{slug(context.label)}.npz",
        meta=np.array(json.dumps({"model": context.label, "samples": meta}, allow_nan=False)),
        **arrays,
    )
    return TaskOutput()


def section(report: ReportContext) -> list[Block]:
    artifacts = sorted((report.out / "artifacts" / "attention").glob("*.npz"))
    if not artifacts:
        return []
    from chadavit_bench.report import figures  # matplotlib: only when a report is drawn

    blocks: list[Block] = [Heading("Attention maps (Figure 3)")]
    for artifact in artifacts:
        path = figures.attention_grid(artifact, report.figure_dir / f"fig3_attention_{artifact.stem}.png")
        blocks.append(Figure(report.drew(path), f"Per-channel attention, {artifact.stem.rsplit('-', 1)[0]}"))
    return blocks


TASK = Task(
    name="attention",
    help="per-channel attention maps of a few images (figure only)",
    datasets=FirstPresent(),
    run=run,
    section=section,
)
