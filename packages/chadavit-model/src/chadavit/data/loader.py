"""The training input pipeline: shards -> split by rank and worker -> shuffle -> decode -> bucket -> views.

Determinism is the design constraint: what batch `s` of epoch `e` on rank `r` holds is a pure
function of (seed, e, r, s) and the config, whatever happened before, so a resumed run sees exactly
the batches an uninterrupted one would. To that end:
- shards are shuffled per epoch and dealt to ranks, then to loader workers ("streams"); when there
  are fewer shards than parts, samples are dealt instead by `(position + shard index) % parts`,
  a rule that does not depend on reading order, so parts stay disjoint;
- each stream repeats its part (reshuffled each pass) until its share of the epoch's fixed number
  of steps is done, so every rank runs the same number of steps even when shards divide unevenly;
- stream `v` produces steps v, v + n_streams, ...; DataLoader visits its workers round-robin, and
  on a resume at step k worker `w` takes stream (w + k) % n_streams so the order stays k, k+1, ...;
- augmentation draws from a generator seeded by (seed, epoch, step, rank); skipped steps (before
  the resume point) are read and bucketed but not augmented.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from chadavit.batch import ChannelBatch
from chadavit.data.augment import AugmentConfig, multi_crop
from chadavit.data.buckets import batches_by_channel_count, plain_batches
from chadavit.data.shards import (
    IMAGE_SIZE,
    DataError,
    DecodedSample,
    RawSample,
    SampleError,
    count_samples,
    decode_sample,
    iter_raw_samples,
    list_shards,
)
from chadavit.seeding import augment_generator, seeded_generator

logger = logging.getLogger(__name__)
_WORKER_START = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


@dataclass(frozen=True)
class DataConfig:
    """Loader parameters. The paper trains with 256 images per GPU."""

    batch_size: int = 256  # per rank
    num_workers: int = 8  # loader processes per rank; 0 reads in the training process
    shuffle_buffer: int = 1000  # samples held for the sample-level shuffle
    samples_per_rank: int | None = None  # per epoch; default: dataset size // world size
    steps_per_epoch: int | None = None  # overrides samples_per_rank when set
    group_by_channels: bool = True  # batches of one channel count (padding-free model runs faster)
    # Where the multi-crop views are made: "loader" (CPU workers), "device" (the training GPU, so
    # workers only read and decode), or "auto": device when training on CUDA, else loader.
    augment_on: str = "auto"
    max_pending_batches: int = 4  # buffered images before buckets are merged, in batches
    image_size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.augment_on not in ("auto", "loader", "device"):
            raise ValueError(f"data.augment_on must be auto, loader or device, got {self.augment_on!r}")
        if self.max_pending_batches < 1:
            raise ValueError(f"data.max_pending_batches must be >= 1, got {self.max_pending_batches}")
        for name in ("samples_per_rank", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"data.{name} must be >= 1 when set, got {value}")


@dataclass(frozen=True)
class StreamPart:
    """Which samples a rank or stream reads: sample `j` of shard `k` (index in the sorted list) is
    in the part when `k` is in `shards` and `(j + k) % stride == offset`."""

    shards: tuple[int, ...]
    stride: int = 1
    offset: int = 0

    def keeps(self, shard_index: int, position: int) -> bool:
        return (position + shard_index) % self.stride == self.offset

    def split(self, parts: int, index: int) -> StreamPart:
        """Part `index` of `parts` disjoint parts: by shard while there are enough, else by sample."""
        if self.stride == 1 and len(self.shards) >= parts:
            return StreamPart(self.shards[index::parts])
        return StreamPart(self.shards, self.stride * parts, self.offset + index * self.stride)

    def count(self, shard_sizes: tuple[int, ...]) -> int:
        return sum(
            sum(1 for j in range(shard_sizes[k]) if self.keeps(k, j)) if self.stride > 1 else shard_sizes[k]
            for k in self.shards
        )


@dataclass(frozen=True)
class ShardSet:
    """The shards of a data dir with their sample counts (from tar headers)."""

    paths: tuple[Path, ...]
    sizes: tuple[int, ...]

    @classmethod
    def scan(cls, data_dir: str | Path) -> ShardSet:
        paths = tuple(list_shards(data_dir))
        sizes = tuple(count_samples(p) for p in paths)
        if sum(sizes) == 0:
            raise DataError(f"data directory {data_dir} has {len(paths)} shards but no samples in them")
        for path, size in zip(paths, sizes, strict=True):
            if size == 0:
                logger.warning("shard %s holds no readable sample; it is left out", path)
        # Only shards with samples take part, so a part made of whole shards is never empty.
        kept = [(path, size) for path, size in zip(paths, sizes, strict=True) if size > 0]
        return cls(tuple(p for p, _ in kept), tuple(n for _, n in kept))

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def rank_part(self, seed: int, epoch: int, rank: int, world_size: int) -> StreamPart:
        order = torch.randperm(len(self.paths), generator=seeded_generator("shards", seed, epoch)).tolist()
        return StreamPart(tuple(order)).split(world_size, rank)


@dataclass(frozen=True)
class MultiCropBatch:
    """One training step's input: views share `channel_counts`; `skipped` counts unreadable samples.

    When views are made on the training device, the loader sends the decoded `images` instead
    ((sum C, H, W) uint8) and `with_views` makes the views there.
    """

    channel_counts: Tensor
    global_views: tuple[Tensor, ...]
    local_views: tuple[Tensor, ...]
    keys: tuple[str, ...]
    step: int
    skipped: int = 0
    images: Tensor | None = None

    def with_views(
        self, augment: AugmentConfig, seed: int, epoch: int, rank: int, device: torch.device
    ) -> MultiCropBatch:
        """The views of this batch made on `device`, drawn exactly as the loader would draw them."""
        if self.global_views or self.images is None:
            return self
        images = self.images.to(device, non_blocking=True)
        views = multi_crop(
            list(torch.split(images, self.channel_counts.tolist())),
            augment_generator(seed, epoch, self.step, rank),
            augment,
        )
        return MultiCropBatch(
            views.channel_counts, views.global_views, views.local_views, self.keys, self.step, self.skipped
        )

    def __len__(self) -> int:
        return self.channel_counts.numel()

    def global_batches(self) -> list[ChannelBatch]:
        return [ChannelBatch(view, self.channel_counts) for view in self.global_views]

    def local_batches(self) -> list[ChannelBatch]:
        return [ChannelBatch(view, self.channel_counts) for view in self.local_views]

    def pin_memory(self) -> MultiCropBatch:
        return MultiCropBatch(
            self.channel_counts,
            tuple(v.pin_memory() for v in self.global_views),
            tuple(v.pin_memory() for v in self.local_views),
            self.keys,
            self.step,
            self.skipped,
            None if self.images is None else self.images.pin_memory(),
        )


@dataclass(frozen=True)
class EpochPlan:
    """Everything a loader needs for one epoch of one rank; picklable for worker processes."""

    shard_set: ShardSet
    data: DataConfig
    augment: AugmentConfig
    seed: int
    epoch: int
    rank: int
    world_size: int
    steps: int
    n_streams: int
    max_channels: int | None = None
    start_step: int = 0
    output: str = "views"  # "views", "images" (views are made on the device) or "keys" (tests, bench)


def plan_epochs(shard_set: ShardSet, data: DataConfig, rank: int, world_size: int) -> tuple[int, int]:
    """(steps per epoch, loader streams) for this rank; raises DataError when a rank would have nothing."""
    if shard_set.total < world_size:
        raise DataError(f"the dataset has {shard_set.total} samples, fewer than the {world_size} ranks")
    rank_part = StreamPart(tuple(range(len(shard_set.paths)))).split(world_size, rank)
    if rank_part.count(shard_set.sizes) == 0:
        raise DataError(
            f"rank {rank} of {world_size} would get no samples with {shard_set.total} samples "
            f"in {len(shard_set.paths)} shards; use fewer ranks"
        )
    if data.steps_per_epoch is not None:
        steps = data.steps_per_epoch
    else:
        per_rank = data.samples_per_rank or shard_set.total // world_size
        steps = per_rank // data.batch_size
        if steps == 0:
            raise DataError(
                f"batch size {data.batch_size} is larger than the {per_rank} samples per rank per epoch "
                f"({shard_set.total} samples over {world_size} ranks); lower --batch-size"
            )
    # Fewer streams than workers asked for when the dataset is too small to give each one a sample.
    streams = max(1, data.num_workers)
    while (
        streams > 1 and min(rank_part.split(streams, v).count(shard_set.sizes) for v in range(streams)) == 0
    ):
        streams -= 1
    return steps, streams


class EpochStream(IterableDataset):
    """Yields this worker's `MultiCropBatch`es of one epoch, in global step order across workers."""

    def __init__(self, plan: EpochPlan) -> None:
        super().__init__()
        self.plan = plan
        self._skipped = 0

    def _on_skip(self, where: str, reason: str) -> None:
        self._skipped += 1
        logger.warning("skipping unreadable data %s: %s", where, reason)

    def _decode(self, raw: RawSample, broken: set[str]) -> DecodedSample | None:
        try:
            return decode_sample(raw, self.plan.data.image_size, self.plan.max_channels)
        except SampleError as error:
            broken.add(raw.key)  # reported once, then skipped unread on later passes
            self._on_skip(f"{raw.shard}:{raw.key}", str(error))
            return None

    def _samples(self, part: StreamPart, stream: int) -> Iterator[DecodedSample]:
        """The part's decodable samples, repeated with a fresh shard order each pass, shuffled.

        The shuffle buffer holds undecoded samples (compressed PNGs: a few times less memory);
        a sample is decoded as it leaves.
        """
        plan = self.plan
        buffer: list[RawSample] = []
        broken: set[str] = set()
        # A buffer larger than the part would only hold repeats of it before the first sample leaves.
        buffer_size = min(plan.data.shuffle_buffer, part.count(plan.shard_set.sizes))
        shuffle = seeded_generator("buffer", plan.seed, plan.epoch, plan.rank, stream)
        pass_index = 0
        while True:
            order = torch.randperm(
                len(part.shards),
                generator=seeded_generator("pass", plan.seed, plan.epoch, plan.rank, stream, pass_index),
            ).tolist()
            readable = 0
            for shard_index in (part.shards[i] for i in order):
                path = plan.shard_set.paths[shard_index]
                for raw in iter_raw_samples(path, lambda j, k=shard_index: part.keeps(k, j), self._on_skip):
                    if raw.key in broken:
                        continue
                    readable += 1
                    if len(buffer) < buffer_size:
                        buffer.append(raw)
                        continue
                    leaving = raw
                    if buffer_size:
                        slot = int(torch.randint(0, len(buffer), (1,), generator=shuffle))
                        buffer[slot], leaving = raw, buffer[slot]
                    sample = self._decode(leaving, broken)
                    if sample is not None:
                        yield sample
            if readable == 0:
                raise DataError(
                    f"rank {plan.rank} loader stream {stream} found no readable sample in its "
                    f"{len(part.shards)} shards; check the shards under the data directory"
                )
            pass_index += 1

    def __iter__(self) -> Iterator[MultiCropBatch]:
        plan = self.plan
        info = get_worker_info()
        worker = 0 if info is None else info.id
        if (info.num_workers if info is not None else 1) != plan.n_streams:
            raise RuntimeError("EpochStream must run with as many DataLoader workers as plan.n_streams")
        stream = (worker + plan.start_step) % plan.n_streams
        rank_part = plan.shard_set.rank_part(plan.seed, plan.epoch, plan.rank, plan.world_size)
        part = rank_part.split(plan.n_streams, stream)
        if part.count(plan.shard_set.sizes) == 0:
            # A tiny rank part dealt to more workers than it has samples (possible in some epochs):
            # this worker reads the whole rank part instead; ranks stay disjoint.
            part = rank_part
        samples = self._samples(part, stream)
        if plan.data.group_by_channels:
            max_pending = plan.data.max_pending_batches * plan.data.batch_size
            batches = batches_by_channel_count(samples, plan.data.batch_size, max_pending)
        else:
            batches = plain_batches(samples, plan.data.batch_size)
        for step in range(stream, plan.steps, plan.n_streams):
            batch = next(batches)
            skipped, self._skipped = self._skipped, 0
            if step < plan.start_step:
                continue
            keys = tuple(sample.key for sample in batch)
            counts = torch.tensor([sample.n_channels for sample in batch], dtype=torch.long)
            if plan.output == "keys":
                yield MultiCropBatch(counts, (), (), keys, step, skipped)
                continue
            if plan.output == "images":
                images = torch.cat([sample.pixels for sample in batch])
                yield MultiCropBatch(counts, (), (), keys, step, skipped, images)
                continue
            generator = augment_generator(plan.seed, plan.epoch, step, plan.rank)
            views = multi_crop([sample.pixels for sample in batch], generator, plan.augment)
            yield MultiCropBatch(
                views.channel_counts, views.global_views, views.local_views, keys, step, skipped
            )


def make_epoch_loader(plan: EpochPlan, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over one epoch of one rank, starting at `plan.start_step`."""
    workers = plan.n_streams if plan.data.num_workers > 0 else 0
    if workers == 0 and plan.n_streams != 1:
        raise ValueError("an in-process loader (num_workers 0) has exactly one stream")
    return DataLoader(
        EpochStream(plan),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
        # Ranks started by `--nproc` are spawned, so their default would be to spawn workers too,
        # which re-imports torch in each (seconds per epoch). Workers touch no GPU or process group.
        multiprocessing_context=_WORKER_START if workers else None,
        # Kept in order: the round-robin over workers is what makes step order deterministic.
        in_order=True,
    )
