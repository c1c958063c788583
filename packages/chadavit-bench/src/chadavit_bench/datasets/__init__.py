"""Downstream datasets in their public layouts, found under one data root (default `$CHADAVIT_DATA`).

| name | folder under the root | task |
|---|---|---|
| bloodmnist | `bloodmnist/` | classification (8 classes, RGB) |
| cyclops | `cyclops/` | classification (17 classes, gfp + rfp) |
| bbbc048 | `bbbc048/` | classification (7 classes, Ch3 + Ch4 + Ch6) |
| nfkb | `nfkb/` | regression of the NF-kB translocation ratio |
| bbbc021 | `bbbc021/` | channel reconstruction (DAPI + Tubulin -> Actin), joint embedding |
| bray | `bray/` | joint embedding with BBBC021 (5 Cell Painting channels) |
| chammi-allen, chammi-hpa, chammi-cp | `chammi/{Allen,HPA,CP}/` | the CHAMMI benchmark (3, 4, 5 channels) |
| any manifest | `manifests/*.csv|parquet` or `--manifest FILE` | classification or regression |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from chadavit_bench.datasets import bbbc021, bbbc048, bloodmnist, bray, chammi, cyclops, nfkb
from chadavit_bench.datasets.base import (
    DatasetFormatError,
    DatasetNotFoundError,
    DownstreamDataset,
    Record,
)
from chadavit_bench.datasets.manifest import find_manifests, load_manifest

LOADERS: dict[str, Callable[[Path], DownstreamDataset]] = {
    "bloodmnist": bloodmnist.load,
    "cyclops": cyclops.load,
    "bbbc048": bbbc048.load,
    "nfkb": nfkb.load,
    "bbbc021": bbbc021.load,
    "bray": bray.load,
    **chammi.LOADERS,
}
MANIFEST_FOLDER = "manifests"
DATA_ROOT_VARIABLE = "CHADAVIT_DATA"

__all__ = [
    "LOADERS",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DownstreamDataset",
    "Record",
    "default_data_root",
    "discover",
    "load_dataset",
    "load_manifest",
]


def default_data_root() -> Path | None:
    value = os.environ.get(DATA_ROOT_VARIABLE)
    return Path(value) if value else None


def load_dataset(name: str, root: Path) -> DownstreamDataset:
    """One named dataset from the data root, or a manifest file when `name` is a path."""
    if name in LOADERS:
        return LOADERS[name](root)
    path = Path(name)
    if path.suffix in (".csv", ".parquet"):
        return load_manifest(path)
    raise DatasetNotFoundError(
        f"unknown dataset {name!r}; expected one of {sorted(LOADERS)} or a manifest file"
    )


def discover(
    root: Path | None,
    manifests: Sequence[Path] = (),
    names: Sequence[str] | None = None,
    sizes: Sequence[tuple[str, int]] = (),
) -> tuple[dict[str, DownstreamDataset], dict[str, str]]:
    """Every dataset present under `root` plus the given manifests; and, for the absent, why.

    `sizes` pins the file size a loader reads ((("bloodmnist", 28),): the 28 x 28 file only)."""
    pinned = dict(sizes)
    found: dict[str, DownstreamDataset] = {}
    skipped: dict[str, str] = {}
    wanted = list(LOADERS) if names is None else [n for n in names if n in LOADERS]
    for name in wanted:
        if root is None:
            skipped[name] = f"no data root (pass --data-root or set ${DATA_ROOT_VARIABLE})"
            continue
        try:
            found[name] = LOADERS[name](root, size=pinned[name]) if name in pinned else LOADERS[name](root)
        except (DatasetNotFoundError, DatasetFormatError) as error:
            skipped[name] = str(error)
        except (OSError, ValueError) as error:  # a reader's own error (e.g. pandas'), naming no dataset
            skipped[name] = f"{name}: its files under {root / name} cannot be read ({error})"
    manifest_paths = list(manifests) + (find_manifests(root / MANIFEST_FOLDER) if root is not None else [])
    for path in manifest_paths:
        if names is not None and path.stem not in names and str(path) not in names:
            continue
        try:
            dataset = load_manifest(path)
        except (DatasetNotFoundError, DatasetFormatError) as error:
            skipped[path.stem] = str(error)
            continue
        if dataset.name in found:
            skipped[str(path)] = f"a dataset named {dataset.name!r} is already loaded; rename the manifest"
            continue
        found[dataset.name] = dataset
    return found, skipped
