"""Group a stream of images into batches of one channel count, so the model runs padding-free.

Each channel count has its own bucket; a bucket that reaches the batch size becomes a batch. Rare
counts would otherwise wait forever and hold memory, so when `max_pending` images are waiting the
fullest buckets are merged into one mixed batch (sorted by channel count, which the padding-free
model handles as a few groups).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar


class HasChannels(Protocol):
    @property
    def n_channels(self) -> int: ...


SampleT = TypeVar("SampleT", bound=HasChannels)


def batches_by_channel_count(
    samples: Iterable[SampleT], batch_size: int, max_pending: int | None = None
) -> Iterator[list[SampleT]]:
    """Yield lists of `batch_size` samples, of one channel count whenever the buffer allows it.

    `max_pending` (default 4 x batch_size) bounds the images held; it must be >= batch_size.
    Leftovers smaller than a batch at the end of the stream are dropped (every batch is full).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    limit = 4 * batch_size if max_pending is None else max_pending
    if limit < batch_size:
        raise ValueError(f"max_pending ({limit}) must be at least batch_size ({batch_size})")
    buckets: dict[int, list[SampleT]] = {}
    pending = 0
    for sample in samples:
        bucket = buckets.setdefault(sample.n_channels, [])
        bucket.append(sample)
        pending += 1
        if len(bucket) == batch_size:
            yield bucket
            buckets[sample.n_channels] = []
            pending -= batch_size
        elif pending >= limit:
            # Fullest buckets first (ties: fewer channels first): the batch mixes as few counts as possible.
            mixed: list[SampleT] = []
            for channels in sorted(buckets, key=lambda c: (-len(buckets[c]), c)):
                take = buckets[channels][: batch_size - len(mixed)]
                buckets[channels] = buckets[channels][len(take) :]
                mixed.extend(take)
                if len(mixed) == batch_size:
                    break
            pending -= batch_size
            yield sorted(mixed, key=lambda s: s.n_channels)
