"""BBBC048 Jurkat cell cycle (Eulenberg et al. 2017): `ROOT/bbbc048/<phase>/<id>_Ch{3,4,6}.ome.jpg`.

Splits: rows `id,class,[channel files]` from the reference CSVs (or `ROOT/bbbc048/{train,val}.csv`),
file paths relative to `ROOT/bbbc048`. Channels are named by their ImageStream file suffix.
"""

from __future__ import annotations

import re
from pathlib import Path

from chadavit_bench.datasets.base import DatasetFormatError, DownstreamDataset, Record, require_files
from chadavit_bench.datasets.splitfiles import literal, split_rows

NAME = "bbbc048"
CHANNEL_NAMES = ("Ch3", "Ch4", "Ch6")
# The authors' label indices: mitotic phases first, then interphase.
CLASS_NAMES = ("Anaphase", "Metaphase", "Prophase", "Telophase", "G1", "G2", "S")
SPLIT_FILES = {"train": "train.csv", "val": "val.csv"}
_CHANNEL = re.compile(r"_(Ch\d+)\.ome\.jpg$")


def load(root: Path) -> DownstreamDataset:
    folder = root / NAME
    records: list[Record] = []
    for split, path, row in split_rows(folder, NAME, SPLIT_FILES):
        if len(row) != 3 or not row[1].isdigit() or int(row[1]) >= len(CLASS_NAMES):
            raise DatasetFormatError(f"{path}: expected rows `id,class index,[channel files]`, got {row}")
        files = literal(row[2], path, "channel file list")
        if not isinstance(files, list):
            raise DatasetFormatError(f"{path}: row {row} must end with a list of channel files")
        by_channel = {}
        for name in files:
            match = _CHANNEL.search(str(name))
            if match is None:
                raise DatasetFormatError(f"{path}: channel file {name!r} does not end in _Ch<n>.ome.jpg")
            by_channel[match.group(1)] = str(name)
        if set(by_channel) != set(CHANNEL_NAMES):
            raise DatasetFormatError(f"{path}: row {row} must have the channels {CHANNEL_NAMES}")
        records.append(
            Record(
                key=row[0],
                split=split,
                files=tuple(by_channel[c] for c in CHANNEL_NAMES),
                label=int(row[1]),
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
