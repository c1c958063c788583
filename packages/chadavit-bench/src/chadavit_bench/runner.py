"""`run-all`: every task whose data is present, for every model, into one output folder.

Outputs under OUT: results.parquet / results.csv (one row per model, dataset, task, features,
regime, seed, metric), summary.csv (mean and std over seeds), run.json (models, datasets, skips,
configuration), artifacts/ (joint-embedding coordinates and attention maps, from which the report's
figures are drawn), cache/ (embeddings), figures/, report.md and report.html.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chadavit_bench import __version__
from chadavit_bench.config import BenchConfig, quick_config
from chadavit_bench.datasets import (
    LOADERS,
    DatasetFormatError,
    DatasetNotFoundError,
    DownstreamDataset,
    discover,
)
from chadavit_bench.intensity import apply_intensity
from chadavit_bench.models import LoadedModel, ModelSpec, ModelSpecError, load_model, unique_labels
from chadavit_bench.protocols.lowdata import stratified_subset
from chadavit_bench.results import merge, read_results, to_frame, write_tables
from chadavit_bench.runjson import read_run_json, write_run_json
from chadavit_bench.settings import run_settings, stamp_intensity
from chadavit_bench.tasks import REGISTRY, TASKS, Flag, Job, Skip
from chadavit_bench.tasks.context import ModelContext, slug

logger = logging.getLogger(__name__)


class OutputFolderError(ValueError):
    """`--out` names a file, or a folder that cannot be created or written."""


class BenchRunError(RuntimeError):
    """The run started and failed (an image that cannot be read, a protocol or a write that failed)."""


@dataclass
class RunOutcome:
    out: Path
    results: pd.DataFrame
    skipped: list[Skip]
    models: list[dict]
    datasets: dict[str, dict]
    warnings: list[Flag]


@dataclass
class Progress:
    """Callbacks a CLI uses to draw a progress bar; library code never prints."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[str], None] = lambda description: None


def cap_splits(dataset: DownstreamDataset, limit: int | None, seed: int = 0) -> DownstreamDataset:
    """At most `limit` images per split, stratified for classification, seeded: the same subset every run."""
    if limit is None:
        return dataset
    keep: list[np.ndarray] = []
    for split in sorted({r.split for r in dataset.records}):
        indices = dataset.indices(split)
        if len(indices) <= limit:
            keep.append(indices)
        elif dataset.kind == "classification":
            labels = dataset.labels(indices)
            keep.append(indices[stratified_subset(labels, limit / len(indices), seed)])
        else:
            keep.append(np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False)))
    return dataset.subset(np.sort(np.concatenate(keep)))


def plan(
    tasks: Sequence[str],
    found: dict[str, DownstreamDataset],
    missing: dict[str, str],
    config: BenchConfig,
    requested: Sequence[str] = (),
) -> tuple[list[Job], list[Skip]]:
    """The jobs to run and, for every task, the datasets it would have used but cannot.

    A dataset that could not be loaded, that no task's skip names, and that is a manifest found in
    ROOT/manifests/ or a `requested` name (`--dataset`), is listed as skipped by every task ("*"):
    it never disappears without a word."""
    unknown = [t for t in tasks if t not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY)}")
    jobs: list[Job] = []
    skips: list[Skip] = []
    for name in tasks:
        task_jobs, task_skips = REGISTRY[name].datasets.plan(name, found, missing, config.attention_datasets)
        jobs += task_jobs
        skips += task_skips
    named = {skip.dataset for skip in skips}
    skips += [
        Skip("*", name, "*", reason)
        for name, reason in missing.items()
        if name not in named and (name not in LOADERS or name in requested)
    ]
    return jobs, skips


def check_requested(
    found: dict[str, DownstreamDataset],
    missing: dict[str, str],
    manifests: Sequence[Path],
    names: Sequence[str] | None,
) -> None:
    """A `--manifest` file that cannot be used, or a `--dataset` name that names nothing, is an error.

    (A named dataset that is absent or broken is a listed skip, see `plan`: the others still run.)"""
    for path in manifests:
        for key in (str(path), path.stem):
            if key in missing:
                raise DatasetFormatError(f"--manifest {path}: {missing[key]}")
    for name in names or ():
        if name not in found and name not in missing and Path(name).stem not in found:
            raise DatasetNotFoundError(
                f"--dataset {name!r} is neither a dataset ({', '.join(LOADERS)}) nor a manifest's name"
            )


def check_output_folder(out: Path) -> None:
    """Refuse, before any work, an --out that is a file or lies where no folder can be made."""
    if out.exists():
        if not out.is_dir():
            raise OutputFolderError(f"--out {out} is a file; give a folder (it is created if absent)")
        existing = out
    else:
        existing = next(p for p in out.absolute().parents if p.exists())
        if not existing.is_dir():
            raise OutputFolderError(f"--out {out} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"--out {out} cannot be written: no write permission on {existing}")


def check_image_size(loaded: LoadedModel, size: int) -> None:
    """Refuse, before any work, an `--img-size` the model cannot encode (`ModelSpecError`).

    The rule is the model's own check of a batch's size (a multiple of the patch size for ChAda-ViT
    and the one-channel ViT; any size for the inter-channel ViT, which resizes)."""
    check = getattr(loaded.model, "_check_spatial", None)
    if check is None:
        return
    try:
        check(size, size)
    except ValueError as error:
        reason = str(error).split("; ", 1)[-1]  # without "the batch's images are N x N pixels"
        raise ModelSpecError(f"--img-size {size} cannot be used with {loaded.label}: {reason}") from error


def run_json_document(
    previous: dict, outcome: RunOutcome, config: BenchConfig, tasks: Sequence[str], replaced: set[tuple]
) -> dict:
    """run.json merged with an earlier run in the same folder, like the result table."""
    models = {m["label"]: m for m in previous.get("models", [])}
    models.update({m["label"]: m for m in outcome.models})
    datasets = {**previous.get("datasets", {}), **outcome.datasets}
    skipped = [s for s in previous.get("skipped", []) if s["task"] not in tasks]
    skipped += [asdict(s) for s in outcome.skipped]
    # A warning stays as long as the rows it is about: dropped when a run replaced them.
    warnings = [
        w for w in previous.get("warnings", []) if (w["model"], w["dataset"], w["task"]) not in replaced
    ]
    warnings += [asdict(w) for w in outcome.warnings]
    return {
        "chadavit_bench_version": __version__,
        "models": list(models.values()),
        "datasets": datasets,
        "skipped": skipped,
        "warnings": warnings,
        "config": json.loads(json.dumps(asdict(config), default=list)),
    }


def _model_info(spec: ModelSpec, loaded) -> dict:
    return {
        "label": loaded.label,
        "spec": spec.text,
        "source": spec.source,
        "architecture": loaded.architecture,
        "name": str(getattr(loaded.model.config, "name", "")),
        "embed_dim": int(getattr(loaded.model, "embed_dim", 0)),
        "parameters": int(sum(p.numel() for p in loaded.model.parameters())),
        "checksum": loaded.checksum,
    }


def _dataset_info(dataset: DownstreamDataset) -> dict:
    return {
        "kind": dataset.kind,
        "images": len(dataset),
        "channels": list(dataset.channel_names),
        "classes": len(dataset.class_names),
        "fit_split": dataset.fit_split,
        "eval_split": dataset.eval_split,
        "fingerprint": dataset.fingerprint(),
    }


def run_all(
    specs: Sequence[ModelSpec],
    data_root: Path | None,
    out: Path,
    config: BenchConfig | None = None,
    tasks: Sequence[str] = TASKS,
    manifests: Sequence[Path] = (),
    datasets: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run `tasks` for every model on every dataset present; write tables, run.json and the report.

    Unusable inputs raise before any work (`ModelSpecError`, `DatasetNotFoundError`,
    `DatasetFormatError`, `OutputFolderError`, `ResultsError`, `RunFileError`, `ValueError`); a
    failure once the evaluation has started raises `BenchRunError`.
    """
    from chadavit_bench.report import build_report  # the report imports matplotlib: only when needed

    config = config or BenchConfig()
    progress = progress or Progress()
    specs = unique_labels(list(specs))
    if not specs:
        raise ValueError("give at least one --model")
    check_output_folder(out)
    previous_results, previous_run = read_results(out), read_run_json(out)  # unreadable: fail now
    found, missing = discover(data_root, manifests, datasets, config.dataset_sizes)
    check_requested(found, missing, manifests, datasets)
    found = {name: cap_splits(dataset, config.max_images_per_split) for name, dataset in found.items()}
    jobs, skipped = plan(tasks, found, missing, config, datasets or ())
    if not jobs:
        reasons = "; ".join(f"{s.task} on {s.dataset}: {s.reason}" for s in skipped) or "no dataset found"
        raise DatasetNotFoundError(f"nothing to run under {data_root}: {reasons}")
    # Reads the fit split of every dataset a job uses (the `dataset` mode's window): the run has started.
    for name in sorted({name for job in jobs for name in job.datasets}):
        mode = config.intensity_for(name)
        try:
            found[name] = apply_intensity(found[name], mode)
        except (OSError, ValueError) as error:
            raise BenchRunError(f"{name}: fitting --intensity {mode} failed: {error}") from error
    progress.start(len(specs) * len(jobs))
    frames: list[pd.DataFrame] = []
    flags: list[Flag] = []
    model_info = []
    # Every model is loaded and checked against --img-size before the first evaluation: a model
    # that does not load or fit is refused with nothing evaluated and no folder made.
    models = [load_model(spec, config.device) for spec in specs]
    for loaded in models:
        check_image_size(loaded, config.img_size)
    out.mkdir(parents=True, exist_ok=True)
    for spec, loaded in zip(specs, models, strict=True):
        model_info.append(_model_info(spec, loaded))
        context = ModelContext(loaded, found, config, out)
        rows = []
        for job in jobs:
            where = f"{loaded.label}: {job.task} on {'+'.join(job.datasets)}"
            logger.info("%s", where)
            try:
                output = REGISTRY[job.task].run(context, job.datasets)
            except (OSError, ValueError, RuntimeError) as error:  # dataset errors are one of these
                raise BenchRunError(f"{where} failed: {error}") from error
            rows += output.rows
            skipped += output.skips
            flags += output.flags
            progress.advance(f"{loaded.label} · {job.task} · {'+'.join(job.datasets)}")
        frames.append(stamp_intensity(to_frame(rows, run_settings(config, loaded.checksum)), config))
    new = pd.concat(frames, ignore_index=True)
    replaced = set(map(tuple, new[["model", "dataset", "task"]].drop_duplicates().to_numpy()))
    results = merge(previous_results, new)
    # The intensity mode each dataset is (or, unused by these tasks, would be) read with.
    dataset_info = {
        name: {**_dataset_info(d), "intensity": config.intensity_for(name)} for name, d in found.items()
    }
    outcome = RunOutcome(out, results, skipped, model_info, dataset_info, flags)
    document = run_json_document(previous_run, outcome, config, tasks, replaced)
    try:
        write_tables(out, results, document["warnings"])
        write_run_json(out, document)
        build_report(out)
    except OSError as error:
        raise BenchRunError(f"writing the results under {out} failed: {error}") from error
    return outcome


__all__ = [
    "TASKS",
    "BenchConfig",
    "BenchRunError",
    "Flag",
    "Job",
    "OutputFolderError",
    "Progress",
    "RunOutcome",
    "Skip",
    "plan",
    "quick_config",
    "run_all",
    "slug",
]
