"""The project's own stages of the training pipeline, in webdataset's style (functions over iterators).

webdataset reads the tars, shuffles and batches; these stages add what the determinism rules of
`chadavit.data.loader` need and webdataset leaves to its user:
- `split_shards`: one part of a shard list for an explicit rank or stream. webdataset's
  `split_by_node` and `split_by_worker` read the rank from the process's environment and deal whole
  shards only; here, when there are fewer shards than parts, every shard is kept and its samples
  are dealt instead;
- `ShardPasses`: the source of one pass over a part, its shards in a fresh seeded order per pass;
- `deal_samples`: the samples a dealt shard gives its part, by their position in the tar;
- `number_steps`: a stream's fixed number of batches, numbered with their global step.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.tariterators import base_plus_ext

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


def sample_positions(url: str) -> dict[str, int]:
    """Each sample key of a shard with its position, from the tar headers alone (data is seeked over).

    Keys are cut from member names as `tarfile_to_samples` cuts them. A damaged shard gives the
    samples whose headers were readable.
    """
    positions: dict[str, int] = {}
    try:
        with tarfile.open(url, mode="r:") as tar:
            for member in tar:
                key, _ = base_plus_ext(member.name)
                if member.isreg() and key is not None:
                    positions.setdefault(key, len(positions))
    except (OSError, tarfile.TarError, EOFError):
        pass  # reading the shard reports the damage; here it only ends the list
    return positions


def _deal_samples(samples: Iterator[Sample], shards: Sequence[ShardRef]) -> Iterator[Sample]:
    """The samples of the part: all of a whole shard, the dealt ones of a shared shard.

    A shared shard is read whole (webdataset streams tars and cannot seek past a member), so a part
    pays for reading the samples of the other parts too; positions come from the headers, read once.
    """
    dealt = {shard.url: shard for shard in shards if shard.stride > 1}
    if not dealt:
        yield from samples
        return
    positions = {url: sample_positions(url) for url in dealt}
    for sample in samples:
        shard = dealt.get(sample["__url__"])
        if shard is None:
            yield sample
            continue
        position = positions[shard.url].get(sample["__key__"])
        if position is not None and shard.keeps(position):
            yield sample


deal_samples = wds.pipelinefilter(_deal_samples)


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
