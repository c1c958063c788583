"""Reading `idrcell-v1` WebDataset shards: list, stream members grouped by sample, decode.

The reader needs only `tarfile` and Pillow (no builder package). A shard is read member by member
with seeks, so nothing is loaded whole; a sample that cannot be decoded is reported through a
callback and skipped, never raised, so one bad member cannot crash a training rank.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, JpegImagePlugin, PngImagePlugin

SCHEMA = "idrcell-v1"
# The contract fixes 224 x 224 channels (docs/format.md); other sizes are resized on decode.
IMAGE_SIZE = 224

SkipCallback = Callable[[str, str], None]
"""Called as `on_skip(where, reason)` for every sample or shard part that could not be read."""


class DataError(ValueError):
    """A data directory that cannot be trained on; the message names the path and the problem."""


@dataclass(frozen=True)
class RawSample:
    """The undecoded members of one sample: `members` maps suffix (`json`, `c00.png`, ...) to bytes."""

    key: str
    shard: str
    position: int
    members: dict[str, bytes]


@dataclass(frozen=True)
class DecodedSample:
    """One image: `pixels` is (C, H, W) uint8, channels in the source's order."""

    key: str
    pixels: torch.Tensor
    metadata: dict

    @property
    def n_channels(self) -> int:
        return int(self.pixels.shape[0])

    def as_float(self) -> torch.Tensor:
        """The image as (C, H, W) float in [0, 1]."""
        return self.pixels.float().div_(255.0)


def list_shards(data_dir: str | Path) -> list[Path]:
    """The sorted `DIR/shards/*.tar` files; one clear `DataError` when there are none."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist; pass the output folder of `idrcell build`")
    shard_dir = root / "shards"
    shards = sorted(p for p in shard_dir.glob("*.tar") if p.is_file()) if shard_dir.is_dir() else []
    if not shards:
        raise DataError(f"data directory {root} holds no shards: {shard_dir}/*.tar matched nothing")
    return shards


def split_member_name(name: str) -> tuple[str, str]:
    """`dir/KEY.c00.png` -> (`dir/KEY`, `c00.png`): WebDataset keys end at the basename's first dot."""
    directory, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, suffix if dot else ""


def iter_raw_samples(
    shard: Path,
    keep: Callable[[int], bool] | None = None,
    on_skip: SkipCallback | None = None,
) -> Iterator[RawSample]:
    """Yield the samples of one shard in order; `keep(position)` selects which to read.

    Samples not kept are skipped by seeking past their data. A truncated or unreadable tar ends the
    shard with one `on_skip` report; the samples read before stay valid.
    """
    report = on_skip or (lambda where, reason: None)
    try:
        tar = tarfile.open(shard, mode="r:")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as error:
        report(str(shard), f"cannot open shard: {error}")
        return
    with tar:
        position = -1
        current_key: str | None = None
        members: dict[str, bytes] = {}
        selected = False
        try:
            for member in tar:
                if not member.isfile():
                    continue
                key, suffix = split_member_name(member.name)
                if key != current_key:
                    if current_key is not None and selected:
                        yield RawSample(current_key, shard.name, position, members)
                    current_key, members, position = key, {}, position + 1
                    selected = keep is None or keep(position)
                if selected:
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    members[suffix] = handle.read()
                    if len(members[suffix]) != member.size:
                        raise tarfile.ReadError(f"member {member.name} is truncated")
        except (OSError, tarfile.TarError, EOFError) as error:
            # The sample being read when the tar broke is incomplete: drop it, report once.
            report(f"{shard.name}:{current_key}", f"shard is truncated or corrupt: {error}")
            return
        if current_key is not None and selected:
            yield RawSample(current_key, shard.name, position, members)


def count_samples(shard: Path) -> int:
    """Number of samples in a shard, from the tar headers alone (the data is seeked over)."""
    keys: set[str] = set()
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    keys.add(split_member_name(member.name)[0])
    except (OSError, tarfile.TarError, EOFError):
        pass  # a truncated shard counts the samples whose headers were readable
    return len(keys)


class SampleError(ValueError):
    """One sample that does not follow idrcell-v1; the reader skips it."""


def decode_sample(
    raw: RawSample, image_size: int = IMAGE_SIZE, max_channels: int | None = None
) -> DecodedSample:
    """Decode the JSON and the channel PNGs of one sample into (C, image_size, image_size) uint8."""
    if "json" not in raw.members:
        raise SampleError("no .json member")
    try:
        metadata = json.loads(raw.members["json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SampleError(f"unreadable .json: {error}") from error
    n_channels = metadata.get("n_channels") if isinstance(metadata, dict) else None
    if not isinstance(n_channels, int) or n_channels < 1:
        raise SampleError(f"n_channels is {n_channels!r}, expected a positive integer")
    if max_channels is not None and n_channels > max_channels:
        raise SampleError(f"{n_channels} channels is more than the model's {max_channels}")
    planes = []
    for index in range(n_channels):
        suffix = f"c{index:02d}.png"
        if suffix not in raw.members:
            raise SampleError(f"n_channels is {n_channels} but member {suffix} is missing")
        planes.append(_decode_plane(raw.members[suffix], f"sample {raw.key!r}: {suffix}", image_size))
    return DecodedSample(raw.key, torch.from_numpy(np.stack(planes)), metadata)


def _open_plane(data: bytes, what: str, max_side: int) -> Image.Image:
    """A channel PNG opened lazily, its declared size checked before any pixel is decoded.

    The format's own plugin reads the header: `Image.open` would run PIL's decompression-bomb check
    first, whose error names no sample and which a training run would treat as fatal.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        plugin: type[Image.Image] = PngImagePlugin.PngImageFile
    elif data.startswith(b"\xff\xd8"):
        plugin = JpegImagePlugin.JpegImageFile
    else:
        raise SampleError(f"{what} is not a PNG ({len(data)} bytes starting {data[:8]!r})")
    try:
        image = plugin(io.BytesIO(data))  # type: ignore[call-arg]
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise SampleError(f"{what} is not a readable PNG: {error}") from None
    if max(image.size) > max_side:
        image.close()
        raise SampleError(
            f"{what} declares {image.width} x {image.height} px, more than {max_side} x {max_side}; "
            "refused before decoding (a decompression bomb?)"
        )
    return image


def _decode_plane(data: bytes, what: str, image_size: int) -> np.ndarray:
    # Shards hold 224 x 224 channels (docs/format.md); nothing larger is decoded.
    with _open_plane(data, what, max(IMAGE_SIZE, image_size)) as image:
        try:
            image.load()
            if image.mode != "L":
                image = image.convert("L")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            # A read-only view of the decoder's bytes; `np.stack` copies it into the sample.
            return np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, EOFError) as error:  # PIL raises these on bad data
            raise SampleError(f"{what} is not a readable PNG: {error}") from error
