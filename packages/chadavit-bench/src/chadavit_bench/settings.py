"""The settings stamped on every result row: what shaped a number besides the model and the data."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pandas as pd

from chadavit_bench.config import BenchConfig
from chadavit_bench.results import Settings

# BenchConfig fields that do not change a number (speed, device, what the report draws) or that
# have their own column (img_size, seeds, intensity; features is the rows' `features` column).
_NOT_PROTOCOL = frozenset(
    {"img_size", "seeds", "intensity", "dataset_intensity", "features", "batch_size", "workers", "device"}
    | {"attention_images", "attention_datasets"}
)

# What the bench did to raw intensities before `--intensity` existed: uint8 / 255, any other dtype
# min-max scaled per image and per channel.
LEGACY_INTENSITY = "uint8-or-image-minmax"


def protocol_digest(config: BenchConfig) -> str:
    """12 hex digits of the protocol settings (kNN, probes, regimes, subsets...).

    Equal digests: the same protocol."""
    fields = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _NOT_PROTOCOL
    }
    text = json.dumps(json.loads(json.dumps(fields, default=_plain)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def run_settings(config: BenchConfig, model_checksum: str) -> Settings:
    return Settings(
        img_size=config.img_size,
        intensity=str(getattr(config, "intensity", LEGACY_INTENSITY)),
        protocol=protocol_digest(config),
        seeds=config.seeds,
        model_checksum=model_checksum,
    )


def row_intensity(config: BenchConfig, dataset: str) -> str:
    """The intensity mode of a row of `dataset`; a joint row ("a+b") names each part's mode when
    they differ ("bbbc021:raw+bray:dtype")."""
    parts = dataset.split("+")
    modes = [config.intensity_for(part) for part in parts]
    if len(set(modes)) == 1:
        return modes[0]
    return "+".join(f"{part}:{mode}" for part, mode in zip(parts, modes, strict=True))


def stamp_intensity(frame: pd.DataFrame, config: BenchConfig) -> pd.DataFrame:
    """`frame` with each row's `intensity` the mode its dataset was read with (per-dataset modes)."""
    if not config.dataset_intensity or frame.empty:
        return frame
    return frame.assign(intensity=[row_intensity(config, d) for d in frame["dataset"]])
