"""`idrcell merge`: combine every experiment's finished staging folder into the dataset."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idrcell import __version__
from idrcell.dataset import (
    DatasetSummary,
    OutputDirError,
    SampleSource,
    ShardLimits,
    check_output_dir,
    current_summary,
    write_dataset,
)
from idrcell.experiments import Experiment
from idrcell.journal import stage_dir
from idrcell.shards import read_tar


class MergeError(RuntimeError):
    """The staging folders cannot be merged yet (missing, unfinished or staged with other settings)."""


@dataclass(frozen=True)
class MergeResult:
    summary: DatasetSummary
    already_done: bool


def _finished_stages(experiments: list[Experiment], out: Path, seed: int) -> list[dict[str, Any]]:
    stages, missing = [], []
    for experiment in experiments:
        summary = stage_dir(out, experiment.name).read_stage()
        if summary is None:
            missing.append(experiment.omero_name)
            continue
        if summary["experiment"] != experiment.to_row() or summary["params"]["seed"] != seed:
            raise MergeError(
                f"{experiment.omero_name} was staged with another list row or seed "
                f"(seed {summary['params']['seed']}); stage it again into a new --out"
            )
        stages.append(summary)
    if missing:
        raise MergeError(f"{len(missing)} experiment(s) are not fully staged yet: {', '.join(missing)}")
    return stages


def _fingerprint(stages: list[dict[str, Any]], seed: int, limits: ShardLimits) -> str:
    payload = {"builder": __version__, "seed": seed, "limits": limits.__dict__, "stages": stages}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def merge_stages(
    experiments: list[Experiment],
    out: Path | str,
    seed: int = 0,
    limits: ShardLimits = ShardLimits(),
    progress: Callable[[int, int], None] | None = None,
) -> MergeResult:
    out = Path(out)
    try:
        check_output_dir(out)
    except OutputDirError as error:
        raise MergeError(str(error)) from None
    stages = _finished_stages(experiments, out, seed)
    fingerprint = _fingerprint(stages, seed, limits)
    summary = current_summary(out, fingerprint)
    if summary is not None:
        return MergeResult(summary, already_done=True)
    sources = []
    for stage in stages:
        staging = stage_dir(out, stage["name"])
        for sample in stage["samples"]:
            path = staging.sample_path(sample["image_id"])
            sources.append(SampleSource(sample["key"], sample["bytes"], functools.partial(read_tar, path)))
    if not sources:  # stages from before empty stages were refused, or an empty list
        raise MergeError(f"nothing to merge: the {len(stages)} staged experiment(s) hold no sample")
    metadata = {
        "experiments": [stage["experiment"] for stage in stages],
        "stages": {
            stage["name"]: {
                "container_id": stage["container_id"],
                "study_info": stage["study_info"],
                "requested": stage["requested"],
                "candidates": stage["candidates"],
                "selected": stage["selected"],
                "skipped": stage["skipped"],
            }
            for stage in stages
        },
        "params": {k: v for k, v in stages[0]["params"].items() if k != "experiment"} if stages else {},
    }
    summary = write_dataset(
        out, sources, seed=seed, limits=limits, fingerprint=fingerprint, metadata=metadata, progress=progress
    )
    return MergeResult(summary, already_done=False)
