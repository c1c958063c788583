"""Bounds on what reading one OME-Zarr image may allocate. A store is untrusted input like any answer.

zarr's codecs size their output from the chunk itself: blosc and zstd allocate what their header
declares, zlib and gzip inflate until the stream ends, so a chunk of a few KB can ask for GBs. Two
checks keep a read bounded:
- before reading (`check_array`): the array's declared dtype, chunk shape and the plane size at the
  level read, against `MAX_CHUNK_BYTES` and `MAX_READ_BYTES`;
- before zarr decodes a chunk (`ChunkCheck`, run by the store on every chunk it fetches): what the
  compressed payload would decode to, read from its header (blosc, zstd) or by inflating it at most
  one byte past the declared chunk size (zlib, gzip), must not exceed the declared chunk shape.
A compressor whose output cannot be bounded this way (lz4, bz2, lzma, filters) is refused.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# One decoded chunk: 64 MiB, the client's default answer cap, so that any raw chunk the client accepts
# decodes within it too. OME-Zarr writers use tiles of 256 to 1,024 px a side (1,024 x 1,024 float64
# is 8 MiB), so legitimate stores sit far below it.
MAX_CHUNK_BYTES = 64 * 2**20
# The planes of one image at the level read, all channels: 1 GiB holds 10 channels of a 7,000 x 7,000
# uint16 level, well above what the smallest level with a 224 px short side is for IDR images.
MAX_READ_BYTES = 2**30
_METADATA_KEYS = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})
_ZSTD_MAGIC = 0xFD2FB528
_NO_ENTRY = 2**64 - 1  # a shard index entry for an empty inner chunk


class ZarrTooLarge(ValueError):
    """An array, or a chunk, that would decode to more than its declared size or the caps allow."""


class ZarrUnbounded(ValueError):
    """An array whose codecs the builder cannot bound before decoding (lz4, bz2, filters, ...)."""


@dataclass(frozen=True)
class ChunkCheck:
    """Checks one stored chunk (or shard) before zarr's codecs decode it."""

    chunk_bytes: int  # decoded size of one (inner) chunk: its declared shape x itemsize
    codec: str  # "none", "blosc", "zlib", "gzip" or "zstd": the one compressor of the chain
    checksum: bool = False  # a crc32c codec appends 4 bytes after compression
    inner_chunks: int = 0  # > 0: the object is a shard of that many inner chunks, index at its end
    index_at_start: bool = False
    url: str = ""  # the array's, for messages

    def __call__(self, key: str, data: bytes) -> None:
        if key.rsplit("/", 1)[-1] in _METADATA_KEYS:
            return
        if not self.inner_chunks:
            self._check_chunk(key, data)
            return
        index_bytes = self.inner_chunks * 16 + 4  # (offset, nbytes) uint64 pairs, then their crc32c
        if len(data) < index_bytes:
            raise ZarrTooLarge(f"shard {key} is {len(data)} bytes, shorter than its index")
        index = data[:index_bytes] if self.index_at_start else data[-index_bytes:]
        entries = np.frombuffer(index[:-4], dtype="<u8").reshape(-1, 2)
        for number, (offset, nbytes) in enumerate(entries.tolist()):
            if offset == _NO_ENTRY and nbytes == _NO_ENTRY:
                continue
            if offset + nbytes > len(data):
                raise ZarrTooLarge(f"shard {key}: inner chunk {number} lies outside the shard")
            self._check_chunk(f"{key} inner chunk {number}", data[offset : offset + nbytes])

    def _check_chunk(self, key: str, data: bytes) -> None:
        payload = data[:-4] if self.checksum else data
        decoded = decoded_size(self.codec, payload, self.chunk_bytes)
        if decoded > self.chunk_bytes:
            # zlib and gzip were inflated only one byte past the limit: their full size is unknown
            size = f"more than {self.chunk_bytes:,}" if self.codec in ("zlib", "gzip") else f"{decoded:,}"
            raise ZarrTooLarge(
                f"chunk {self.url}/{key} ({len(data):,} bytes, {self.codec}) decodes to {size} bytes; "
                f"its declared chunk shape holds {self.chunk_bytes:,}"
            )


def decoded_size(codec: str, data: bytes, limit: int) -> int:
    """What `data` decodes to under `codec`: exact where the header says it, else inflated up to
    `limit + 1` bytes (any larger answer means "over the limit")."""
    if codec == "none":
        return len(data)
    if codec == "blosc":
        # blosc 1 header: version, versionlz, flags, typesize, then nbytes, blocksize, cbytes (uint32 LE)
        if len(data) < 16:
            raise ZarrTooLarge(f"a blosc chunk of {len(data)} bytes has no header")
        nbytes, cbytes = int.from_bytes(data[4:8], "little"), int.from_bytes(data[12:16], "little")
        if cbytes > len(data):
            raise ZarrTooLarge(f"a blosc chunk of {len(data)} bytes declares {cbytes} compressed bytes")
        return nbytes
    if codec == "zstd":
        return zstd_content_size(data)
    wbits = zlib.MAX_WBITS if codec == "zlib" else 16 + zlib.MAX_WBITS
    total, rest = 0, data
    while rest and total <= limit:  # gzip chunks may hold several members; zlib one stream
        inflater = zlib.decompressobj(wbits)
        try:
            total += len(inflater.decompress(rest, limit + 1 - total))
        except zlib.error as error:
            raise ZarrTooLarge(f"a {codec} chunk does not inflate: {error}") from None
        if codec == "zlib" or not inflater.eof:
            break
        rest = inflater.unused_data
    return total


def zstd_content_size(data: bytes) -> int:
    """The summed content sizes declared by the zstd frames of `data` (RFC 8878, section 3.1.1).

    zarr's zstd codec allocates what the frame header declares; a frame that declares none would
    be inflated without a bound, so it is refused."""
    position, total = 0, 0
    while position < len(data):
        magic = int.from_bytes(data[position : position + 4], "little")
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # a skippable frame: its size, then that many bytes
            position += 8 + int.from_bytes(data[position + 4 : position + 8], "little")
            continue
        if magic != _ZSTD_MAGIC or position + 5 > len(data):
            raise ZarrTooLarge("a zstd chunk holds something that is not a zstd frame")
        descriptor = data[position + 4]
        position += 5
        single_segment = descriptor >> 5 & 1
        size_length = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
        position += (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
        if size_length == 0:
            raise ZarrTooLarge("a zstd frame that does not declare its decoded size")
        size = int.from_bytes(data[position : position + size_length], "little")
        total += size + (256 if size_length == 2 else 0)
        position += size_length
        while True:  # blocks: a 3-byte header each (last flag, type, size)
            if position + 3 > len(data):
                raise ZarrTooLarge("a zstd frame is cut short")
            header = int.from_bytes(data[position : position + 3], "little")
            position += 3 + (1 if header >> 1 & 3 == 1 else header >> 3)  # an RLE block stores 1 byte
            if header & 1:
                break
        position += 4 if descriptor >> 2 & 1 else 0  # the content checksum
    return total


def _codec_name(codec: Any) -> str:
    return str(getattr(codec, "codec_id", None) or type(codec).__name__)


def _compressor(names: Sequence[str], where: str) -> tuple[str, bool]:
    """The one compressor of a bytes-to-bytes chain (and whether a crc32c follows it)."""
    known = {"BloscCodec": "blosc", "GzipCodec": "gzip", "ZstdCodec": "zstd"}
    checksum = bool(names) and names[-1] == "Crc32cCodec"
    chain = list(names[:-1] if checksum else names)
    if not chain:
        return "none", checksum
    if len(chain) == 1 and chain[0] in known:
        return known[chain[0]], checksum
    raise ZarrUnbounded(f"{where}: codecs {', '.join(names)} cannot be bounded before decoding")


def check_array(array: Any, axes: Sequence[str], channels: int, url: str) -> ChunkCheck:
    """Refuse an array whose declared sizes break the caps; the check its chunks must then pass."""
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "uifb":
        raise ZarrUnbounded(f"{url}: dtype {dtype} is not numeric")
    shape = [int(n) for n in array.shape]
    plane = shape[axes.index("y")] * shape[axes.index("x")] * dtype.itemsize * channels
    if plane > MAX_READ_BYTES:
        raise ZarrTooLarge(
            f"{url}: {channels} plane(s) of {shape[axes.index('x')]} x {shape[axes.index('y')]} px {dtype} "
            f"are {plane:,} bytes, above the {MAX_READ_BYTES:,}-byte cap of one image's read"
        )
    metadata = array.metadata
    if getattr(metadata, "zarr_format", 3) == 2:
        if metadata.filters:
            raise ZarrUnbounded(f"{url}: filters {[_codec_name(f) for f in metadata.filters]} are not read")
        compressor = metadata.compressor
        name = "none" if compressor is None else _codec_name(compressor)
        if name not in ("none", "blosc", "zlib", "gzip", "zstd"):
            raise ZarrUnbounded(f"{url}: compressor {name} cannot be bounded before decoding")
        return _chunk_check(shape_of(array.chunks), dtype, name, url)
    codecs = list(metadata.codecs)
    shard = next((c for c in codecs if type(c).__name__ == "ShardingCodec"), None)
    if shard is None:
        name, checksum = _compressor(_after_bytes(codecs, url), url)
        return _chunk_check(shape_of(array.chunks), dtype, name, url, checksum)
    inner = shape_of(shard.chunk_shape)
    outer = shape_of(metadata.chunk_grid.chunk_shape)
    index_names = [type(c).__name__ for c in shard.index_codecs]
    if index_names != ["BytesCodec", "Crc32cCodec"]:
        raise ZarrUnbounded(f"{url}: shard index codecs {', '.join(index_names)} are not read")
    name, checksum = _compressor(_after_bytes(list(shard.codecs), url), url)
    check = _chunk_check(inner, dtype, name, url, checksum)
    count = math.prod(-(-o // i) for o, i in zip(outer, inner, strict=True))
    at_start = str(getattr(shard.index_location, "value", shard.index_location)) == "start"
    return ChunkCheck(check.chunk_bytes, name, checksum, count, at_start, url)


def shape_of(value: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in value)


def _after_bytes(codecs: list[Any], url: str) -> list[str]:
    """The bytes-to-bytes codecs of a zarr v3 chain (after `bytes`; transposes before it are fine)."""
    names = [type(c).__name__ for c in codecs]
    if "BytesCodec" not in names:
        raise ZarrUnbounded(f"{url}: codecs {', '.join(names)} have no bytes codec")
    before = names[: names.index("BytesCodec")]
    if any(name != "TransposeCodec" for name in before):
        raise ZarrUnbounded(f"{url}: codecs {', '.join(names)} cannot be bounded before decoding")
    return names[names.index("BytesCodec") + 1 :]


def _chunk_check(
    chunks: tuple[int, ...], dtype: np.dtype, codec: str, url: str, checksum: bool = False
) -> ChunkCheck:
    size = math.prod(chunks) * dtype.itemsize
    if size > MAX_CHUNK_BYTES:
        raise ZarrTooLarge(
            f"{url}: chunks of {' x '.join(map(str, chunks))} {dtype} are {size:,} bytes, above the "
            f"{MAX_CHUNK_BYTES:,}-byte cap of one chunk"
        )
    return ChunkCheck(size, codec, checksum, url=url)
