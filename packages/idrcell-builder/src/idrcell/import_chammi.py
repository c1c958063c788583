"""`idrcell import-chammi`: one split of CHAMMI (Chen et al., NeurIPS 2023) as an idrcell-v1 dataset.

CHAMMI_DIR is the unpacked CHAMMI folder (Zenodo record 7988357), holding `Allen/`, `HPA/` and
`CP/`, each with an `enriched_meta.csv`; a folder holding `chammi/` (chadavit-bench's ROOT) is
accepted too. An image is `CHAMMI_DIR/<file_path>`, a tape of channels `channel_width` px wide
side by side. Columns read: `file_path`, `channel_width`, `train_test_split` (`Train` or a task
name), `Label`, and the group columns `cell_type` (HPA) and `Plate` (CP); others are ignored.

Each sample is `CHAMMI_<sub-dataset>_<row>` (the 0-based row of its enriched_meta.csv), with
`label` (the row's `Label`), `split`, `group`, `dataset` (the sub-dataset) and the CHAMMI channel
names as its channels' labels. Windows default to chadavit-bench's reading of an image (8-bit
pixels as they are, others by their min and max: image_files.WINDOW_MODES), so a model trained on
the import sees what `chadavit-bench run chammi` shows it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from idrcell.dataset import ShardLimits, check_output_dir
from idrcell.image_files import ImageSpec
from idrcell.import_images import ImageRow, ImportInputError, ImportResult, resolve_file, write_images

META_FILE = "enriched_meta.csv"
STUDY = "CHAMMI"
TRAIN = "Train"
ALL_SPLITS = "all"
# Channel names in tape order (CHAMMI paper, Sec. 3; the same as chadavit-bench's chammi adapter),
# and the column whose values are the groups left out in the sub-dataset's last task.
SUBDATASETS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "Allen": (("nucleus", "membrane", "protein"), None),
    "HPA": (("microtubules", "protein", "nucleus", "er"), "cell_type"),
    "CP": (("nucleus", "er", "rna", "golgi", "mito"), "Plate"),
}
REQUIRED_COLUMNS = ("file_path", "channel_width", "train_test_split", "Label")


def chammi_root(folder: Path) -> Path:
    """The folder holding Allen/, HPA/ and CP/: `folder` itself, or its `chammi/` (the bench's ROOT)."""
    if not any((folder / sub).is_dir() for sub in SUBDATASETS) and (folder / "chammi").is_dir():
        return folder / "chammi"
    return folder


def _cell(row: dict[str, str | None], column: str) -> str | None:
    value = row.get(column)
    return value.strip() if value is not None and value.strip() else None


def subdataset_rows(root: Path, sub: str, split: str, problems: list[str]) -> list[ImageRow]:
    """The rows of one sub-dataset in `split` (`all`: every row); problems are appended, one line each."""
    names, group_column = SUBDATASETS[sub]
    meta = root / sub / META_FILE
    where = f"{sub}/{META_FILE}"
    if not meta.is_file():
        problems.append(f"{where}: no such file in {root}")
        return []
    try:
        table = list(csv.DictReader(io.StringIO(meta.read_text(encoding="utf-8-sig"), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(f"{where}: cannot be read as CSV ({error})")
        return []
    needed = [*REQUIRED_COLUMNS, *([group_column] if group_column else [])]
    columns = set(table[0]) if table else set()
    missing = [column for column in needed if column not in columns]
    if missing or not table:
        problems.append(f"{where}: no column(s) {missing}" if table else f"{where}: no rows")
        return []
    rows: list[ImageRow] = []
    for number, row in enumerate(table):
        line = f"{where} line {number + 2}"  # the header is line 1
        row_split = _cell(row, "train_test_split")
        if split != ALL_SPLITS and row_split != split:
            continue
        file_path, label, width = _cell(row, "file_path"), _cell(row, "Label"), _cell(row, "channel_width")
        if file_path is None or label is None:
            problems.append(f"{line}: an empty {'file_path' if file_path is None else 'Label'}")
            continue
        try:
            channel_width = float(width) if width is not None else math.nan
        except ValueError:
            channel_width = math.nan
        if not (channel_width >= 1 and channel_width.is_integer()):
            problems.append(f"{line}: channel_width {width!r} is not a positive whole number")
            continue
        path, why = resolve_file(file_path, root, allow_outside=False)
        if why is not None or path is None:
            problems.append(f"{line}: {why}")
            continue
        group = _cell(row, group_column) if group_column else None
        rows.append(
            ImageRow(
                image_id=number,
                name=file_path,
                spec=ImageSpec((path,), int(channel_width)),
                channel_names=names,
                label=label,
                split=row_split,
                group=group,
                extra={"dataset": sub, "cell_line": group if group_column == "cell_type" else None},
                container=sub,
            )
        )
    return rows


def import_chammi(
    source: Path | str,
    out: Path | str,
    *,
    split: str = TRAIN,
    subsets: Sequence[str] = tuple(SUBDATASETS),
    seed: int = 0,
    limits: ShardLimits = ShardLimits(),
    window_mode: str = "bench",
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import `split` of the chosen CHAMMI sub-datasets into `out` (see the module's docstring)."""
    source, out = Path(source), Path(out)
    check_output_dir(out)
    unknown = [name for name in subsets if name not in SUBDATASETS]
    if unknown or not subsets:
        raise ImportInputError([f"unknown CHAMMI sub-dataset(s) {unknown}; choose from {list(SUBDATASETS)}"])
    if not source.is_dir():
        raise ImportInputError([f"{source}: no such folder (give the unpacked CHAMMI folder)"])
    root = chammi_root(source)
    problems: list[str] = []
    rows = [row for sub in subsets for row in subdataset_rows(root, sub, split, problems)]
    if problems:
        raise ImportInputError(problems)
    if not rows:
        raise ImportInputError([f"{root}: no row of split {split!r} in {', '.join(subsets)}"])
    return write_images(
        rows,
        out,
        study=STUDY,
        container=subsets[0],
        seed=seed,
        limits=limits,
        window_mode=window_mode,
        imported_from={"layout": "CHAMMI", "split": split, "subsets": list(subsets)},
        jobs=jobs,
        progress=progress,
    )
