"""`idrcell import-images`: any collection of local images -> an idrcell-v1 dataset.

The rows of a manifest (idrcell.manifest) are checked as a whole before anything is written: a
missing file, a path that leaves the manifest's folder (unless allowed), a duplicate key, a bad
`channel_width` or window is a usage error, and every such problem is listed. Pixel problems found
while reading (an undecodable file, channels of different sizes, a width that `channel_width` does
not divide) leave that image out, named in dataset.json under `skipped` like `import-hf` does.

Keys are `<study>_<container>_<row>` (`naming.sample_key`): the study is `--study` (default the
manifest's file name), the container `images`, the row the 0-based manifest row. No file name
enters a key, so any file name is safe. The writing path (global shuffle, shards, index,
dataset.json last) is `idrcell.dataset.write_dataset`, shared with `merge` and `import-hf`: a rerun
after any interruption, SIGKILL included, writes the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idrcell.dataset import (
    DatasetSummary,
    EmptyDatasetError,
    SampleSource,
    ShardLimits,
    UnusableSample,
    check_output_dir,
    current_summary,
    shuffled,
    write_dataset,
)
from idrcell.image_files import LAYOUTS, WINDOW_MODES, ImageFileError, ImageSpec, render_image
from idrcell.manifest import ManifestError, ManifestRow, parse_list, read_manifest
from idrcell.naming import sample_key
from idrcell.shards import Member, imported_sample_meta, sample_members

MAX_CHANNELS = 10  # the format's limit (docs/format.md)
# What one stored channel costs in a shard, for choosing the number of shards before reading any
# pixel (a 224 x 224 fluorescence PNG is ~20 KiB at the builder's zlib level, render.py).
PNG_BYTES_ESTIMATE = 32 * 1024
CONTAINER = "images"
LISTED_PROBLEMS = 20  # problems printed before "... and N more"


class ImportInputError(ValueError):
    """Inputs that cannot be imported; `problems` holds one line per problem. Nothing was written."""

    def __init__(self, problems: Sequence[str]) -> None:
        shown = list(problems[:LISTED_PROBLEMS])
        if len(problems) > LISTED_PROBLEMS:
            shown.append(f"... and {len(problems) - LISTED_PROBLEMS} more problems")
        super().__init__("\n".join(shown))
        self.problems = shown


@dataclass(frozen=True)
class ImageRow:
    """One image to import, checked: its files exist and its cells parse."""

    image_id: int
    name: str  # KEY.json `image_name`: the manifest's `key`, else the first file's relative path
    spec: ImageSpec
    channel_names: tuple[str, ...] = ()
    windows: tuple[tuple[float, float] | None, ...] = ()
    label: str | None = None
    split: str | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more KEY.json fields (CHAMMI: `dataset`)
    container: str | None = None  # None: the import's container


@dataclass(frozen=True)
class ImportResult:
    summary: DatasetSummary
    images: int
    already_done: bool


def _numbers(row: ManifestRow, column: str, where: str, problems: list[str]) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in parse_list(row.cells.get(column), where, column))
    except ManifestError as error:
        problems.append(str(error))
        return ()
    except ValueError:
        problems.append(f"{where}: the {column} cell {row.cells.get(column)!r:.60} holds a non-number")
        return ()
    if not all(math.isfinite(v) for v in values):
        problems.append(f"{where}: the {column} cell holds a number that is not finite")
        return ()
    return values


def _windows(
    row: ManifestRow, where: str, n_files: int, problems: list[str]
) -> tuple[tuple[float, float] | None, ...]:
    starts = _numbers(row, "window_start", where, problems)
    ends = _numbers(row, "window_end", where, problems)
    if not starts and not ends:
        return ()
    if len(starts) != len(ends):
        problems.append(f"{where}: window_start has {len(starts)} numbers but window_end {len(ends)}")
        return ()
    if any(end <= start for start, end in zip(starts, ends, strict=True)):
        problems.append(f"{where}: a window whose end is not above its start ({starts}, {ends})")
        return ()
    windows = tuple(zip(starts, ends, strict=True))
    if len(windows) == 1 and n_files > 1:
        return windows * n_files  # one window for every channel
    return windows


def resolve_file(text: str, base: Path, allow_outside: bool) -> tuple[Path | None, str | None]:
    """(the file, None) or (None, why not): relative to `base`, inside it unless `allow_outside`."""
    path = Path(text)
    full = (path if path.is_absolute() else base / path).resolve()
    if not allow_outside and not full.is_relative_to(base.resolve()):
        return None, f"{text} leaves the manifest's folder (give --allow-outside to read it)"
    if not full.is_file():
        return None, f"no such file {text}"
    return full, None


def manifest_rows(manifest: Path, allow_outside: bool = False, split: str | None = None) -> list[ImageRow]:
    """The manifest's images (only those of `split` when given), or ImportInputError listing every problem."""
    table = read_manifest(manifest)
    base = manifest.parent
    problems: list[str] = []
    rows: list[ImageRow] = []
    keys: dict[str, int] = {}
    for row in table:
        where = f"{manifest.name}: row {row.number}"
        try:
            row_split, label, group = row.text("split"), row.text("label"), row.text("group")
            user_key, width_text, layout = row.text("key"), row.text("channel_width"), row.text("layout")
            names = parse_list(row.cells.get("channel_names"), where, "channel_names")
            listed = parse_list(row.cells.get("channels"), where, "channels")
        except ManifestError as error:
            problems.append(str(error) if str(error).startswith(manifest.name) else f"{where}: {error}")
            continue
        if user_key is not None:
            if user_key in keys:
                problems.append(f"{where}: key {user_key!r} is also the key of row {keys[user_key]}")
            keys.setdefault(user_key, row.number)
        if split is not None and row_split != split:
            continue
        if not listed:
            problems.append(f"{where}: lists no channel files")
            continue
        files: list[Path] = []
        for text in listed:
            path, why = resolve_file(text, base, allow_outside)
            if why is not None:
                problems.append(f"{where}: {why}")
            elif path is not None:
                files.append(path)
        channel_width = None
        if width_text is not None:
            if not width_text.isdigit() or int(width_text) < 1:
                problems.append(f"{where}: channel_width {width_text!r} is not a positive integer")
            elif len(listed) != 1:
                problems.append(
                    f"{where}: channel_width is for one tape image, but {len(listed)} files are listed"
                )
            else:
                channel_width = int(width_text)
        layout = (layout or "auto").lower()
        if layout not in LAYOUTS:
            problems.append(f"{where}: layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        if len(listed) > MAX_CHANNELS:
            problems.append(f"{where}: {len(listed)} channel files, more than the format's {MAX_CHANNELS}")
        if len(listed) > 1 and names and len(names) != len(listed):
            problems.append(f"{where}: {len(listed)} channel files but {len(names)} channel_names")
        windows = _windows(row, where, len(listed), problems)
        if len(listed) > 1 and windows and len(windows) != len(listed):
            problems.append(f"{where}: {len(listed)} channel files but {len(windows)} windows")
        if len(files) != len(listed):
            continue
        rows.append(
            ImageRow(
                image_id=row.number,
                name=user_key if user_key is not None else listed[0],
                spec=ImageSpec(tuple(files), channel_width, layout if layout in LAYOUTS else "auto"),
                channel_names=names,
                windows=windows,
                label=label,
                split=row_split,
                group=group,
            )
        )
    if problems:
        raise ImportInputError(problems)
    if not rows:
        wanted = f" of split {split!r}" if split is not None else ""
        raise ImportInputError([f"{manifest.name}: no row{wanted} to import"])
    return rows


def sample_meta(
    study: str, container: str, row: ImageRow, windows: list[tuple[float, float]], plane: Any
) -> dict[str, Any]:
    """KEY.json of an imported image (docs/format.md); unknown values are null."""
    container = row.container or container
    key = sample_key(study, container, row.image_id)
    names = list(row.channel_names) or [None] * len(windows)
    channels = [
        {"index": i + 1, "label": name, "emission_wavelength": None, "window": [start, end]}
        for i, (name, (start, end)) in enumerate(zip(names, windows, strict=True))
    ]
    source = {
        "width": int(plane.shape[1]),
        "height": int(plane.shape[0]),
        "pixels_type": str(plane.dtype),
        "z": None,
        "t": None,
    }
    return {
        **imported_sample_meta(key, study, container, row.image_id, row.name, channels, source),
        "label": row.label,
        "split": row.split,
        "group": row.group,
        **row.extra,
    }


def _read_sample(study: str, container: str, row: ImageRow, window_mode: str) -> list[Member]:
    try:
        pngs, windows, plane = render_image(row.spec, row.windows, window_mode)
    except ImageFileError as error:
        raise UnusableSample(str(error)) from None
    if len(pngs) > MAX_CHANNELS:
        raise UnusableSample(f"{row.name}: {len(pngs)} channels, more than the format's {MAX_CHANNELS}")
    if row.channel_names and len(row.channel_names) != len(pngs):
        raise UnusableSample(f"{row.name}: {len(pngs)} channels but {len(row.channel_names)} channel_names")
    meta = sample_meta(study, container, row, windows, plane)
    return sample_members(meta["key"], meta, pngs)


class ReadAhead:
    """Samples decoded by `jobs` worker processes ahead of the writer, which asks for them in order.

    `write_dataset` reads sources one by one in its shuffled order; this computes the same order
    and keeps up to `window` samples in flight, so decoding runs in parallel while the bytes stay
    those of a one-process import (every sample is a pure function of its files).
    """

    def __init__(self, sources: Sequence[SampleSource], seed: int, jobs: int, window: int) -> None:
        self.order = [source.key for source in shuffled(sources, seed)]
        self.reads = {source.key: source.read for source in sources}
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        self.window = window
        self.pending: dict[str, Future[list[Member]]] = {}
        self.submitted = 0

    def read(self, key: str) -> list[Member]:
        while self.submitted < len(self.order) and len(self.pending) < self.window:
            ahead = self.order[self.submitted]
            self.pending[ahead] = self.pool.submit(self.reads[ahead])
            self.submitted += 1
        future = self.pending.pop(key, None)
        return future.result() if future is not None else self.reads[key]()  # UnusableSample re-raised

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _fingerprint(rows: Sequence[ImageRow], settings: dict[str, Any]) -> str:
    """What the output depends on: every row as parsed, each file's size and time, and the settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for row in rows:
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in row.spec.files]
        described = {**row.__dict__, "spec": [stats, row.spec.channel_width, row.spec.layout]}
        digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def write_images(
    rows: Sequence[ImageRow],
    out: Path,
    *,
    study: str,
    container: str,
    seed: int,
    limits: ShardLimits,
    window_mode: str,
    imported_from: dict[str, Any],
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Write `rows` as an idrcell-v1 dataset in `out`; nothing happens when it is already complete.

    `jobs` > 1 decodes images in that many processes; the bytes do not depend on it.
    """
    if window_mode not in WINDOW_MODES:
        raise ValueError(f"window mode must be one of {WINDOW_MODES}, got {window_mode!r}")
    settings = {
        "seed": seed,
        "limits": limits.__dict__,
        "study": study,
        "container": container,
        "window": window_mode,
        "imported_from": imported_from,
    }
    fingerprint = _fingerprint(rows, settings)
    summary = current_summary(out, fingerprint)
    if summary is not None:
        return ImportResult(summary, len(rows), already_done=True)
    sources = [
        SampleSource(
            sample_key(study, row.container or container, row.image_id),
            PNG_BYTES_ESTIMATE * max(len(row.spec.files), len(row.channel_names), 1) + 1024,
            functools.partial(_read_sample, study, container, row, window_mode),
        )
        for row in rows
    ]
    containers = sorted({row.container or container for row in rows})
    metadata = {
        "experiments": [{"study": study, "container": name} for name in containers],
        "imported_from": {**imported_from, "images": len(rows), "window": window_mode},
    }
    ahead = ReadAhead(sources, seed, jobs, window=4 * jobs) if jobs > 1 else None
    if ahead is not None:
        sources = [SampleSource(s.key, s.nbytes, functools.partial(ahead.read, s.key)) for s in sources]
    try:
        summary = write_dataset(
            out,
            sources,
            seed=seed,
            limits=limits,
            fingerprint=fingerprint,
            metadata=metadata,
            progress=progress,
        )
    except EmptyDatasetError as error:
        raise ImportInputError([f"nothing to import: {error}"]) from None
    finally:
        if ahead is not None:
            ahead.close()
    return ImportResult(summary, len(rows), already_done=False)


def import_images(
    manifest: Path | str,
    out: Path | str,
    *,
    seed: int = 0,
    limits: ShardLimits = ShardLimits(),
    study: str | None = None,
    split: str | None = None,
    window_mode: str = "percentiles",
    allow_outside: bool = False,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import the images a manifest lists into `out` (see the module's docstring)."""
    manifest, out = Path(manifest), Path(out)
    check_output_dir(out)
    try:
        rows = manifest_rows(manifest, allow_outside=allow_outside, split=split)
    except ManifestError as error:
        raise ImportInputError([str(error)]) from None
    return write_images(
        rows,
        out,
        study=study or manifest.stem,
        container=CONTAINER,
        seed=seed,
        limits=limits,
        window_mode=window_mode,
        imported_from={"layout": "manifest", "manifest": manifest.name, "split": split},
        jobs=jobs,
        progress=progress,
    )
