"""`run-all`: every task whose data is present, for every model, into one output folder.

Outputs under OUT: results.parquet / results.csv (one row per model, dataset, task, features,
regime, seed, metric), summary.csv (mean and std over seeds), run.json (models, datasets, skips,
configuration), artifacts/ (joint-embedding coordinates and attention maps, from which the report's
figures are drawn), cache/ (embeddings), figures/, report.md and report.html.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from chadavit.atomic import atomic_write_text
from chadavit_bench import __version__
from chadavit_bench.datasets import DatasetNotFoundError, DownstreamDataset, discover
from chadavit_bench.embed import (
    FEATURE_KINDS,
    Embeddings,
    EmbedSetting,
    channel_targets,
    extract_embeddings,
    read_images,
    save_npz,
)
from chadavit_bench.models import LoadedModel, ModelSpec, load_model, unique_labels
from chadavit_bench.protocols.attention import attention_per_channel
from chadavit_bench.protocols.joint import JointConfig, JointEmbeddingError, run_joint
from chadavit_bench.protocols.knn import KnnConfig, run_knn
from chadavit_bench.protocols.linear import LinearProbeConfig, run_linear_probe
from chadavit_bench.protocols.lowdata import FRACTIONS, stratified_subset
from chadavit_bench.protocols.reconstruction import ReconstructionConfig, run_reconstruction
from chadavit_bench.protocols.regression import RegressionConfig, run_regression
from chadavit_bench.results import Row, merge, read_results, rows_for, to_frame, write_tables
from chadavit_bench.tasks import TASKS

logger = logging.getLogger(__name__)

RECONSTRUCTION_DATASET = "bbbc021"
JOINT_DATASETS = ("bbbc021", "bray")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run needs besides models and data; defaults follow the paper."""

    img_size: int = 224
    seeds: int = 5  # the paper's linear probes average 5 seeds
    features: tuple[str, ...] = FEATURE_KINDS
    fractions: tuple[float, ...] = FRACTIONS
    knn: KnnConfig = field(default_factory=KnnConfig)
    knn_grid: bool = False
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    regression: RegressionConfig = field(default_factory=RegressionConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    reconstruction_inputs: tuple[str, ...] = ("DAPI", "Tubulin")
    reconstruction_target: str = "Actin"
    joint: JointConfig = field(default_factory=JointConfig)
    attention_images: int = 2
    attention_datasets: int = 4
    max_images_per_split: int | None = None
    batch_size: int = 64
    workers: int = 4
    device: str = "cpu"


def quick_config(config: BenchConfig, seeds: int | None = None) -> BenchConfig:
    """`--quick`: small subsets, 2 seeds, short training, no kNN grid: a smoke run of every task."""
    return dataclasses.replace(
        config,
        seeds=seeds if seeds is not None else 2,
        knn_grid=False,
        linear=dataclasses.replace(config.linear, epochs=30, min_steps=200),
        reconstruction=dataclasses.replace(config.reconstruction, epochs=15),
        joint=dataclasses.replace(config.joint, max_per_group=50),
        attention_images=1,
        max_images_per_split=config.max_images_per_split or 256,
    )


@dataclass(frozen=True)
class Job:
    task: str
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class Skip:
    task: str
    dataset: str
    model: str  # "*" when the data are missing for every model
    reason: str


@dataclass
class RunOutcome:
    out: Path
    results: pd.DataFrame
    skipped: list[Skip]
    models: list[dict]
    datasets: dict[str, dict]


@dataclass
class Progress:
    """Callbacks a CLI uses to draw a progress bar; library code never prints."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[str], None] = lambda description: None


def slug(label: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "model"
    return f"{readable}-{hashlib.sha1(label.encode()).hexdigest()[:6]}"


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
    tasks: Sequence[str], found: dict[str, DownstreamDataset], missing: dict[str, str], config: BenchConfig
) -> tuple[list[Job], list[Skip]]:
    """The jobs to run and, for every task, the datasets it would have used but cannot."""
    jobs: list[Job] = []
    skips: list[Skip] = []
    wanted_kind = {"knn": "classification", "linear": "classification", "regression": "regression"}
    expected = {"knn": ("bloodmnist", "cyclops", "bbbc048"), "linear": ("bloodmnist", "cyclops", "bbbc048")}
    expected["regression"] = ("nfkb",)
    for task in tasks:
        if task in wanted_kind:
            names = [n for n, d in found.items() if d.kind == wanted_kind[task]]
            jobs += [Job(task, (n,)) for n in names]
            skips += [Skip(task, n, "*", missing[n]) for n in expected[task] if n in missing]
        elif task == "reconstruction":
            if RECONSTRUCTION_DATASET in found:
                jobs.append(Job(task, (RECONSTRUCTION_DATASET,)))
            else:
                reason = missing.get(RECONSTRUCTION_DATASET, "not requested")
                skips.append(Skip(task, RECONSTRUCTION_DATASET, "*", reason))
        elif task == "joint":
            absent = [n for n in JOINT_DATASETS if n not in found]
            if absent:
                reason = "; ".join(missing.get(n, f"{n} not requested") for n in absent)
                skips.append(Skip(task, "+".join(JOINT_DATASETS), "*", reason))
            else:
                jobs.append(Job(task, JOINT_DATASETS))
        elif task == "attention":
            names = list(found)[: config.attention_datasets]
            if names:
                jobs.append(Job(task, tuple(names)))
            else:
                skips.append(Skip(task, "*", "*", "no dataset is present"))
        else:
            raise ValueError(f"unknown task {task!r}; expected some of {TASKS}")
    return jobs, skips


class ModelRun:
    """Runs the jobs for one model; embeddings are computed once per dataset and setting."""

    def __init__(
        self, loaded: LoadedModel, found: dict[str, DownstreamDataset], config: BenchConfig, out: Path
    ):
        self.loaded = loaded
        self.found = found
        self.config = config
        self.out = out
        self.cache_dir = out / "cache"
        self._memory: dict[tuple[str, EmbedSetting], Embeddings] = {}

    @property
    def label(self) -> str:
        return self.loaded.label

    def embeddings(self, name: str, setting: EmbedSetting | None = None) -> Embeddings:
        setting = setting or EmbedSetting(img_size=self.config.img_size)
        if (name, setting) not in self._memory:
            self._memory[(name, setting)] = extract_embeddings(
                self.loaded.model,
                self.loaded.checksum,
                self.found[name],
                setting,
                self.cache_dir,
                batch_size=self.config.batch_size,
                device=self.config.device,
                workers=self.config.workers,
            )
        return self._memory[(name, setting)]

    def run(self, job: Job) -> tuple[list[Row], list[Skip]]:
        handler = getattr(self, f"_{job.task}")
        return handler(*job.datasets)

    def _splits(self, name: str) -> tuple[DownstreamDataset, np.ndarray, np.ndarray]:
        dataset = self.found[name]
        return dataset, dataset.indices(dataset.fit_split), dataset.indices(dataset.eval_split)

    def _knn(self, name: str) -> tuple[list[Row], list[Skip]]:
        dataset, fit, evaluate = self._splits(name)
        labels = dataset.labels(range(len(dataset)))
        rows = []
        for kind in self.config.features:
            x = self.embeddings(name).features(kind)
            metrics = run_knn(
                x[fit], labels[fit], x[evaluate], labels[evaluate], len(dataset.class_names),
                self.config.knn, grid=self.config.knn_grid,
            )  # fmt: skip
            rows += rows_for(metrics, self.label, name, "knn", kind, 1.0, 0)
        return rows, []

    def _linear(self, name: str) -> tuple[list[Row], list[Skip]]:
        dataset, fit, evaluate = self._splits(name)
        labels = dataset.labels(range(len(dataset)))
        rows = []
        for kind in self.config.features:
            x = self.embeddings(name).features(kind)
            for fraction in self.config.fractions:
                for seed in range(self.config.seeds):
                    chosen = fit[stratified_subset(labels[fit], fraction, seed)]
                    metrics = run_linear_probe(
                        x[chosen], labels[chosen], x[evaluate], labels[evaluate], len(dataset.class_names),
                        seed, self.config.linear,
                    )  # fmt: skip
                    rows += rows_for(metrics, self.label, name, "linear", kind, fraction, seed)
        return rows, []

    def _regression(self, name: str) -> tuple[list[Row], list[Skip]]:
        dataset, fit, evaluate = self._splits(name)
        targets = dataset.targets(range(len(dataset)))
        rows = []
        for kind in self.config.features:
            x = self.embeddings(name).features(kind)
            metrics = run_regression(
                x[fit], targets[fit], x[evaluate], targets[evaluate], self.config.regression
            )
            rows += rows_for(metrics, self.label, name, "regression", kind, 1.0, 0)
        return rows, []

    def _reconstruction(self, name: str) -> tuple[list[Row], list[Skip]]:
        dataset, fit, evaluate = self._splits(name)
        settings = self.config.reconstruction
        setting = EmbedSetting(
            img_size=self.config.img_size,
            channels=self.config.reconstruction_inputs,
            patch_maps=settings.use_patch_tokens,
        )
        embeddings = self.embeddings(name, setting)
        if settings.use_patch_tokens:
            x, kind = embeddings.patch_maps, "patch-map"
        else:
            x, kind = embeddings.cls, "cls"
        targets = channel_targets(
            dataset,
            self.config.reconstruction_target,
            settings.target_size,
            self.cache_dir,
            self.config.workers,
        )
        rows = []
        for seed in range(self.config.seeds):
            metrics = run_reconstruction(x[fit], targets[fit], x[evaluate], targets[evaluate], seed, settings)
            rows += rows_for(metrics, self.label, name, "reconstruction", kind, 1.0, seed)
        return rows, []

    def _joint(self, first: str, second: str) -> tuple[list[Row], list[Skip]]:
        compounds = {n: self.found[n].groups(range(len(self.found[n]))) for n in (first, second)}
        rows: list[Row] = []
        for kind in self.config.features:
            embeddings = {n: self.embeddings(n).features(kind) for n in (first, second)}
            # The figure shows the first feature kind; UMAP costs seconds, so only that one gets it.
            for_figure = kind == self.config.features[0]
            try:
                result = run_joint(
                    embeddings, compounds, seed=0, config=self.config.joint, with_umap=for_figure
                )
            except JointEmbeddingError as error:
                return [], [Skip("joint", f"{first}+{second}", self.label, str(error))]
            rows += rows_for(result.metrics, self.label, f"{first}+{second}", "joint", kind, 1.0, 0)
            if for_figure and result.umap is not None:
                save_npz(
                    self.out / "artifacts" / "joint" / f"{slug(self.label)}.npz",
                    model=np.array(self.label),
                    features=np.array(kind),
                    pca=result.pca,
                    umap=result.umap,
                    dataset=result.dataset,
                    compound=result.compound,
                    explained_variance=np.array(result.explained_variance),
                )
        return rows, []

    def _attention(self, *names: str) -> tuple[list[Row], list[Skip]]:
        arrays: dict[str, np.ndarray] = {}
        meta = []
        for name in names:
            dataset = self.found[name]
            chosen = dataset.indices(dataset.eval_split)[: self.config.attention_images]
            positions = list(range(dataset.n_channels))
            images = read_images(dataset, chosen, positions, self.config.img_size, workers=1)
            try:
                maps = attention_per_channel(self.loaded.model, images, self.config.device)
            except (TypeError, NotImplementedError) as error:
                return [], [Skip("attention", name, self.label, str(error))]
            for index, image, attention in zip(chosen, images, maps, strict=True):
                arrays[f"image_{len(meta)}"] = image.numpy()
                arrays[f"attention_{len(meta)}"] = attention
                meta.append(
                    {
                        "dataset": name,
                        "key": dataset.records[index].key,
                        "channels": list(dataset.channel_names),
                    }
                )
        save_npz(
            self.out / "artifacts" / "attention" / f"{slug(self.label)}.npz",
            meta=np.array(json.dumps({"model": self.label, "samples": meta})),
            **arrays,
        )
        return [], []


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_run_json(out: Path, outcome: RunOutcome, config: BenchConfig, tasks: Sequence[str]) -> None:
    """run.json: merged with an earlier run in the same folder, like the result table."""
    previous = _read_json(out / "run.json")
    models = {m["label"]: m for m in previous.get("models", [])}
    models.update({m["label"]: m for m in outcome.models})
    datasets = {**previous.get("datasets", {}), **outcome.datasets}
    skipped = [s for s in previous.get("skipped", []) if s["task"] not in tasks]
    skipped += [asdict(s) for s in outcome.skipped]
    document = {
        "chadavit_bench_version": __version__,
        "models": list(models.values()),
        "datasets": datasets,
        "skipped": skipped,
        "config": json.loads(json.dumps(asdict(config), default=list)),
    }
    atomic_write_text(out / "run.json", json.dumps(document, indent=2, sort_keys=True) + "\n")


def run_all(
    specs: Sequence[ModelSpec],
    data_root: Path | None,
    out: Path,
    config: BenchConfig = BenchConfig(),
    tasks: Sequence[str] = TASKS,
    manifests: Sequence[Path] = (),
    datasets: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run `tasks` for every model on every dataset present; write tables, run.json and the report."""
    from chadavit_bench.report import build_report  # the report imports matplotlib: only when needed

    progress = progress or Progress()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; expected some of {list(TASKS)}")
    specs = unique_labels(list(specs))
    if not specs:
        raise ValueError("give at least one --model")
    found, missing = discover(data_root, manifests, datasets)
    found = {name: cap_splits(dataset, config.max_images_per_split) for name, dataset in found.items()}
    jobs, skipped = plan(tasks, found, missing, config)
    if not jobs:
        reasons = "; ".join(f"{s.task} on {s.dataset}: {s.reason}" for s in skipped) or "no dataset found"
        raise DatasetNotFoundError(f"nothing to run under {data_root}: {reasons}")
    progress.start(len(specs) * len(jobs))
    rows: list[Row] = []
    model_info = []
    for spec in specs:
        loaded = load_model(spec, config.device)
        out.mkdir(parents=True, exist_ok=True)  # only now: a model that does not load leaves no folder
        model_info.append(
            {
                "label": loaded.label,
                "spec": spec.text,
                "source": spec.source,
                "architecture": loaded.architecture,
                "name": str(getattr(loaded.model.config, "name", "")),
                "embed_dim": int(getattr(loaded.model, "embed_dim", 0)),
                "parameters": int(sum(p.numel() for p in loaded.model.parameters())),
                "checksum": loaded.checksum,
            }
        )
        runner = ModelRun(loaded, found, config, out)
        for job in jobs:
            logger.info("%s: %s on %s", loaded.label, job.task, "+".join(job.datasets))
            job_rows, job_skips = runner.run(job)
            rows += job_rows
            skipped += job_skips
            progress.advance(f"{loaded.label} · {job.task} · {'+'.join(job.datasets)}")
    results = merge(read_results(out), to_frame(rows))
    dataset_info = {
        name: {
            "kind": d.kind,
            "images": len(d),
            "channels": list(d.channel_names),
            "classes": len(d.class_names),
            "fit_split": d.fit_split,
            "eval_split": d.eval_split,
            "fingerprint": d.fingerprint(),
        }
        for name, d in found.items()
    }
    outcome = RunOutcome(out, results, skipped, model_info, dataset_info)
    write_tables(out, results)
    write_run_json(out, outcome, config, tasks)
    build_report(out)
    return outcome


__all__ = [
    "TASKS",
    "BenchConfig",
    "Job",
    "Progress",
    "RunOutcome",
    "Skip",
    "quick_config",
    "run_all",
]
