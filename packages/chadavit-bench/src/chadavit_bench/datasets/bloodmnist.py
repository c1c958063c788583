"""BloodMNIST (MedMNIST v2 and MedMNIST+): `ROOT/bloodmnist/bloodmnist[_{64,128,224}].npz`.

Each file holds `{train,val,test}_images` (N, H, W, 3) uint8 and `{train,val,test}_labels` (N, 1).
Protocols fit on `train` and report on `test`, the MedMNIST convention.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chadavit_bench.datasets.base import (
    SPLITS,
    DatasetFormatError,
    DatasetNotFoundError,
    DownstreamDataset,
    Record,
)
from chadavit_bench.imaging import scale_to_unit

NAME = "bloodmnist"
# MedMNIST v2 INFO["bloodmnist"]["label"], indices 0..7 (Yang et al., Scientific Data 2023).
CLASS_NAMES = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature granulocytes",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)
CHANNEL_NAMES = ("red", "green", "blue")
SIZES = (224, 128, 64, 28)  # MedMNIST+ sizes, then the original 28 x 28 file


def npz_name(size: int) -> str:
    return "bloodmnist.npz" if size == 28 else f"bloodmnist_{size}.npz"


@dataclass
class BloodMNIST(DownstreamDataset):
    npz_path: Path = Path()
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _read(self, record: Record) -> np.ndarray:
        if record.split not in self._arrays:
            # Compressed npz members cannot be memory-mapped; one split is loaded once and kept.
            with np.load(self.npz_path) as data:
                self._arrays[record.split] = data[f"{record.split}_images"]
        image = self._arrays[record.split][record.index]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return scale_to_unit(np.moveaxis(image, -1, 0), self.intensity, self.window)

    def data_files(self) -> list[Path]:
        return [self.npz_path]


def _stored_shape(data: np.lib.npyio.NpzFile, key: str) -> tuple[int, ...]:
    """The shape of an npz member from its header, without decompressing the pixels."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with data.zip.open(f"{key}.npy") as stream:
        reader = readers.get(np.lib.format.read_magic(stream))
        if reader is not None:
            return tuple(reader(stream)[0])
    return data[key].shape  # another header version: read the array once


def load(root: Path, size: int | None = None) -> BloodMNIST:
    """Read `root/bloodmnist/`; `size` picks a file (28, 64, 128, 224), default the largest present."""
    folder = root / NAME
    candidates = [size] if size is not None else list(SIZES)
    path = next((folder / npz_name(s) for s in candidates if (folder / npz_name(s)).is_file()), None)
    if path is None:
        expected = ", ".join(str(folder / npz_name(s)) for s in candidates)
        raise DatasetNotFoundError(f"{NAME}: expected one of {expected} (MedMNIST v2 / MedMNIST+ files)")
    records: list[Record] = []
    if not zipfile.is_zipfile(path):  # numpy would read other bytes as a pickle, and refuse it
        raise DatasetFormatError(f"{NAME}: {path} is not an npz (zip) archive")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetFormatError(f"{NAME}: {path} cannot be read as an npz file ({error})") from error
    with data:
        for split in SPLITS:
            if f"{split}_images" not in data.files or f"{split}_labels" not in data.files:
                raise DatasetFormatError(f"{NAME}: {path} lacks `{split}_images` or `{split}_labels`")
            try:
                shape = _stored_shape(data, f"{split}_images")
                labels = np.asarray(data[f"{split}_labels"]).reshape(-1)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise DatasetFormatError(
                    f"{NAME}: {path}: {split} arrays cannot be read ({error})"
                ) from error
            if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] != 3):
                raise DatasetFormatError(
                    f"{NAME}: {path}: {split}_images has shape {shape}; expected (N, H, W, 3) or (N, H, W)"
                )
            if shape[0] != labels.size:
                raise DatasetFormatError(
                    f"{NAME}: {path}: {split}_images holds {shape[0]} images but {split}_labels "
                    f"{labels.size} labels; they must match one to one"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise DatasetFormatError(
                    f"{NAME}: {path}: {split}_labels must be integers, not {labels.dtype}"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
                raise DatasetFormatError(f"{NAME}: {path} has labels outside 0..{len(CLASS_NAMES) - 1}")
            records += [
                Record(key=f"{split}-{i:06d}", split=split, label=int(label), index=i)
                for i, label in enumerate(labels.astype(np.int64))
            ]
    return BloodMNIST(
        name=NAME,
        root=folder,
        kind="classification",
        channel_names=CHANNEL_NAMES,
        records=records,
        class_names=CLASS_NAMES,
        fit_split="train",
        eval_split="test",
        npz_path=path,
    )
