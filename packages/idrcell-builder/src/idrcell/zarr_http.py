"""A read-only zarr store over the builder's HTTP client, so OME-Zarr reads obey its limits.

zarr (v3 of the python package, which reads both the v2 and v3 formats) does the format work:
metadata, chunk grids, blosc/zlib/gzip codecs. Only the transport is ours: fsspec's HTTP store
has no retry on 5xx or 429 and its own connection pool, whereas every chunk fetched here goes
through `IDRClient.get_bytes`, with the same retries, backoff, semaphore (the global concurrency
cap) and byte counters as the API routes. zarr fetches the chunks of one read concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from idrcell.client import IDRClient


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix :]
    raise TypeError(f"unsupported byte range {byte_range!r}")


class ClientStore(Store):
    """The store rooted at `root_url` (e.g. `https://.../v0.4/idr0001A/2551.zarr`); GET only.

    Whole objects are fetched and sliced locally: OME-Zarr v0.4/v0.5 stores without sharding never
    ask for byte ranges, and object stores differ in how they answer them.
    """

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = False

    def __init__(self, client: IDRClient, root_url: str) -> None:
        super().__init__(read_only=True)
        self.client = client
        self.root_url = root_url.rstrip("/")
        # Set once the array's metadata is checked (zarr_limits.check_array): every object fetched
        # afterwards passes it before zarr's codecs see it. Raising refuses the read.
        self.chunk_check: Callable[[str, bytes], None] | None = None

    def __eq__(self, value: object) -> bool:
        return isinstance(value, ClientStore) and value.root_url == self.root_url

    def __hash__(self) -> int:
        return hash(self.root_url)

    def __repr__(self) -> str:
        return f"ClientStore({self.root_url!r})"

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        data = await self.client.get_bytes(f"{self.root_url}/{key}")
        if data is None:
            return None
        if self.chunk_check is not None:
            # Off the event loop: bounding a zlib or gzip chunk means inflating it (at most its size).
            await asyncio.to_thread(self.chunk_check, key, data)
        return prototype.buffer.from_bytes(_slice(data, byte_range))

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return await self.client.get_bytes(f"{self.root_url}/{key}") is not None

    async def set(self, key: str, value: Buffer) -> None:
        raise PermissionError("ClientStore is read-only")

    async def delete(self, key: str) -> None:
        raise PermissionError("ClientStore is read-only")

    async def set_partial_values(self, key_start_values: Iterable[tuple[str, int, Any]]) -> None:
        raise PermissionError("ClientStore is read-only")

    def list(self) -> AsyncIterator[str]:
        raise NotImplementedError("ClientStore cannot list; the OME-Zarr metadata names every path")

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        raise NotImplementedError("ClientStore cannot list; the OME-Zarr metadata names every path")

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        raise NotImplementedError("ClientStore cannot list; the OME-Zarr metadata names every path")
