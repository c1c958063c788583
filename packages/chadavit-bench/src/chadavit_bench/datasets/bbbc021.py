"""BBBC021 (Caie et al. 2010, MCF-7 compound screen): 16-bit TIFFs per channel plus the metadata CSV.

Layout: `ROOT/bbbc021/BBBC021_v1_image.csv` and the TIFFs at
`ROOT/bbbc021/<Image_PathName_*>/<Image_FileName_*>` (the CSV's path, e.g. `Week1/Week1_22123`), or
at its last component (`Week1_22123/`, as the zips unpack). There is no official split; wells are
assigned to `val` by a stable hash (1 in 5), so fields of one well never straddle the split.
"""

from __future__ import annotations

import zlib
from pathlib import Path, PurePosixPath

import pandas as pd

from chadavit_bench.datasets.base import (
    DatasetFormatError,
    DownstreamDataset,
    Record,
    require_files,
    require_path,
)

NAME = "bbbc021"
METADATA = "BBBC021_v1_image.csv"
CHANNEL_NAMES = ("DAPI", "Tubulin", "Actin")
VAL_EVERY = 5  # one well in five goes to the evaluation split


def well_split(plate: str, well: str) -> str:
    return "val" if zlib.crc32(f"{plate}/{well}".encode()) % VAL_EVERY == 0 else "train"


def _channel_path(folder: Path, path_name: str, file_name: str) -> str:
    full = f"{path_name}/{file_name}"
    if (folder / full).is_file():
        return full
    last = f"{PurePosixPath(path_name).name}/{file_name}"
    return last if (folder / last).is_file() else full


def load(root: Path) -> DownstreamDataset:
    folder = root / NAME
    metadata = require_path(NAME, folder / METADATA, "the image metadata CSV")
    table = pd.read_csv(metadata, dtype=str)
    columns = [f"Image_{kind}_{c}" for c in CHANNEL_NAMES for kind in ("FileName", "PathName")]
    columns += ["Image_Metadata_Compound", "Image_Metadata_Concentration", "Image_Metadata_Plate_DAPI"]
    columns += ["Image_Metadata_Well_DAPI"]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DatasetFormatError(f"{NAME}: {metadata} lacks the columns {missing}")
    records = []
    for row in table.itertuples(index=False):
        cells = row._asdict()
        files = tuple(
            _channel_path(folder, cells[f"Image_PathName_{c}"], cells[f"Image_FileName_{c}"])
            for c in CHANNEL_NAMES
        )
        plate, well = cells["Image_Metadata_Plate_DAPI"], cells["Image_Metadata_Well_DAPI"]
        records.append(
            Record(
                key=PurePosixPath(files[0]).stem,
                split=well_split(plate, well),
                files=files,
                group=cells["Image_Metadata_Compound"],
            )
        )
    if not records:
        raise DatasetFormatError(f"{NAME}: {metadata} has no rows")
    require_files(NAME, folder, records)
    return DownstreamDataset(
        name=NAME,
        root=folder,
        kind="reconstruction",
        channel_names=CHANNEL_NAMES,
        records=records,
    )
