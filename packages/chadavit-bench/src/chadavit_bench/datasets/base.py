"""What every downstream dataset adapter yields: records, (C, H, W) images in [0, 1], a fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from chadavit_bench.imaging import read_channels

TaskKind = Literal["classification", "regression", "reconstruction", "joint", "chammi"]
SPLITS = ("train", "val", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The data of a dataset are absent or incomplete under the data root; the message names the files."""


class DatasetFormatError(ValueError):
    """A dataset's metadata file exists but does not follow the expected layout."""


@dataclass(frozen=True)
class Record:
    """One multiplexed image: where its channels are and what is known about it."""

    key: str
    split: str
    files: tuple[str, ...] = ()  # relative to the dataset root, one file per channel in channel order
    label: int | None = None
    target: float | None = None
    group: str | None = None  # the compound, for BBBC021 and Bray
    index: int | None = None  # the row in an array file (BloodMNIST)


@dataclass
class DownstreamDataset:
    """A dataset read from its public layout. Subclasses override `_read` when images are not files."""

    name: str
    root: Path
    kind: TaskKind
    channel_names: tuple[str, ...]
    records: list[Record]
    class_names: tuple[str, ...] = ()
    fit_split: str = "train"
    eval_split: str = "val"
    _fingerprint: str | None = field(default=None, repr=False)
    # How pixels are scaled (imaging.py); set by intensity.apply_intensity before a run reads images.
    # (Class attributes, not dataclass fields: subclasses keep their constructors.)
    intensity = "dtype"
    window = None  # a chadavit.preprocess.Window for `dataset`

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def read(self, index: int) -> np.ndarray:
        """The image at `index` as float32 (C, H, W) in [0, 1], channels in `channel_names` order."""
        image = self._read(self.records[index])
        if image.shape[0] != self.n_channels:
            raise DatasetFormatError(
                f"{self.name}: image {self.records[index].key} has {image.shape[0]} channels; "
                f"expected {self.n_channels} ({', '.join(self.channel_names)})"
            )
        return image

    def _read(self, record: Record) -> np.ndarray:
        return read_channels([self.root / name for name in record.files], self.intensity, self.window)

    def indices(self, split: str) -> np.ndarray:
        return np.array([i for i, r in enumerate(self.records) if r.split == split], dtype=np.int64)

    def labels(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.array([self.records[i].label for i in indices], dtype=np.int64)

    def targets(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.array([self.records[i].target for i in indices], dtype=np.float64)

    def groups(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.array([self.records[i].group or "" for i in indices], dtype=str)

    def subset(self, indices: Sequence[int] | np.ndarray) -> DownstreamDataset:
        """The same dataset restricted to some records (same class names, new fingerprint)."""
        records = [self.records[i] for i in indices]
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.records = records
        clone._fingerprint = None
        return clone

    def data_files(self) -> list[Path]:
        """The files whose size and mtime define the dataset's content for the embedding cache."""
        return [self.root / name for record in self.records for name in record.files]

    def fingerprint(self) -> str:
        """sha256 of the records (keys, splits, labels, targets) and every data file's name, size, mtime.

        Sizes and mtimes stand in for content hashes: hashing every pixel of a large dataset on each
        run would cost as much as reading it. Touching or replacing a file invalidates the cache.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(json.dumps([self.name, list(self.channel_names)]).encode())
            # The scaling is part of what an embedding was computed from (the embedding cache key).
            window = None if self.window is None else [self.window.low, self.window.high]
            digest.update(json.dumps([self.intensity, window]).encode())
            for record in self.records:
                digest.update(
                    json.dumps([record.key, record.split, record.label, record.target, record.index]).encode()
                )
            for path in self.data_files():
                stat = path.stat()
                digest.update(f"{path.relative_to(self.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def require_files(name: str, root: Path, records: Sequence[Record], source: str | None = None) -> None:
    """Fail with one sentence naming the missing files when records point at absent channel files."""
    missing = [root / f for record in records for f in record.files if not (root / f).is_file()]
    if not missing:
        return
    total = sum(len(record.files) for record in records)
    if source is None:
        where = f"listed in the split are missing under {root}"
        fix = "download the dataset into that folder (see docs/bench.md)"
    else:
        where, fix = (
            f"listed in {source} are missing",
            "fix the paths (relative ones start at the manifest's folder)",
        )
    raise DatasetNotFoundError(
        f"{name}: {len(missing)} of {total} channel files {where} (first: {missing[0]}); {fix}"
    )


def require_path(name: str, path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{name}: expected {what} at {path} (see docs/bench.md for the layout)")
    return path
