"""The project's own stages of the training pipeline, in webdataset's style (functions over iterators).

webdataset groups tar members into samples, shuffles and batches; these stages add what the
determinism rules of `chadavit.data.loader` need and webdataset leaves to its user, and a faster
tar reader:
- `split_shards`: one part of a shard list for an explicit rank or stream. webdataset's
  `split_by_node` and `split_by_worker` read the rank from the process's environment and deal whole
  shards only; here, when there are fewer shards than parts, every shard is kept and its samples
  are dealt instead;
- `ShardPasses`: the source of one pass over a part, its shards in a fresh seeded order per pass;
- `read_samples`: the samples of the part's shards, the tar read by seeking (a dealt shard's other
  samples are not read);
- `number_steps`: a stream's fixed number of batches, numbered with their global step.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.tariterators import base_plus_ext, group_by_keys

from chadavit.data.shards import DataError
from chadavit.seeding import seeded_generator

Sample = dict[str, Any]
"""A webdataset sample: `__key__`, `__url__` and the bytes of each member by suffix (`json`, `c00.png`)."""


@dataclass(frozen=True)
class ShardRef:
    """A shard as a part holds it: sample `j` of the shard is in the part when
    `(j + index) % stride == offset` (every sample when `stride` is 1)."""

    url: str
    index: int  # in the sorted shard list: the deal must not depend on an epoch's shard order
    size: int  # samples, from the tar headers
    stride: int = 1
    offset: int = 0

    def keeps(self, position: int) -> bool:
        return (position + self.index) % self.stride == self.offset

    @property
    def count(self) -> int:
        """Samples of the shard in the part."""
        return len(range((self.offset - self.index) % self.stride, self.size, self.stride))


def split_shards(shards: Iterable[ShardRef], parts: int, index: int) -> Iterator[ShardRef]:
    """Part `index` of `parts` disjoint parts: every `parts`-th shard while there are at least as many
    whole shards as parts, else every shard with its samples dealt by `(position + shard index) % parts`,
    a rule that does not depend on reading order."""
    shards = list(shards)
    if len(shards) >= parts and all(shard.stride == 1 for shard in shards):
        yield from shards[index::parts]
        return
    for shard in shards:
        yield replace(shard, stride=shard.stride * parts, offset=shard.offset + index * shard.stride)


class ShardPasses(IterableDataset):
    """`{"url": ...}` for each shard of a part, in a fresh order each time it is iterated (one pass).

    The order of pass `p` is drawn from `seed_parts + (p,)`, as webdataset's `detshuffle` reshuffles
    per epoch; a `wds.DataPipeline(...).repeat()` starting here reads the part pass after pass.
    """

    def __init__(self, shards: Sequence[ShardRef], *seed_parts: int | str) -> None:
        super().__init__()
        self.urls = [shard.url for shard in shards]
        self.seed_parts = seed_parts
        self.passes = 0

    def __iter__(self) -> Iterator[dict[str, str]]:
        generator = seeded_generator(*self.seed_parts, self.passes)
        self.passes += 1
        for index in torch.randperm(len(self.urls), generator=generator).tolist():
            yield {"url": self.urls[index]}


def _members(shard: ShardRef) -> Iterator[dict[str, Any]]:
    """The shard's members of the part as webdataset's `tar_file_expander` yields them
    (`fname`, `data`, `__url__`), read by seeking; raises `tarfile.TarError` or `OSError` where the
    shard is damaged, after the members before the damage.

    A sample's position is the order in which its key first appears among the regular members, as
    `ShardRef.size` counts samples. The headers are read in order; a kept member's data is one seek
    and one read; the data of another part's members is not read at all.
    """
    with open(shard.url, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as tar:
        file_size = os.fstat(stream.fileno()).st_size
        positions: dict[str, int] = {}
        for member in tar:
            key, _ = base_plus_ext(member.name)
            if not member.isreg() or key is None:
                continue
            if not shard.keeps(positions.setdefault(key, len(positions))):
                continue
            # Checked before reading: a header may claim any size, and a read allocates what it asks for.
            if member.offset_data + member.size > file_size:
                present = max(file_size - member.offset_data, 0)
                raise tarfile.ReadError(f"member {member.name} is cut after {present} of {member.size} bytes")
            stream.seek(member.offset_data)
            yield {"fname": member.name, "data": stream.read(member.size), "__url__": shard.url}
        # `tarfile` ends its member list quietly at a cut or unreadable header; an intact tar ends with
        # a block of zeros there.
        stream.seek(tar.offset)
        end = stream.read(tarfile.BLOCKSIZE)
        if len(end) < tarfile.BLOCKSIZE or any(end):
            raise tarfile.ReadError(f"no readable header at byte {tar.offset} and no end-of-archive block")


def _read_samples(
    sources: Iterator[dict[str, str]], shards: Sequence[ShardRef], skip: Callable[[str, str], None]
) -> Iterator[Sample]:
    """webdataset samples (`__key__`, `__url__`, bytes per suffix) of the part's shards, in source order.

    webdataset's `tarfile_to_samples` with the tar read by seeking instead of as a stream: its
    `tarfile` stream mode copies every member through a 10 KiB buffer (several percent of a loader
    worker's time, docs/benchmarks.md) and cannot skip a member unread, so every part sharing a
    shard would read all of it. Members are grouped into samples by webdataset's `group_by_keys`.
    A damaged shard gives the samples before the damage, and `skip(shard name, reason)` once.
    """
    parts = {shard.url: shard for shard in shards}
    reading = ""  # the shard whose members `group_by_keys` is grouping

    def members() -> Iterator[dict[str, Any]]:
        nonlocal reading
        for source in sources:
            shard = parts[source["url"]]
            reading = Path(shard.url).name
            try:
                yield from _members(shard)
            except (OSError, tarfile.TarError, EOFError) as error:
                skip(reading, f"shard is truncated or corrupt: {type(error).__name__}: {error}")
            yield {}  # `group_by_keys`' end of a shard: samples of two shards are never merged

    def member_error(error: Exception) -> bool:
        # A member name met twice in one sample: that member is dropped, the sample kept.
        skip(reading, str(error.args[0]) if error.args else type(error).__name__)
        return True

    return group_by_keys(members(), handler=member_error)


read_samples = wds.pipelinefilter(_read_samples)


def _number_steps(
    batches: Iterator[list], steps: range, start: int, take_skipped: Callable[[], int], dry: str
) -> Iterator[tuple[int, list, int]]:
    """`(step, batch, skipped)` for each step of `steps` from `start` on, one batch per step.

    Batches of the steps before `start` are read (so the stream is where an uninterrupted run would
    be) but not passed on. `skipped` is the unreadable data met while reading the step's batch.
    A stream that ends before its steps are done (a pass found nothing readable) raises `dry`.
    """
    for step in steps:
        batch = next(batches, None)
        if batch is None:
            raise DataError(dry)
        skipped = take_skipped()
        if step >= start:
            yield step, batch, skipped


number_steps = wds.pipelinefilter(_number_steps)
