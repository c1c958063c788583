"""Tiny `idrcell-v1` datasets written on the fly, for tests, benchmarks and CPU demos.

Images are synthetic cells (Gaussian blobs whose brightness differs per channel), so that views of
one image share structure and DINO has something to learn; every byte follows from the seed.
"""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from chadavit.data.shards import SCHEMA


def synthetic_image(rng: np.random.Generator, n_channels: int, size: int) -> np.ndarray:
    """(C, size, size) uint8: a few blobs, each channel a different mix of them."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    n_blobs = int(rng.integers(2, 7))
    blobs = []
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0.1, 0.9, size=2) * size
        radius = rng.uniform(0.04, 0.15) * size
        blobs.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)))
    stack = np.stack(blobs)  # (n_blobs, size, size)
    weights = rng.uniform(0.0, 1.0, size=(n_channels, n_blobs)).astype(np.float32)
    planes = np.tensordot(weights, stack, axes=1) + rng.normal(0.0, 0.03, size=(n_channels, size, size))
    planes /= max(float(planes.max()), 1e-6)
    return (np.clip(planes, 0.0, 1.0) * 255).astype(np.uint8)


def _png(plane: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(plane, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # fixed so the same seed gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def sample_members(
    key: str,
    pixels: np.ndarray,
    study: str = "idr0000-synthetic",
    labels: Sequence[str | None] | None = None,
) -> list[tuple[str, bytes]]:
    """The tar members (`KEY.json`, `KEY.c00.png`, ...) of one idrcell-v1 sample; `labels`: the
    channels' `label`s (null by default)."""
    n_channels = int(pixels.shape[0])
    labels = list(labels) if labels is not None else [None] * n_channels
    metadata = {
        "schema": SCHEMA,
        "key": key,
        "study": study,
        "container": None,
        "image_id": None,
        "plate": None,
        "well": None,
        "field": None,
        "imaging_method": None,
        "organism": None,
        "cell_line": None,
        "n_channels": n_channels,
        "channels": [
            {"index": i, "label": labels[i], "emission_wavelength": None, "window": None}
            for i in range(n_channels)
        ],
        "source": {
            "width": pixels.shape[2],
            "height": pixels.shape[1],
            "pixels_type": "uint8",
            "z": 0,
            "t": 0,
        },
    }
    members = [(f"{key}.json", json.dumps(metadata, sort_keys=True).encode())]
    members += [(f"{key}.c{i:02d}.png", _png(pixels[i])) for i in range(n_channels)]
    return members


def write_image_shards(
    data_dir: str | Path,
    images: Iterable[np.ndarray],
    shard_sizes: Sequence[int] | int,
    seed: int = 0,
    study: str = "idr0000-synthetic",
) -> list[str]:
    """Write (C, H, W) uint8 `images` as `DIR/shards/idrcell-NNNNNN.tar` plus `DIR/dataset.json`.

    An item of `images` may also be `(pixels, channel labels)`.

    `shard_sizes` is the number of samples of each shard in turn, or one size for every shard until
    the images run out. Returns the sample keys in order; the same images give the same bytes.
    """
    shard_dir = Path(data_dir) / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    pending = iter(images)
    sizes = itertools.repeat(shard_sizes) if isinstance(shard_sizes, int) else iter(shard_sizes)
    keys: list[str] = []
    shards = 0
    for shard_index, size in enumerate(sizes):
        batch = list(itertools.islice(pending, size))
        if not batch and isinstance(shard_sizes, int):
            break
        with tarfile.open(
            shard_dir / f"idrcell-{shard_index:06d}.tar", "w", format=tarfile.USTAR_FORMAT
        ) as tar:
            for item in batch:
                pixels, labels = item if isinstance(item, tuple) else (item, None)
                key = f"{study}_sample_{len(keys):06d}"
                for name, data in sample_members(key, pixels, study, labels):
                    _add(tar, name, data)
                keys.append(key)
        shards += 1
    dataset = {"schema": SCHEMA, "seed": seed, "counts": {"samples": len(keys), "shards": shards}}
    (Path(data_dir) / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return keys


def write_shards(
    data_dir: str | Path,
    shard_sizes: Sequence[int],
    channel_counts: Sequence[int] = (1, 2, 3, 4),
    image_size: int = 224,
    seed: int = 0,
) -> list[str]:
    """Blob images (`synthetic_image`) in shards of the given sizes; return the keys.

    Channel counts cycle through `channel_counts` so every count appears.
    """
    rng = np.random.default_rng(seed)
    images = (
        synthetic_image(rng, int(channel_counts[index % len(channel_counts)]), image_size)
        for index in range(sum(shard_sizes))
    )
    return write_image_shards(data_dir, images, shard_sizes, seed)


def corrupt_member(shard: Path, member_suffix: str, sample_position: int = 0) -> str:
    """Rewrite `shard` with the `member_suffix` member of one sample replaced by garbage; return its key."""
    with tarfile.open(shard, "r:") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    keys: list[str] = []
    for name, _ in members:
        key = name.split(".", 1)[0]
        if key not in keys:
            keys.append(key)
    target = keys[sample_position]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            if name == f"{target}.{member_suffix}":
                data = b"\x89PNG not really" if member_suffix.endswith("png") else b"{not json"
            _add(tar, name, data)
    return target
