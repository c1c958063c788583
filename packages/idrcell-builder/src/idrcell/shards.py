"""The `idrcell-v1` sample and its deterministic tar encoding.

A sample is `KEY.json` followed by `KEY.c00.png`, `KEY.c01.png`, ... (one 224 x 224 8-bit PNG per
channel, in the source's channel order). Tars are written with fixed headers (mtime, owner, mode,
USTAR format) and members in a fixed order, so the same samples always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

SCHEMA = "idrcell-v1"
SHARD_PATTERN = "idrcell-{index:06d}.tar"
SHARD_NAME = re.compile(r"^idrcell-(\d{6})\.tar$")
# A fixed timestamp (2020-01-01T00:00:00Z) in every tar header: real clocks would change the bytes.
FIXED_MTIME = 1_577_836_800
_MEMBER = re.compile(r"^(?P<key>[^.]+)\.(?P<ext>json|c(?P<channel>\d{2})\.png)$")

Member = tuple[str, bytes]


def sample_json_bytes(meta: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, so equal metadata gives equal bytes.

    Strict JSON: a NaN or infinity raises instead of writing `NaN`, which no JSON parser must accept.
    """
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def sample_members(key: str, meta: dict[str, Any], pngs: list[bytes]) -> list[Member]:
    if meta.get("key") != key or meta.get("n_channels") != len(pngs):
        raise ValueError(f"sample {key!r}: metadata disagrees with its key or number of channels")
    members = [(f"{key}.json", sample_json_bytes(meta))]
    members.extend((f"{key}.c{index:02d}.png", png) for index, png in enumerate(pngs))
    return members


def imported_sample_meta(
    key: str,
    study: str,
    container: str,
    image_id: int,
    image_name: str | None,
    channels: list[dict[str, Any]],
    source: dict[str, Any],
) -> dict[str, Any]:
    """KEY.json of an image imported from files (docs/format.md).

    What only IDR's API says (plate, well, field, dataset, the study's annotations) is null.
    """
    return {
        "schema": SCHEMA,
        "key": key,
        "study": study,
        "container": container,
        "image_id": image_id,
        "image_name": image_name,
        "plate": None,
        "well": None,
        "field": None,
        "dataset": None,
        "imaging_method": None,
        "organism": None,
        "cell_line": None,
        "n_channels": len(channels),
        "channels": channels,
        "source": source,
    }


def parse_member_name(name: str) -> tuple[str, str, int | None] | None:
    """(key, extension, channel index or None) of a member name, or None if it is not one of ours."""
    match = _MEMBER.match(name)
    if not match:
        return None
    channel = match.group("channel")
    return match.group("key"), match.group("ext"), None if channel is None else int(channel)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it on its way to `target`."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:  # tarfile asks where it starts writing
        return self.size

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._target.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def write_tar(handle: BinaryIO, members: Iterable[Member]) -> tuple[str, int]:
    """Write members as a deterministic USTAR tar into `handle`; return (sha256 hex, size in bytes)."""
    hashing = _HashingWriter(handle)
    with tarfile.open(fileobj=hashing, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            archive.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
    return hashing.sha256.hexdigest(), hashing.size


def tar_bytes(members: Iterable[Member]) -> bytes:
    buffer = io.BytesIO()
    write_tar(buffer, members)
    return buffer.getvalue()


def iter_tar(path: Path) -> Iterator[Member]:
    """Members of a tar in stored order; raises tarfile.TarError or OSError on a damaged file."""
    with tarfile.open(path, mode="r:") as archive:
        for info in archive:
            if not info.isfile():
                raise tarfile.TarError(f"{path.name}: member {info.name!r} is not a regular file")
            extracted = archive.extractfile(info)
            assert extracted is not None  # regular files always extract
            yield info.name, extracted.read()


def read_tar(path: Path) -> list[Member]:
    return list(iter_tar(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
