"""Small synthetic datasets written in each public layout, with a known learnable signal.

- Classification (BloodMNIST, CyclOPS, BBBC048, the manifest): every class has its own
  combination of per-channel structures (nucleus, ring, puncta, diffuse, pair, stripes), drawn at a
  random orientation and position on a noisy cell body, each channel with its own random focus
  (blur), gain and background: the classes differ in per-channel structure, not in orientation or
  intensity, so the invariances of self-supervised pretraining keep the labels.
- Regression (NF-kB): a nucleus stain (blue) and an NF-kB stain (red) whose nuclear and
  cytoplasmic levels vary; the target is the ratio of the mean red inside the nucleus to the mean
  red in the cytoplasm, computed from the written 8-bit pixels (`translocation_ratio`).
- Reconstruction (BBBC021): Actin = `actin_from(DAPI, Tubulin)`, a known function of the other
  two channels; compounds change nucleus size and tubulin spread, shared with Bray.
- Joint (Bray): five Cell Painting channels whose DNA and AGP channels follow the same compound
  effects as BBBC021's DAPI and Actin.

Everything is drawn from one seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from skimage.filters import gaussian

from chadavit_bench.datasets import bbbc021 as bbbc021_layout
from chadavit_bench.datasets import bbbc048 as bbbc048_layout
from chadavit_bench.datasets import bloodmnist as bloodmnist_layout
from chadavit_bench.datasets import bray as bray_layout
from chadavit_bench.datasets import cyclops as cyclops_layout
from chadavit_bench.datasets import nfkb as nfkb_layout
from chadavit_bench.datasets.synthetic_chammi import write_chammi

DATASETS = ("bloodmnist", "cyclops", "bbbc048", "nfkb", "bbbc021", "bray", "manifest", "chammi")
# Compounds shared by the synthetic BBBC021 and Bray, with (nucleus radius factor, tubulin spread).
COMPOUNDS = {"DMSO": (1.0, 1.0), "taxol": (1.35, 0.6), "nocodazole": (0.7, 1.6), "cytochalasin B": (1.0, 2.2)}
NFKB_CONDITIONS = ("0", "5", "10", "20")
MANIFEST_CLASSES = ("round", "spread", "dividing", "apoptotic")
MANIFEST_CHANNELS = ("nucleus", "membrane", "mito", "golgi")


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the synthetic datasets; small by default so that tests and `make demo` stay fast."""

    image_size: int = 32
    train_per_class: int = 6
    eval_per_class: int = 3
    regression_images: int = 60
    reconstruction_images: int = 60
    bray_images: int = 40
    seed: int = 0


def scaled(config: SyntheticConfig, factor: int) -> SyntheticConfig:
    """`config` with every dataset `factor` times larger (same image size and seed)."""
    return dataclasses.replace(
        config,
        train_per_class=config.train_per_class * factor,
        eval_per_class=config.eval_per_class * factor,
        regression_images=config.regression_images * factor,
        reconstruction_images=config.reconstruction_images * factor,
        bray_images=config.bray_images * factor,
    )


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float64)
    return np.meshgrid(coords, coords, indexing="ij")


def _spot(size: int, y: float, x: float, sigma: float) -> np.ndarray:
    yy, xx = _grid(size)
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2.0 * sigma**2))


def _disk(size: int, y: float, x: float, radius: float, softness: float = 1.0) -> np.ndarray:
    yy, xx = _grid(size)
    distance = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
    return 1.0 / (1.0 + np.exp((distance - radius) / softness))


PATTERNS = ("nucleus", "ring", "puncta", "diffuse", "pair", "stripes")


def _pattern(kind: str, size: int, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One channel's structure in [0, 1]; every pattern is drawn at a random orientation."""
    yy, xx = _grid(size)
    distance = np.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2)
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "nucleus":
        return _disk(size, centre[0], centre[1], 0.16 * size, softness=1.0)
    if kind == "ring":
        return np.exp(-((distance - 0.34 * size) ** 2) / (2 * (0.04 * size) ** 2))
    if kind == "puncta":
        plane = np.zeros((size, size))
        for _ in range(6):
            radius, theta = rng.uniform(0.05, 0.35) * size, rng.uniform(0, 2 * np.pi)
            spot = _spot(
                size, centre[0] + radius * np.sin(theta), centre[1] + radius * np.cos(theta), 0.035 * size
            )
            plane = np.maximum(plane, spot)
        return plane
    if kind == "diffuse":
        return 0.55 * _disk(size, centre[0], centre[1], 0.38 * size, softness=2.0)
    if kind == "pair":
        offset = 0.18 * size * np.array([np.sin(angle), np.cos(angle)])
        first, second = centre + offset, centre - offset
        return np.maximum(
            _disk(size, first[0], first[1], 0.1 * size, 0.8),
            _disk(size, second[0], second[1], 0.1 * size, 0.8),
        )
    if kind == "stripes":
        along = (yy - centre[0]) * np.sin(angle) + (xx - centre[1]) * np.cos(angle)
        return (
            0.5
            * (1 + np.cos(2 * np.pi * along / (0.2 * size)))
            * _disk(size, centre[0], centre[1], 0.4 * size)
        )
    raise ValueError(f"unknown pattern {kind!r}")


def class_patterns(label: int, n_channels: int) -> list[str]:
    """The pattern of each channel for a class: the class number's digits in base len(PATTERNS).

    Classes that share one channel's pattern differ in another, so telling them apart needs the
    per-channel structure; patterns do not depend on orientation, like real localisation classes.
    """
    base = len(PATTERNS)
    return [PATTERNS[(label // base**channel + channel) % base] for channel in range(n_channels)]


def class_image(
    label: int, n_classes: int, n_channels: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """A (C, H, W) float image in [0, 1] of one cell whose per-channel patterns encode `label`."""
    if n_classes > len(PATTERNS) ** max(n_channels, 1):
        raise ValueError(
            f"{n_classes} classes need more than {n_channels} channels of {len(PATTERNS)} patterns"
        )
    centre = size / 2 - 0.5 + rng.uniform(-0.08, 0.08, size=2) * size
    body = 0.15 * _disk(size, centre[0], centre[1], 0.42 * size, softness=1.5)
    planes = []
    for kind in class_patterns(label, n_channels):
        plane = body + rng.uniform(0.6, 0.9) * _pattern(kind, size, centre, rng)
        # Nuisances that say nothing about the class: focus, gain and background of each channel.
        plane = gaussian(plane, sigma=rng.uniform(0.0, 1.5) * size / 32, preserve_range=True)
        plane = rng.uniform(0.5, 1.3) * plane + rng.uniform(0.0, 0.2)
        planes.append(np.clip(plane + rng.normal(0.0, 0.04, size=(size, size)), 0.0, 1.0))
    return np.stack(planes)


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def to_uint16(values: np.ndarray, peak: int) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * peak).astype(np.uint16)


def _balanced_labels(n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.repeat(np.arange(n_classes), per_class)
    return rng.permutation(labels)


def write_bloodmnist(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/bloodmnist/bloodmnist.npz`, MedMNIST v2 keys; RGB (N, H, W, 3) uint8, labels (N, 1)."""
    folder = root / bloodmnist_layout.NAME
    folder.mkdir(parents=True, exist_ok=True)
    n_classes = len(bloodmnist_layout.CLASS_NAMES)
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in (
        ("train", config.train_per_class),
        ("val", config.eval_per_class),
        ("test", config.eval_per_class),
    ):
        labels = _balanced_labels(n_classes, per_class, rng)
        images = [class_image(int(k), n_classes, 3, config.image_size, rng) for k in labels]
        arrays[f"{split}_images"] = np.stack([np.moveaxis(to_uint8(im), 0, -1) for im in images])
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    path = folder / "bloodmnist.npz"
    np.savez_compressed(path, **arrays)
    return path


def _split_labels(n_classes: int, config: SyntheticConfig, rng: np.random.Generator) -> list[tuple[str, int]]:
    rows = [("train", int(k)) for k in _balanced_labels(n_classes, config.train_per_class, rng)]
    rows += [("val", int(k)) for k in _balanced_labels(n_classes, config.eval_per_class, rng)]
    return rows


def write_cyclops(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/cyclops/<CLASS>/<CLASS>_<id>_<gfp|rfp>.tif` (uint16) and split CSVs in the reference format."""
    folder = root / cyclops_layout.NAME
    classes = cyclops_layout.CLASS_NAMES
    rows: dict[str, list[list[str]]] = {"train": [], "val": []}
    for image_id, (split, label) in enumerate(_split_labels(len(classes), config, rng), start=1000):
        image = class_image(label, len(classes), 2, config.image_size, rng)
        name = classes[label]
        for channel, plane in zip(cyclops_layout.CHANNEL_NAMES, image, strict=True):
            path = folder / cyclops_layout.channel_file(name, str(image_id), channel)
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, to_uint16(plane, 4095))
        # Written as a Python set literal like the reference CSVs, in the opposite order on purpose.
        rows[split].append([name, str(image_id), "{'rfp', 'gfp'}"])
    for split, filename in cyclops_layout.SPLIT_FILES.items():
        _write_csv(folder / filename, rows[split])
    return folder


def write_bbbc048(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/bbbc048/<phase>/<id>_Ch{3,4,6}.ome.jpg` and split CSVs `id,class,[files]`."""
    folder = root / bbbc048_layout.NAME
    classes = bbbc048_layout.CLASS_NAMES
    rows: dict[str, list[list[str]]] = {"train": [], "val": []}
    for image_id, (split, label) in enumerate(_split_labels(len(classes), config, rng), start=1):
        image = class_image(label, len(classes), 3, config.image_size, rng)
        files = []
        for channel, plane in zip(bbbc048_layout.CHANNEL_NAMES, image, strict=True):
            relative = f"{classes[label]}/{image_id}_{channel}.ome.jpg"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(plane)).save(folder / relative, format="JPEG", quality=95)
            files.append(relative)
        rows[split].append([str(image_id), str(label), str(files)])
    for split, filename in bbbc048_layout.SPLIT_FILES.items():
        _write_csv(folder / filename, rows[split])
    return folder


def translocation_ratio(rgb: np.ndarray, nucleus: np.ndarray, cytoplasm: np.ndarray) -> float:
    """The synthetic NF-kB target: mean red in the nucleus over mean red in the cytoplasm."""
    red = rgb[..., 0].astype(np.float64)
    return float(red[nucleus].mean() / max(red[cytoplasm].mean(), 1e-6))


def nfkb_cell(
    size: int, condition: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic NF-kB cell: (H, W, 3) uint8 RGB and its nucleus and cytoplasm masks."""
    yy, xx = _grid(size)
    centre = size / 2 - 0.5 + rng.uniform(-2, 2, size=2)
    distance = np.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2)
    nucleus, cytoplasm = distance < 0.2 * size, (distance >= 0.24 * size) & (distance < 0.42 * size)
    nuclear_level = rng.uniform(0.1, 0.9) * (1 + int(condition) / 20)
    cytoplasm_level = rng.uniform(0.25, 0.6)
    red = np.where(nucleus, nuclear_level, np.where(cytoplasm, cytoplasm_level, 0.02))
    blue = np.where(nucleus, 0.8, 0.02)
    green = 0.3 * _disk(size, centre[0], centre[1], 0.42 * size)
    rgb = np.stack([red, green, blue], axis=-1) + rng.normal(0, 0.02, size=(size, size, 3))
    return to_uint8(rgb / 1.8), nucleus, cytoplasm


def write_nfkb(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/nfkb/256x256/<cat>/<image>.png` RGB cells and `single_ratio_images_{train,val}.csv`."""
    folder = root / nfkb_layout.NAME
    rows: dict[str, list[list[str]]] = {"train": [], "val": []}
    for index in range(config.regression_images):
        split = "val" if index % 4 == 3 else "train"
        condition = NFKB_CONDITIONS[index % len(NFKB_CONDITIONS)]
        pixels, nucleus, cytoplasm = nfkb_cell(config.image_size, condition, rng)
        name = f"170721_A{index:02d}_1_{index * 7}_{index * 11}.png"
        path = folder / nfkb_layout.IMAGE_FOLDER / condition / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="RGB").save(path)
        rows[split].append([condition, name, f"{translocation_ratio(pixels, nucleus, cytoplasm):.4f}"])
    for split, filename in nfkb_layout.SPLIT_FILES.items():
        _write_csv(folder / filename, rows[split], header=["cat", "image_name", "ratio"])
    return folder


def actin_from(dapi: np.ndarray, tubulin: np.ndarray) -> np.ndarray:
    """The synthetic BBBC021 reconstruction target: cortical actin where tubulin is and DNA is not."""
    return np.clip(1.6 * tubulin * (1.0 - dapi), 0.0, 1.0)


def _compound_cell(size: int, compound: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DNA and tubulin planes in [0, 1] of one cell shaped by the compound's effect.

    A single-cell crop centred on its nucleus (within +-10 % of the image), the unit that
    profiling benchmarks of BBBC021 embed: an image embedding summarises a cell's phenotype, and
    a field's layout of cells at random places is a nuisance no CLS token is meant to keep.
    """
    nucleus_factor, spread = COMPOUNDS[compound]
    y, x = rng.uniform(0.4 * size, 0.6 * size, size=2)
    dna = _disk(size, y, x, 0.08 * size * nucleus_factor, softness=0.8)
    tubulin = 0.8 * _spot(size, y, x, 0.1 * size * spread)
    brightness = rng.uniform(0.7, 1.0)
    return np.clip(dna * brightness, 0, 1), np.clip(tubulin * brightness, 0, 1)


def write_bbbc021(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/bbbc021/BBBC021_v1_image.csv` and 16-bit TIFFs under `Week1/Week1_<plate>/`."""
    folder = root / bbbc021_layout.NAME
    header = [
        "TableNumber",
        "ImageNumber",
        "Image_FileName_DAPI",
        "Image_PathName_DAPI",
        "Image_FileName_Tubulin",
        "Image_PathName_Tubulin",
        "Image_FileName_Actin",
        "Image_PathName_Actin",
        "Image_Metadata_Plate_DAPI",
        "Image_Metadata_Well_DAPI",
        "Replicate",
        "Image_Metadata_Compound",
        "Image_Metadata_Concentration",
    ]
    rows = []
    compounds = list(COMPOUNDS)
    for index in range(config.reconstruction_images):
        compound = compounds[index % len(compounds)]
        plate = f"Week1_{22120 + index % 3}"
        well = f"{'BCDEFG'[index % 6]}{index // 6 + 2:02d}"
        path_name = f"Week1/{plate}"
        dna, tubulin = _compound_cell(config.image_size, compound, rng)
        actin = actin_from(dna, tubulin)
        names = []
        for wavelength, plane in (("w1", dna), ("w2", tubulin), ("w4", actin)):
            name = f"{plate}_{well}_s1_{wavelength}.tif"
            (folder / path_name).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / path_name / name, to_uint16(plane + 0.01, 4095))
            names.append(name)
        concentration = "0.0" if compound == "DMSO" else "1.0"
        rows.append(
            [
                "1",
                str(index + 1),
                names[0],
                path_name,
                names[1],
                path_name,
                names[2],
                path_name,
                plate,
                well,
                "1",
                compound,
                concentration,
            ]
        )
    _write_csv(folder / bbbc021_layout.METADATA, rows, header=header)
    return folder


def bray_planes(size: int, compound: str, rng: np.random.Generator) -> np.ndarray:
    """(5, H, W) in [0, 1]: DNA, ER, RNA, AGP, Mito of one cell; DNA and AGP as in BBBC021."""
    dna, tubulin = _compound_cell(size, compound, rng)
    er = np.clip(0.6 * tubulin + 0.1, 0, 1)
    rna = np.clip(0.5 * dna + 0.3 * tubulin, 0, 1)
    agp = actin_from(dna, tubulin)
    mito = np.clip(0.7 * tubulin**2 + rng.normal(0, 0.03, size=dna.shape), 0, 1)
    return np.stack([dna, er, rna, agp, mito])


def write_bray(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/bray/manifest.csv` and five 8-bit PNGs per image (DNA, ER, RNA, AGP, Mito)."""
    folder = root / bray_layout.NAME
    compounds = list(COMPOUNDS)
    rows = []
    for index in range(config.bray_images):
        compound = compounds[index % len(compounds)]
        files = []
        planes = bray_planes(config.image_size, compound, rng)
        for channel, plane in zip(bray_layout.CHANNEL_NAMES, planes, strict=True):
            relative = f"images/plate24277/{index:04d}_{channel}.png"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(plane)).save(folder / relative)
            files.append(relative)
        rows.append([f"bray-{index:04d}", json.dumps(files), compound])
    _write_csv(folder / "manifest.csv", rows, header=["key", "channels", "compound"])
    return folder


def write_manifest(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/manifests/cells.csv`: a user's own 4-channel classification data as a manifest."""
    folder = root / "manifests"
    rows = []
    for index, (split, label) in enumerate(_split_labels(len(MANIFEST_CLASSES), config, rng)):
        image = class_image(label, len(MANIFEST_CLASSES), len(MANIFEST_CHANNELS), config.image_size, rng)
        files = []
        for channel, plane in zip(MANIFEST_CHANNELS, image, strict=True):
            relative = f"cells/{index:04d}_{channel}.png"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(plane)).save(folder / relative)
            files.append(relative)
        rows.append(
            [
                f"cell-{index:04d}",
                json.dumps(files),
                MANIFEST_CLASSES[label],
                split,
                json.dumps(MANIFEST_CHANNELS),
            ]
        )
    path = folder / "cells.csv"
    _write_csv(path, rows, header=["key", "channels", "label", "split", "channel_names"])
    return path


def _write_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


WRITERS: dict[str, Callable[[Path, SyntheticConfig, np.random.Generator], Path]] = {
    "bloodmnist": write_bloodmnist,
    "cyclops": write_cyclops,
    "bbbc048": write_bbbc048,
    "nfkb": write_nfkb,
    "bbbc021": write_bbbc021,
    "bray": write_bray,
    "manifest": write_manifest,
    "chammi": write_chammi,
}


# The pretraining images' own random stream (it was len(DATASETS) before CHAMMI joined them: kept, so
# the same seed still writes the same pretraining images).
PRETRAINING_STREAM = 7
# The pretraining corpus cycles through these families; cells come first as four of the seven
# downstream datasets are classifications of them.
PRETRAINING_FAMILIES = ("cell", "nfkb", "cell", "bbbc021", "cell", "bray")


def pretraining_image(family: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One unlabelled (C, H, W) uint8 image of a family, drawn by the downstream datasets' generators."""
    if family == "cell":
        n_channels = int(rng.integers(1, 6))
        n_classes = len(PATTERNS) ** n_channels
        return to_uint8(class_image(int(rng.integers(0, n_classes)), n_classes, n_channels, size, rng))
    compound = str(rng.choice(list(COMPOUNDS)))
    if family == "nfkb":
        pixels, _, _ = nfkb_cell(size, str(rng.choice(NFKB_CONDITIONS)), rng)
        return np.moveaxis(pixels, -1, 0).copy()
    if family == "bbbc021":
        dna, tubulin = _compound_cell(size, compound, rng)
        return to_uint8(np.stack([dna, tubulin, actin_from(dna, tubulin)]) + 0.01)
    if family == "bray":
        return to_uint8(bray_planes(size, compound, rng))
    raise ValueError(
        f"unknown pretraining family {family!r}; expected one of {sorted(set(PRETRAINING_FAMILIES))}"
    )


def pretraining_images(n_images: int, size: int, seed: int) -> Iterator[np.ndarray]:
    """`n_images` unlabelled images for self-supervised pretraining, 1 to 5 channels.

    The same generators as the downstream datasets (in-domain, as pretraining on IDR is for real
    microscopy) but their own random stream: no downstream image, train or test, is among them.
    """
    rng = np.random.default_rng([seed, PRETRAINING_STREAM])
    for index in range(n_images):
        yield pretraining_image(PRETRAINING_FAMILIES[index % len(PRETRAINING_FAMILIES)], size, rng)


def write_pretraining_shards(
    data_dir: Path, n_images: int, size: int = 32, seed: int = 0, shard_size: int = 500
) -> list[str]:
    """An idrcell-v1 dataset (`DIR/shards/*.tar`, `DIR/dataset.json`) that `chadavit-train` reads."""
    from chadavit.data.testing import write_image_shards

    images = pretraining_images(n_images, size, seed)
    return write_image_shards(data_dir, images, shard_size, seed, study="idr0000-synthetic-pretraining")


def write_synthetic(
    root: Path, datasets: Sequence[str] = DATASETS, config: SyntheticConfig = SyntheticConfig()
) -> dict[str, Path]:
    """Write the chosen synthetic datasets under `root` in their public layouts; returns their paths."""
    unknown = [name for name in datasets if name not in WRITERS]
    if unknown:
        raise ValueError(f"unknown synthetic datasets {unknown}; expected some of {list(WRITERS)}")
    written = {}
    for name in datasets:
        # One stream per dataset, so writing a subset gives the same files as writing them all.
        rng = np.random.default_rng([config.seed, DATASETS.index(name)])
        written[name] = WRITERS[name](root, config, rng)
    return written
