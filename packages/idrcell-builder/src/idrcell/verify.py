"""`idrcell verify`: check a dataset directory against the idrcell-v1 contract, listing every problem."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from idrcell.dataset import DATASET_FILE, INDEX_FILE, SHARDS_DIR
from idrcell.naming import is_safe_key
from idrcell.render import IMAGE_SIZE, PixelError, png_size_and_mode
from idrcell.shards import SCHEMA, SHARD_NAME, file_sha256, iter_tar, parse_member_name

REQUIRED_FIELDS = ("schema", "key", "study", "container", "image_id", "n_channels", "channels", "source")
MAX_PROBLEMS_PER_SHARD = 20
# The format's channel counts (docs/format.md): the trainer's channel embedding has 10 slots.
MAX_CHANNELS = 10
MAX_IMAGE_ID = 2**63 - 1  # index.parquet's int64


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def strict_json(text: str | bytes) -> Any:
    """Parse JSON as the standard defines it: Python's NaN, Infinity and -Infinity are refused."""
    return json.loads(text, parse_constant=_reject_constant)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    shards: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Sample:
    key: str
    meta: dict[str, Any] | None = None
    channels: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _check_sample(sample: _Sample, shard: str) -> list[str]:
    where = f"{shard}: sample {sample.key!r}"
    problems = [f"{where}: {p}" for p in sample.problems]
    if not is_safe_key(sample.key):
        problems.append(
            f"{where}: the key is not safe (only A-Z, a-z, 0-9, '_' and '-', at most 88 characters)"
        )
    meta = sample.meta
    if meta is None:
        return [*problems, f"{where}: no {sample.key}.json record"]
    missing = [name for name in REQUIRED_FIELDS if name not in meta]
    if missing:
        problems.append(f"{where}: JSON lacks {', '.join(missing)}")
    if meta.get("schema") != SCHEMA:
        problems.append(f"{where}: schema is {meta.get('schema')!r}, expected {SCHEMA!r}")
    if meta.get("key") != sample.key:
        problems.append(f"{where}: JSON key is {meta.get('key')!r}")
    problems.extend(f"{where}: {p}" for p in _field_problems(meta))
    n_channels = meta.get("n_channels")
    if sample.channels != list(range(len(sample.channels))):
        problems.append(f"{where}: channel PNGs are not c00, c01, ... in order (got {sample.channels})")
    if n_channels != len(sample.channels):
        problems.append(f"{where}: n_channels is {n_channels} but the sample has {len(sample.channels)} PNGs")
    if isinstance(meta.get("channels"), list) and len(meta["channels"]) != n_channels:
        problems.append(
            f"{where}: 'channels' lists {len(meta['channels'])} entries for n_channels={n_channels}"
        )
    return problems


def _field_problems(meta: dict[str, Any]) -> list[str]:
    """Values of the wrong type or range (what the trainer and index.parquet rely on)."""
    problems = []
    for name in ("study", "container"):
        if name in meta and not isinstance(meta[name], str):
            problems.append(f"{name} is {meta[name]!r:.40}, not a string")
    if "image_id" in meta and not _is_int(meta["image_id"], 0, MAX_IMAGE_ID):
        problems.append(f"image_id is {meta['image_id']!r:.40}, not an id in 0 .. 2^63 - 1")
    if "n_channels" in meta and not _is_int(meta["n_channels"], 1, MAX_CHANNELS):
        problems.append(f"n_channels is {meta['n_channels']!r:.40}, not an integer from 1 to {MAX_CHANNELS}")
    channels = meta.get("channels")
    if "channels" in meta and not isinstance(channels, list):
        problems.append(f"'channels' is {channels!r:.40}, not a list")
    for position, channel in enumerate(channels if isinstance(channels, list) else []):
        if not isinstance(channel, dict):
            problems.append(f"channels[{position}] is {channel!r:.40}, not an object")
            continue
        wavelength, window = channel.get("emission_wavelength"), channel.get("window")
        if wavelength is not None and not _is_number(wavelength):
            problems.append(f"channels[{position}].emission_wavelength is {wavelength!r:.40}, not a number")
        if window is not None and not (
            isinstance(window, list) and len(window) == 2 and all(_is_number(v) for v in window)
        ):
            problems.append(f"channels[{position}].window is {window!r:.40}, not [start, end]")
    if "source" in meta and not isinstance(meta["source"], dict):
        problems.append(f"'source' is {meta['source']!r:.40}, not an object")
    return problems


def _scan_shard(path: Path) -> tuple[list[_Sample], list[str]]:
    """Samples of one shard in order; a sample's members must be contiguous (WebDataset groups them)."""
    samples: list[_Sample] = []
    problems: list[str] = []
    current: _Sample | None = None
    keys: set[str] = set()
    try:
        for name, data in iter_tar(path):
            parsed = parse_member_name(name)
            if parsed is None:
                problems.append(f"{path.name}: unexpected member {name!r}")
                continue
            key, extension, channel = parsed
            if current is None or current.key != key:
                if key in keys:
                    problems.append(f"{path.name}: members of {key!r} are not contiguous or repeat")
                keys.add(key)
                current = _Sample(key)
                samples.append(current)
            if extension == "json":
                if current.meta is not None or current.channels:
                    current.problems.append("the JSON record is not the sample's first member")
                try:
                    meta = strict_json(data)
                except (ValueError, RecursionError) as error:
                    current.problems.append(f"the JSON record does not parse ({str(error)[:100]})")
                    meta = {}
                if not isinstance(meta, dict):
                    current.problems.append(f"the JSON record is {type(meta).__name__}, not an object")
                    meta = {}
                current.meta = meta
                continue
            assert channel is not None
            current.channels.append(channel)
            try:
                width, height, mode = png_size_and_mode(data)
            except (PixelError, OSError) as error:
                current.problems.append(f"channel {channel:02d} is not a readable PNG ({error})")
                continue
            if (width, height) != (IMAGE_SIZE, IMAGE_SIZE) or mode != "L":
                current.problems.append(
                    f"channel {channel:02d} is {width} x {height} {mode}, "
                    f"expected {IMAGE_SIZE} x {IMAGE_SIZE} L"
                )
    except (tarfile.TarError, OSError, EOFError) as error:
        problems.append(f"{path.name}: unreadable tar ({error})")
    return samples, problems


def _check_index(out: Path, seen: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    if not (out / INDEX_FILE).is_file():
        return [f"{INDEX_FILE}: not a file"]
    try:
        rows = pq.read_table(out / INDEX_FILE).to_pylist()
    except Exception as error:  # pyarrow raises several types for a damaged file
        return [f"{INDEX_FILE}: unreadable ({error})"]
    problems = []
    indexed = set()
    for row in rows:
        key = row.get("key")
        if key in indexed:
            problems.append(f"{INDEX_FILE}: key {key!r} appears twice")
        indexed.add(key)
        if key not in seen:
            problems.append(f"{INDEX_FILE}: key {key!r} is in no shard")
            continue
        shard, meta = seen[key]
        if row.get("shard") != shard:
            problems.append(f"{INDEX_FILE}: key {key!r} says shard {row.get('shard')!r}, found in {shard!r}")
        if row.get("n_channels") != meta.get("n_channels"):
            problems.append(
                f"{INDEX_FILE}: key {key!r} has n_channels {row.get('n_channels')}, JSON says otherwise"
            )
    for key in sorted(set(seen) - indexed):
        problems.append(f"{INDEX_FILE}: key {key!r} of shard {seen[key][0]} is missing from the index")
    return problems


def _read_info(out: Path, problems: list[str]) -> dict[str, Any]:
    """dataset.json as an object ({} when unusable, with the reason in `problems`)."""
    path = out / DATASET_FILE
    try:
        info = strict_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{DATASET_FILE}: missing (the build or merge did not finish)")
        return {}
    except IsADirectoryError:
        problems.append(f"{DATASET_FILE}: a directory, not a file")
        return {}
    except UnicodeDecodeError:
        problems.append(f"{DATASET_FILE}: not UTF-8 text")
        return {}
    except (ValueError, RecursionError) as error:
        problems.append(f"{DATASET_FILE}: does not parse ({str(error)[:100]})")
        return {}
    if not isinstance(info, dict):
        problems.append(f"{DATASET_FILE}: holds {type(info).__name__}, not an object")
        return {}
    if info.get("schema") != SCHEMA:
        problems.append(f"{DATASET_FILE}: schema is {info.get('schema')!r:.40}, expected {SCHEMA!r}")
    for name in ("counts", "index"):
        if not isinstance(info.get(name, {}), dict):
            problems.append(f"{DATASET_FILE}: {name!r} is {info[name]!r:.40}, not an object")
            info[name] = {}
    return info


def _listed_shards(info: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    """dataset.json's shard records by name, each with the fields and types verify relies on."""
    shards = info.get("shards", [])
    if not isinstance(shards, list):
        problems.append(f"{DATASET_FILE}: 'shards' is {shards!r:.40}, not a list")
        return {}
    listed = {}
    for position, record in enumerate(shards):
        where = f"{DATASET_FILE}: shards[{position}]"
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            problems.append(f"{where} is not an object with a 'name'")
            continue
        wrong = [
            field
            for field, valid in (
                ("samples", _is_int(record.get("samples"), 0, 2**63)),
                ("bytes", _is_int(record.get("bytes"), 0, 2**63)),
                ("sha256", isinstance(record.get("sha256"), str)),
            )
            if not valid
        ]
        if wrong:
            problems.append(
                f"{where} ({record['name']!r:.60}): {', '.join(wrong)} missing or of the wrong type"
            )
        listed[record["name"]] = record
    return listed


def verify_dataset(out: Path | str, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    out = Path(out)
    report = VerifyReport()
    if not out.is_dir():
        state = "is a file, not a directory" if out.exists() else "does not exist"
        report.problems.append(f"{out} {state}; expected a dataset directory (dataset.json, shards/)")
        return report
    info = _read_info(out, report.problems)
    listed = _listed_shards(info, report.problems)
    shards_dir = out / SHARDS_DIR
    present = (
        sorted(p.name for p in shards_dir.iterdir() if SHARD_NAME.match(p.name))
        if shards_dir.is_dir()
        else []
    )
    for name in sorted(set(present) - set(listed)):
        report.problems.append(f"{SHARDS_DIR}/{name}: not listed in {DATASET_FILE}")
    for name in sorted(set(listed) - set(present)):
        report.problems.append(f"{SHARDS_DIR}/{name}: listed in {DATASET_FILE} but missing")
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    channels = 0
    for position, name in enumerate(present, start=1):
        path = shards_dir / name
        if not path.is_file():
            report.problems.append(f"{SHARDS_DIR}/{name}: not a file")
            continue
        record = listed.get(name)
        if record is not None and file_sha256(path) != record.get("sha256"):
            report.problems.append(f"{SHARDS_DIR}/{name}: checksum does not match {DATASET_FILE}")
        samples, problems = _scan_shard(path)
        report.problems.extend(problems)
        sample_problems = [p for sample in samples for p in _check_sample(sample, name)]
        report.problems.extend(sample_problems[:MAX_PROBLEMS_PER_SHARD])
        if len(sample_problems) > MAX_PROBLEMS_PER_SHARD:
            report.problems.append(
                f"{name}: {len(sample_problems) - MAX_PROBLEMS_PER_SHARD} more sample problems"
            )
        if record is not None and record.get("samples") != len(samples):
            report.problems.append(
                f"{name}: {len(samples)} samples, {DATASET_FILE} says {record.get('samples')!r:.40}"
            )
        for sample in samples:
            if sample.key in seen:
                report.problems.append(f"{name}: key {sample.key!r} also in {seen[sample.key][0]}")
            seen[sample.key] = (name, sample.meta or {})
            channels += len(sample.channels)
        report.shards += 1
        if progress is not None:
            progress(position, len(present))
    report.samples = len(seen)
    if not seen:
        report.problems.append(f"{out}: the dataset holds no sample (an empty dataset is no dataset)")
    if (out / INDEX_FILE).exists():
        report.problems.extend(_check_index(out, seen))
        index_record = info.get("index") or {}
        if (out / INDEX_FILE).is_file() and index_record.get("sha256") not in (
            None,
            file_sha256(out / INDEX_FILE),
        ):
            report.problems.append(f"{INDEX_FILE}: checksum does not match {DATASET_FILE}")
    else:
        report.problems.append(f"{INDEX_FILE}: missing")
    counts = info.get("counts") or {}
    if info and counts.get("samples") != len(seen):
        report.problems.append(
            f"{DATASET_FILE}: counts.samples is {counts.get('samples')!r:.40}, shards hold {len(seen)}"
        )
    if info and counts.get("channels") not in (None, channels):
        report.problems.append(
            f"{DATASET_FILE}: counts.channels is {counts.get('channels')!r:.40}, shards hold {channels}"
        )
    return report
