"""The one feature extractor every protocol shares, with an on-disk cache.

For each image: the CLS embedding and the mean of all its patch tokens (every channel, every
position), and optionally the patch-token map averaged over channels (h, w, D) for the
reconstruction decoder. Images are resized to the model's input size and run padding-free in
batches.

Cache: one `.npz` per (model, dataset, setting), no pickle. Its key is the sha256 of the model's
weights checksum, the dataset's fingerprint (records plus each data file's name, size and mtime:
see `DownstreamDataset.fingerprint`), the setting (image size, channel subset, patch maps) and the
extractor's code version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import chadavit
from chadavit.atomic import atomic_write
from chadavit_bench import __version__
from chadavit_bench.datasets.base import DownstreamDataset
from chadavit_bench.imaging import in_unit_range

logger = logging.getLogger(__name__)

CODE_VERSION = "embed-v1"  # bump when what is computed changes, to invalidate every cache entry
FEATURE_KINDS = ("cls", "tokens")
# The paper's appendix "all tokens": every patch token of every channel, flattened (C x 196 x 192 per
# image at 224 px), where it fits in memory. "tokens" above is the mean patch token.
ALL_TOKENS = "all_tokens"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class EmbedSetting:
    img_size: int = 224
    channels: tuple[str, ...] | None = None  # a subset of the dataset's channels, in this order
    patch_maps: bool = False
    prepare: str = "resize"  # or "resize_center_crop": the authors' Resize 256 + CenterCrop 224
    all_tokens: bool = False  # also keep every patch token, flattened (the paper's "all tokens")


@dataclass(frozen=True)
class Embeddings:
    keys: np.ndarray  # (N,) record keys, in dataset order
    cls: np.ndarray  # (N, D)
    tokens: np.ndarray  # (N, D) mean of all patch tokens
    patch_maps: np.ndarray | None = None  # (N, h, w, D) channel-mean patch tokens
    all_tokens: np.ndarray | None = None  # (N, C * h * w * D) every patch token, flattened

    def features(self, kind: str) -> np.ndarray:
        if kind == ALL_TOKENS:
            if self.all_tokens is None:
                raise ValueError("these embeddings were computed without all_tokens")
            return self.all_tokens
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")
        return self.cls if kind == "cls" else self.tokens


PREPARATIONS = ("resize", "resize_center_crop")


def resize(image: np.ndarray, size: int, prepare: str = "resize") -> torch.Tensor:
    """(C, H, W) float array -> (C, size, size) tensor; bilinear with antialiasing when shrinking.

    "resize_center_crop": first to a square of round(size * 256 / 224), then the central size x size
    (at 224 px: Resize 256 + CenterCrop 224, the authors' evaluation transform)."""
    if prepare not in PREPARATIONS:
        raise ValueError(f"unknown image preparation {prepare!r}; expected one of {PREPARATIONS}")
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    full = size if prepare == "resize" else round(size * 256 / 224)
    if tensor.shape[1:] != (full, full):
        tensor = F.interpolate(
            tensor[None], size=(full, full), mode="bilinear", antialias=True, align_corners=False
        )[0]
    start = (full - size) // 2
    return tensor[:, start : start + size, start : start + size]


def channel_positions(dataset: DownstreamDataset, channels: Sequence[str] | None) -> list[int]:
    if channels is None:
        return list(range(dataset.n_channels))
    missing = [c for c in channels if c not in dataset.channel_names]
    if missing:
        raise ValueError(f"{dataset.name} has no channels {missing}; it has {list(dataset.channel_names)}")
    return [dataset.channel_names.index(c) for c in channels]


def _setting_document(setting: EmbedSetting) -> dict:
    document = asdict(setting)
    # The keys of caches written before these options existed stay valid.
    if document["prepare"] == "resize":
        del document["prepare"]
    if not document["all_tokens"]:
        del document["all_tokens"]
    return document


def cache_key(model_checksum: str, dataset: DownstreamDataset, setting: EmbedSetting) -> str:
    document = {
        "model": model_checksum,
        "dataset": dataset.fingerprint(),
        "setting": _setting_document(setting),
        "code": [CODE_VERSION, __version__],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz atomically: a temporary file in the same folder, then a rename."""

    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:  # a file object: np.savez would append .npz to a name
            np.savez(stream, **arrays)

    atomic_write(path, write)


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cached .npz, or None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # A cache is disposable: one that is damaged, or holds pickled objects (never unpickled), is
        # computed again and replaced.
        logger.warning("ignoring the unreadable cache %s (%s); computing it again", path, error)
        return None


def _load_cached(path: Path) -> Embeddings | None:
    arrays = _read_cache(path)
    if arrays is None or not {"keys", "cls", "tokens"} <= set(arrays):
        return None
    return Embeddings(
        keys=arrays["keys"],
        cls=arrays["cls"],
        tokens=arrays["tokens"],
        patch_maps=arrays.get("patch_maps"),
        all_tokens=arrays.get("all_tokens"),
    )


def read_images(
    dataset: DownstreamDataset,
    indices: Sequence[int],
    positions: list[int],
    size: int,
    workers: int,
    prepare: str = "resize",
) -> list[torch.Tensor]:
    def one(index: int) -> torch.Tensor:
        return resize(dataset.read(index)[positions], size, prepare)

    if workers <= 1:
        return [one(i) for i in indices]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoding releases the GIL
        return list(pool.map(one, indices))


@torch.inference_mode()
def _embed_batch(
    model: nn.Module,
    images: list[torch.Tensor],
    device: str,
    patch_maps: bool,
    channel_names: Sequence[str] | None = None,
    all_tokens: bool = False,
) -> dict:
    # The dataset's channel names go with every image: a model that embeds channels by name reads
    # them (mapping raw names like "DAPI" to its vocabulary), the others ignore them.
    names = None if channel_names is None else [list(channel_names)] * len(images)
    batch = chadavit.ChannelBatch.from_images(images, names).to(device)
    features = model.forward_features(batch)
    tokens = torch.stack([p.reshape(-1, p.shape[-1]).mean(dim=0) for p in features.patch_tokens])
    out = {"cls": features.cls.float().cpu().numpy(), "tokens": tokens.float().cpu().numpy()}
    if patch_maps:
        out["patch_maps"] = torch.stack([p.mean(dim=0) for p in features.patch_tokens]).float().cpu().numpy()
    if all_tokens:
        out["all_tokens"] = torch.stack([p.reshape(-1) for p in features.patch_tokens]).float().cpu().numpy()
    return out


def extract_embeddings(
    model: nn.Module,
    model_checksum: str,
    dataset: DownstreamDataset,
    setting: EmbedSetting,
    cache_dir: Path | None,
    batch_size: int = 64,
    device: str = "cpu",
    workers: int = 4,
    progress: Progress | None = None,
) -> Embeddings:
    """Embeddings of every record of `dataset`, from the cache when the same key was computed before."""
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{dataset.name}-{cache_key(model_checksum, dataset, setting)[:24]}.npz"
        cached = _load_cached(path)
        if cached is not None:
            if progress:
                progress(len(dataset))
            return cached
    positions = channel_positions(dataset, setting.channels)
    names = [dataset.channel_names[p] for p in positions]
    parts: dict[str, list[np.ndarray]] = {"cls": [], "tokens": [], "patch_maps": [], "all_tokens": []}
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        images = read_images(dataset, indices, positions, setting.img_size, workers, setting.prepare)
        embedded = _embed_batch(model, images, device, setting.patch_maps, names, setting.all_tokens)
        for name, value in embedded.items():
            parts[name].append(value)
        if progress:
            progress(len(indices))
    arrays = {name: np.concatenate(values) for name, values in parts.items() if values}
    embeddings = Embeddings(
        keys=np.array([r.key for r in dataset.records], dtype=str),
        cls=arrays["cls"],
        tokens=arrays["tokens"],
        patch_maps=arrays.get("patch_maps"),
        all_tokens=arrays.get("all_tokens"),
    )
    if path is not None:
        save_npz(path, keys=embeddings.keys, **arrays)
    return embeddings


@torch.inference_mode()
def all_tokens_bytes(
    model: nn.Module,
    dataset: DownstreamDataset,
    img_size: int,
    device: str = "cpu",
    channels: int | None = None,
) -> int:
    """Bytes the flattened patch tokens of every image of `dataset` take (float32), from one image
    (its first `channels` channels: what a fixed-channel model sees)."""
    image = resize(dataset.read(0)[:channels], img_size)
    features = model.forward_features(chadavit.ChannelBatch.from_images([image]).to(device))
    return features.patch_tokens[0].numel() * 4 * len(dataset)


def channel_targets(
    dataset: DownstreamDataset, channel: str, size: int, cache_dir: Path | None, workers: int = 4
) -> np.ndarray:
    """One channel of every record resized to (size, size): the reconstruction targets, cached."""
    path = None
    if cache_dir is not None:
        setting = EmbedSetting(img_size=size, channels=(channel,))
        path = cache_dir / f"{dataset.name}-target-{cache_key('targets', dataset, setting)[:24]}.npz"
        cached = _read_cache(path)
        if cached is not None and "targets" in cached:
            return cached["targets"]
    positions = channel_positions(dataset, [channel])
    images = read_images(dataset, range(len(dataset)), positions, size, workers)
    targets = torch.stack(images)[:, 0].numpy()
    if in_unit_range(dataset.intensity):  # resampling overshoot; `raw` pixels keep their counts
        targets = targets.clip(0.0, 1.0)
    if path is not None:
        save_npz(path, targets=targets)
    return targets
