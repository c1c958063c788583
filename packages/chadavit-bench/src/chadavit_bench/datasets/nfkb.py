"""NF-kB nuclear translocation (regression of the nuclear/cytoplasmic ratio).

Layout (the authors'): `ROOT/nfkb/256x256/<cat>/<image_name>` PNGs, one multi-band PNG per cell, and
split CSVs `cat,image_name,ratio` (`single_ratio_images_{train,val}.csv`, shipped as package data or
overridden by files of the same name in `ROOT/nfkb/`). `cat` is the stimulation condition folder.
Channels are the PNG's bands, in file order.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from chadavit_bench.datasets.base import DatasetFormatError, DownstreamDataset, Record, require_files
from chadavit_bench.datasets.splitfiles import split_file
from chadavit_bench.imaging import read_planes, scale_to_unit

NAME = "nfkb"
IMAGE_FOLDER = "256x256"
SPLIT_FILES = {"train": "single_ratio_images_train.csv", "val": "single_ratio_images_val.csv"}
SPLIT_DATASET = "translocation"  # the packaged reference split folder
BAND_NAMES = {"L": ("grey",), "I;16": ("grey",), "I": ("grey",), "RGB": ("red", "green", "blue")}


@dataclass
class NFkB(DownstreamDataset):
    def _read(self, record: Record) -> np.ndarray:
        return scale_to_unit(read_planes(self.root / record.files[0]), self.intensity, self.window)


def _channel_names(path: Path) -> tuple[str, ...]:
    with Image.open(path) as image:
        mode = image.mode
    if mode not in BAND_NAMES:
        return ("red", "green", "blue")  # palette / alpha PNGs are read as RGB
    return BAND_NAMES[mode]


def load(root: Path) -> NFkB:
    folder = root / NAME
    records: list[Record] = []
    for split, filename in SPLIT_FILES.items():
        path = split_file(folder, SPLIT_DATASET, filename)
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"cat", "image_name", "ratio"} <= set(reader.fieldnames):
                raise DatasetFormatError(f"{path}: expected the header `cat,image_name,ratio`")
            for row in reader:
                try:
                    ratio = float(row["ratio"])
                except (TypeError, ValueError) as error:  # TypeError: a short row has no ratio
                    raise DatasetFormatError(f"{path}: ratio {row['ratio']!r} is not a number") from error
                if not math.isfinite(ratio):
                    raise DatasetFormatError(f"{path}: ratio {row['ratio']!r} is not a finite number")
                records.append(
                    Record(
                        key=f"{row['cat']}/{row['image_name']}",
                        split=split,
                        files=(f"{IMAGE_FOLDER}/{row['cat']}/{row['image_name']}",),
                        target=ratio,
                    )
                )
    if not records:
        raise DatasetFormatError(f"{NAME}: the split files under {folder} list no images")
    require_files(NAME, folder, records)
    return NFkB(
        name=NAME,
        root=folder,
        kind="regression",
        channel_names=_channel_names(folder / records[0].files[0]),
        records=records,
    )
