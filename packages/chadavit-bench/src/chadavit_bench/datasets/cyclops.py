"""CyclOPS yeast protein localisation: `ROOT/cyclops/<CLASS>/<CLASS>_<id>_<gfp|rfp>.tif`.

Splits: rows `class,id,channel set` from the reference CSVs (or `ROOT/cyclops/{train,val}.csv`).
The channel set is written as a Python set, whose order is arbitrary; the channel order here is
always (gfp, rfp).
"""

from __future__ import annotations

from pathlib import Path

from chadavit_bench.datasets.base import DatasetFormatError, DownstreamDataset, Record, require_files
from chadavit_bench.datasets.splitfiles import literal, split_rows

NAME = "cyclops"
CHANNEL_NAMES = ("gfp", "rfp")
# Alphabetical, as the authors index them (Koh et al. 2015 CyclOPS localisation classes).
CLASS_NAMES = (
    "ACTIN",
    "BUDNECK",
    "BUDTIP",
    "CELLPERIPHERY",
    "CYTOPLASM",
    "ENDOSOME",
    "ER",
    "GOLGI",
    "MITOCHONDRIA",
    "NUCLEARPERIPHERY",
    "NUCLEI",
    "NUCLEOLUS",
    "PEROXISOME",
    "SPINDLE",
    "SPINDLEPOLE",
    "VACUOLARMEMBRANE",
    "VACUOLE",
)
SPLIT_FILES = {"train": "train.csv", "val": "val.csv"}


def channel_file(class_name: str, image_id: str, channel: str) -> str:
    return f"{class_name}/{class_name}_{image_id}_{channel}.tif"


def load(root: Path) -> DownstreamDataset:
    folder = root / NAME
    records: list[Record] = []
    for split, path, row in split_rows(folder, NAME, SPLIT_FILES):
        if len(row) != 3 or row[0] not in CLASS_NAMES:
            raise DatasetFormatError(f"{path}: expected rows `class,id,channel set`, got {row}")
        class_name, image_id, channel_text = row
        channels = literal(channel_text, path, "channel set")
        if not isinstance(channels, set | list | tuple) or set(channels) != set(CHANNEL_NAMES):
            raise DatasetFormatError(f"{path}: row {row} must list the channels {set(CHANNEL_NAMES)}")
        records.append(
            Record(
                key=f"{class_name}_{image_id}",
                split=split,
                files=tuple(channel_file(class_name, image_id, c) for c in CHANNEL_NAMES),
                label=CLASS_NAMES.index(class_name),
            )
        )
    require_files(NAME, folder, records)
    return DownstreamDataset(
        name=NAME,
        root=folder,
        kind="classification",
        channel_names=CHANNEL_NAMES,
        records=records,
        class_names=CLASS_NAMES,
    )
