"""Does embedding channels by name help when test images present their channels differently?

Synthetic cells with three stains, each with its own look: `dna` (a nucleus blob), `actin` (a ring
at the cell edge) and `tubulin` (radial filaments). The class is where a phenotype shows: no
puncta (0), or bright puncta in the dna (1), actin (2) or tubulin (3) channel, so telling classes
apart needs knowing which channel is which. Every training and fitting image stores its channels
as [dna, actin, tubulin] with IDR-style labels (DAPI, Phalloidin, alpha-tubulin) in KEY.json.

Per seed, tiny ChAda-ViTs are pretrained with DINO (`chadavit.train`, the same settings) on the
same shards, once with `channel_embedding="slot"` (the paper) and once with `"name"` (vocabulary
built from the shards' labels). Their CLS features are then scored with chadavit-bench's kNN
(k 20, T 0.07) and linear probe, fitted on images in the training order and evaluated on:
- `same order`: [dna, actin, tubulin];
- `permuted`: the same images stored as [tubulin, dna, actin], named accordingly;
- `actin missing`: [dna, tubulin] (class 2's phenotype is then invisible: at most 75% is reachable).
The bench hands each dataset's channel names to the models (slot models ignore them).

Usage: python scripts/channel_names_experiment.py [--out DIR] [--seeds 0 1] [--epochs 4]
Prints a table (accuracy %, mean and per-seed) and writes DIR/channel_names_scores.csv.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import chadavit
from chadavit.data.testing import write_image_shards
from chadavit.train.config import TrainConfig
from chadavit.train.loop import train
from chadavit_bench.datasets.base import DownstreamDataset, Record
from chadavit_bench.embed import EmbedSetting, extract_embeddings
from chadavit_bench.protocols.knn import run_knn
from chadavit_bench.protocols.linear import run_linear_probe

SIZE = 32
STAINS = ("dna", "actin", "tubulin")
RAW_LABELS = {"dna": "DAPI", "actin": "Phalloidin", "tubulin": "alpha-tubulin"}
STAIN_OF = {label: stain for stain, label in RAW_LABELS.items()}
N_CLASSES = 4
TEST_ORDERS = {
    "same order": ("dna", "actin", "tubulin"),
    "permuted": ("tubulin", "dna", "actin"),
    "actin missing": ("dna", "tubulin"),
}
MODES = ("slot", "name")
MODEL = {
    "embed_dim": 64,
    "depth": 3,
    "num_heads": 2,
    "img_size": SIZE,
    "patch_size": 8,
    "drop_path_rate": 0.0,
}
TRAINING = {
    "data.batch_size": 32,
    "data.num_workers": 0,
    "data.image_size": SIZE,
    "augment.global_crop_size": SIZE,
    "augment.local_crop_size": 16,
    "augment.n_local_crops": 2,
    "augment.blur_sigma": [0.015, 0.3],
    "augment.intensity_shift": [-0.05, 0.05],
    "dino.out_dim": 512,
    "dino.hidden_dim": 128,
    "dino.bottleneck_dim": 64,
    "dino.warmup_teacher_temp_epochs": 0,
    "dino.teacher_temp": 0.04,
    "dino.center_momentum": 0.99,
    "optim.base_lr": 0.02,
    "optim.warmup_epochs": 1,
    "optim.weight_decay_end": 0.04,
    "save_every": 100_000,
    "threads": 2,
}


def _cell(rng: np.random.Generator, label: int) -> dict[str, np.ndarray]:
    """One cell's three stains (float in [0, 1]); puncta in the stain the class names."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cy, cx = rng.uniform(0.4, 0.6, size=2) * SIZE
    radius = rng.uniform(0.28, 0.38) * SIZE
    distance = np.hypot(yy - cy, xx - cx)
    angle = np.arctan2(yy - cy, xx - cx)
    nucleus = np.exp(-(distance**2) / (2 * (0.35 * radius) ** 2))
    ring = np.exp(-((distance - radius) ** 2) / (2 * 1.2**2))
    spokes = int(rng.integers(5, 9))
    filaments = (np.cos(spokes * angle + rng.uniform(0, np.pi)) ** 8) * (distance < radius)
    planes = {"dna": nucleus, "actin": ring, "tubulin": filaments * 0.8}
    if label > 0:
        stain = STAINS[label - 1]
        puncta = np.zeros_like(nucleus)
        for _ in range(int(rng.integers(4, 7))):
            r, a = rng.uniform(0.1, 0.9) * radius, rng.uniform(0, 2 * np.pi)
            py, px = cy + r * np.sin(a), cx + r * np.cos(a)
            puncta += np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 1.0**2))
        planes[stain] = planes[stain] + puncta
    noise = {s: rng.normal(0, 0.04, size=(SIZE, SIZE)) for s in STAINS}
    return {s: np.clip(planes[s] / max(planes[s].max(), 1e-6) * 0.9 + noise[s], 0, 1) for s in STAINS}


def make_cells(n: int, seed: int) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    rng.shuffle(labels)
    return [_cell(rng, int(label)) for label in labels], labels


@dataclass
class Cells(DownstreamDataset):
    """Cells held in memory, with their channels stored in `channel_names` order."""

    planes: tuple[dict[str, np.ndarray], ...] = ()

    def _read(self, record: Record) -> np.ndarray:
        cell = self.planes[int(record.key)]
        stains = [STAIN_OF[name] for name in self.channel_names]
        return np.stack([cell[stain] for stain in stains]).astype(np.float32)


def as_dataset(cells: list[dict[str, np.ndarray]], labels: np.ndarray, order: tuple[str, ...]) -> Cells:
    records = [Record(key=str(i), split="all", label=int(label)) for i, label in enumerate(labels)]
    names = tuple(RAW_LABELS[s] for s in order)  # raw labels, as a dataset would name them
    classes = tuple(str(c) for c in range(N_CLASSES))
    return Cells("cells", Path("."), "classification", names, records, classes, planes=tuple(cells))


def write_training_shards(data_dir: Path, n: int) -> None:
    cells, _ = make_cells(n, seed=1000)
    items = [
        ((np.stack([cell[s] for s in STAINS]) * 255).astype(np.uint8), [RAW_LABELS[s] for s in STAINS])
        for cell in cells
    ]
    write_image_shards(data_dir, items, 64)


def pretrain(data_dir: Path, out_dir: Path, mode: str, seed: int, epochs: int) -> Path:
    overrides = {**MODEL, **({"channel_embedding": "name"} if mode == "name" else {})}
    config = TrainConfig(
        data_dir=str(data_dir), out_dir=str(out_dir), model="chadavit_petit", model_overrides=overrides,
        epochs=epochs, seed=seed,
    ).with_overrides(TRAINING)  # fmt: skip
    return train(config).model_dir


def features(model: torch.nn.Module, dataset: Cells) -> np.ndarray:
    return extract_embeddings(model, "x", dataset, EmbedSetting(img_size=SIZE), None, workers=1).cls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs and the CSV")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="channel-names-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    write_training_shards(out / "data", args.train_images)
    fit_cells, fit_labels = make_cells(400, seed=2000)
    test_cells, test_labels = make_cells(400, seed=3000)
    fit_set = as_dataset(fit_cells, fit_labels, TEST_ORDERS["same order"])
    rows = []
    for seed in args.seeds:
        for mode in MODES:
            started = time.perf_counter()
            model_dir = pretrain(out / "data", out / f"{mode}-seed{seed}", mode, seed, args.epochs)
            model = chadavit.from_pretrained(model_dir)
            fit = features(model, fit_set)
            for condition, order in TEST_ORDERS.items():
                query = features(model, as_dataset(test_cells, test_labels, order))
                knn = run_knn(fit, fit_labels, query, test_labels, N_CLASSES)["accuracy"]
                linear = run_linear_probe(fit, fit_labels, query, test_labels, N_CLASSES, seed)["accuracy"]
                rows.append({"mode": mode, "seed": seed, "test": condition, "knn": knn, "linear": linear})
                print(
                    f"{mode} seed {seed} {condition}: kNN {100 * knn:.1f} linear {100 * linear:.1f}",
                    flush=True,
                )
            print(f"{mode} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    with (out / "channel_names_scores.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(
        "\n| model | test images | kNN acc % (mean; seeds) | linear acc % (mean; seeds) |\n|---|---|---|---|"
    )
    for mode in MODES:
        for condition in TEST_ORDERS:
            picked = [r for r in rows if r["mode"] == mode and r["test"] == condition]
            cells = []
            for metric in ("knn", "linear"):
                values = [100 * r[metric] for r in picked]
                cells.append(f"{np.mean(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})")
            print(f"| {mode} | {condition} | {cells[0]} | {cells[1]} |")
    print(f"\nscores: {out / 'channel_names_scores.csv'}")


if __name__ == "__main__":
    main()
