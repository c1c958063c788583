"""CHAMMI (Chen et al., NeurIPS 2023 Datasets and Benchmarks): three sub-datasets, three channel counts.

Layout (Zenodo record 7988357, unpacked): `ROOT/chammi/{Allen,HPA,CP}/enriched_meta.csv`, and each
image at `ROOT/chammi/<file_path>`. An image is a "tape": its channels side by side in one 2-D
image of shape (h, channel_width x c), channel k in the columns [k x w, (k + 1) x w) where w is the
row's `channel_width` (what MorphEm's `folded_dataset.fold_channels` undoes with a Fortran-order
reshape, github broadinstitute/MorphEm).

Each sub-dataset is its own dataset here (`chammi-allen`, `chammi-hpa`, `chammi-cp`), embedded with
its own channels: that is the point of the benchmark. Columns read: `file_path`, `channel_width`,
`train_test_split` (`Train` or a task name), `Label`, one boolean column per task, and the
leave-one-group-out column (`cell_type` for HPA, `Plate` for CP). Other columns are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chadavit_bench.datasets.base import (
    DatasetFormatError,
    DownstreamDataset,
    Record,
    require_files,
    require_path,
)
from chadavit_bench.imaging import ImageReadError, read_planes, scale_to_unit

FOLDER = "chammi"
META_FILE = "enriched_meta.csv"
TRAIN = "Train"
# Task order of the official evaluator (MorphEm `evaluation.evaluate` sorts tasks one to four).
TASK_ORDER = ("Task_one", "Task_two", "Task_three", "Task_four")


@dataclass(frozen=True)
class SubDataset:
    name: str  # this package's dataset name
    folder: str  # the folder under ROOT/chammi, as MorphEm's `run_benchmark` names it
    channels: tuple[str, ...]  # in file (tape) order
    tasks: tuple[str, ...]
    leave_out: str | None  # the task scored leave-one-group-out
    group_column: str | None  # its groups
    ood_tasks: tuple[str, ...]  # the out-of-distribution tasks the CHAMMI score averages


# Channel orders from the CHAMMI paper (Chen et al. 2023, section 3); tasks and leave-out groups
# from MorphEm's `benchmark.run_benchmark`; out-of-distribution tasks from the CHAMMI score's
# definition (all tasks but Task_one).
SUBDATASETS = (
    SubDataset(
        "chammi-allen", "Allen", ("nucleus", "membrane", "protein"), ("Task_one", "Task_two"),
        None, None, ("Task_two",),
    ),
    SubDataset(
        "chammi-hpa", "HPA", ("microtubules", "protein", "nucleus", "er"),
        ("Task_one", "Task_two", "Task_three"), "Task_three", "cell_type", ("Task_two", "Task_three"),
    ),
    SubDataset(
        "chammi-cp", "CP", ("nucleus", "er", "rna", "golgi", "mito"),
        ("Task_one", "Task_two", "Task_three", "Task_four"), "Task_four", "Plate",
        ("Task_two", "Task_three", "Task_four"),
    ),
)  # fmt: skip
BY_NAME = {sub.name: sub for sub in SUBDATASETS}


@dataclass(frozen=True)
class ChammiRecord(Record):
    """A CHAMMI row: `split` is its `train_test_split`; `tasks` the task columns that are True."""

    tasks: tuple[str, ...] = ()
    channel_width: int = 0
    row: int = 0  # the row's line in enriched_meta.csv (the header is line 1)


def unfold_tape(tape: np.ndarray, channel_width: int) -> np.ndarray:
    """(h, channel_width x c) -> (c, h, channel_width): channel k is columns [k w, (k + 1) w).

    Equal to MorphEm's `np.reshape(img, (h, channel_width, -1), order="F")`, channels first."""
    h, width = tape.shape
    return tape.reshape(h, width // channel_width, channel_width).transpose(1, 0, 2)


@dataclass
class ChammiDataset(DownstreamDataset):
    """One CHAMMI sub-dataset; `rows` is the number of rows of its enriched_meta.csv."""

    sub: SubDataset | None = None
    rows: int = 0
    tasks: tuple[str, ...] = ()  # the tasks present in train_test_split, in the official order

    @property
    def complete(self) -> bool:
        """Every row of enriched_meta.csv, in its order (not a --quick or --max-images subset)."""
        return len(self.records) == self.rows

    def _read(self, record: Record) -> np.ndarray:
        assert isinstance(record, ChammiRecord)
        path = self.root / record.files[0]
        where = f"{path} ({self.meta_path.name} line {record.row})"
        try:
            planes = read_planes(path)
        except ImageReadError as error:
            raise ImageReadError(f"{where}: {error}") from error
        tape = np.squeeze(planes)  # OME-TIFF readers may add unit axes
        if tape.ndim != 2:
            raise ImageReadError(f"{where}: expected a 2-D tape image, got shape {planes.shape}")
        if tape.shape[1] % record.channel_width:
            raise ImageReadError(
                f"{where}: width {tape.shape[1]} is not a multiple of channel_width {record.channel_width}"
            )
        channels = unfold_tape(tape, record.channel_width)
        if len(channels) != self.n_channels:
            raise ImageReadError(
                f"{where}: {len(channels)} channels of width {record.channel_width}; "
                f"{self.name} has {self.n_channels} ({', '.join(self.channel_names)})"
            )
        return scale_to_unit(np.ascontiguousarray(channels), self.intensity, self.window)

    @property
    def meta_path(self) -> Path:
        assert self.sub is not None
        return self.root / self.sub.folder / META_FILE

    def task_rows(self, task: str) -> np.ndarray:
        """Positions of the rows whose `task` column is True (the task's queries)."""
        return np.array([i for i, r in enumerate(self.records) if task in r.tasks], dtype=np.int64)  # type: ignore[attr-defined]


def _bool_column(frame: pd.DataFrame, column: str, meta: Path) -> np.ndarray:
    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy()
    text = values.astype(str).str.strip().str.lower()
    bad = ~text.isin(["true", "false"])
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DatasetFormatError(
            f"{meta} line {line}: column {column!r} holds {values.iloc[line - 2]!r}; expected True or False"
        )
    return (text == "true").to_numpy()


def _inside(relative: str) -> bool:
    """Whether `relative` stays inside the CHAMMI folder (no absolute path, no `..` out of it)."""
    if not relative or os.path.isabs(relative) or relative.startswith(("/", "\\")):
        return False
    normal = os.path.normpath(relative)
    return normal != ".." and not normal.startswith(".." + os.sep)


def _channel_widths(frame: pd.DataFrame, meta: Path) -> np.ndarray:
    widths = pd.to_numeric(frame["channel_width"], errors="coerce")
    bad = ~(widths.notna() & (widths > 0) & (widths == widths.round()))
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DatasetFormatError(
            f"{meta} line {line}: channel_width {frame['channel_width'].iloc[line - 2]!r} "
            "is not a positive whole number"
        )
    return widths.astype(np.int64).to_numpy()


def read_meta(root: Path, sub: SubDataset) -> tuple[list[ChammiRecord], tuple[str, ...]]:
    """The records of `sub` from its enriched_meta.csv, and the class names (order of appearance)."""
    folder = root / FOLDER
    meta = require_path(sub.name, folder / sub.folder / META_FILE, f"CHAMMI's {sub.folder}/{META_FILE}")
    try:
        frame = pd.read_csv(meta, dtype={"file_path": str, "train_test_split": str, "Label": str})
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise DatasetFormatError(f"{meta} cannot be read as CSV ({error})") from error
    group = [sub.group_column] if sub.group_column else []
    needed = ["file_path", "channel_width", "train_test_split", "Label", *sub.tasks, *group]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise DatasetFormatError(f"{meta}: no column(s) {missing}; CHAMMI's {sub.folder} has {needed}")
    if frame.empty:
        raise DatasetFormatError(f"{meta} has no rows")
    for column in ("file_path", "train_test_split", "Label"):
        empty = frame[column].isna()
        if empty.any():
            line = int(np.flatnonzero(empty.to_numpy())[0]) + 2
            raise DatasetFormatError(f"{meta} line {line}: {column!r} is empty")
    unknown = sorted(set(frame["train_test_split"]) - {TRAIN, *sub.tasks})
    if unknown:
        line = int(np.flatnonzero(frame["train_test_split"].isin(unknown).to_numpy())[0]) + 2
        raise DatasetFormatError(
            f"{meta} line {line}: train_test_split {unknown[0]!r}; expected {TRAIN} or one of {sub.tasks}"
        )
    if TRAIN not in set(frame["train_test_split"]) or set(frame["train_test_split"]) == {TRAIN}:
        raise DatasetFormatError(f"{meta}: needs {TRAIN} rows and rows of at least one task")
    outside = [i for i, path in enumerate(frame["file_path"]) if not _inside(path)]
    if outside:
        raise DatasetFormatError(
            f"{meta} line {outside[0] + 2}: file_path {frame['file_path'].iloc[outside[0]]!r} leaves {folder}"
        )
    widths = _channel_widths(frame, meta)
    flags = {task: _bool_column(frame, task, meta) for task in sub.tasks}
    class_names = tuple(dict.fromkeys(frame["Label"]))
    label_index = {name: i for i, name in enumerate(class_names)}
    groups = None
    if sub.group_column and sub.leave_out:
        # Only the leave-out task's rows need a group (the official evaluator reads no other).
        empty = frame[sub.group_column].isna().to_numpy() & flags[sub.leave_out]
        if empty.any():
            line = int(np.flatnonzero(empty)[0]) + 2
            raise DatasetFormatError(
                f"{meta} line {line}: {sub.group_column!r} is empty in a {sub.leave_out} row"
            )
        groups = frame[sub.group_column].fillna("").astype(str).to_numpy()
    records = [
        ChammiRecord(
            key=path,
            split=split,
            files=(path,),
            label=label_index[label],
            group=None if groups is None else groups[i],
            tasks=tuple(task for task in sub.tasks if flags[task][i]),
            channel_width=int(widths[i]),
            row=i + 2,
        )
        for i, (path, split, label) in enumerate(
            zip(frame["file_path"], frame["train_test_split"], frame["Label"], strict=True)
        )
    ]
    return records, class_names


def load_subdataset(root: Path, name: str) -> ChammiDataset:
    sub = BY_NAME[name]
    records, class_names = read_meta(root, sub)
    present = {record.split for record in records}
    folder = root / FOLDER
    require_files(name, folder, records)
    return ChammiDataset(
        name=name,
        root=folder,
        kind="chammi",
        channel_names=sub.channels,
        records=list(records),
        class_names=class_names,
        fit_split=TRAIN,
        eval_split=sub.tasks[0],
        sub=sub,
        rows=len(records),
        tasks=tuple(task for task in sub.tasks if task in present),
    )


def load_allen(root: Path) -> ChammiDataset:
    return load_subdataset(root, "chammi-allen")


def load_hpa(root: Path) -> ChammiDataset:
    return load_subdataset(root, "chammi-hpa")


def load_cp(root: Path) -> ChammiDataset:
    return load_subdataset(root, "chammi-cp")


LOADERS = {"chammi-allen": load_allen, "chammi-hpa": load_hpa, "chammi-cp": load_cp}
