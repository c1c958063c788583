"""The training input pipeline, a webdataset pipeline per loader stream.

shard list -> split by node (rank) -> split by worker (stream) -> tar members read by seeking and
grouped into samples by webdataset's `group_by_keys` (damaged shards counted and skipped) -> seeded
`wds.shuffle` -> decode -> channel-count buckets -> batches
-> numbered steps -> views. The stages webdataset does not have are in `chadavit.data.stages`.

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
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import torch
import webdataset as wds
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from chadavit.batch import ChannelBatch
from chadavit.channels import ChannelNormaliser
from chadavit.data.augment import AugmentConfig, multi_crop
from chadavit.data.buckets import batches_by_channel_count
from chadavit.data.shards import (
    IMAGE_SIZE,
    DataError,
    DecodedSample,
    RawSample,
    SampleError,
    count_samples,
    decode_sample,
    list_shards,
)
from chadavit.data.stages import (
    Sample,
    ShardPasses,
    ShardRef,
    number_steps,
    read_samples,
    split_shards,
)
from chadavit.seeding import augment_generator, derive_seed, seeded_generator

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
    # N: train on the images with at least N channels, keeping their first N (the paper's standard
    # 3-channel ViT; the authors' IDRCell100K_3Channels, src/data/custom_datasets.py lines 293-296).
    first_channels: int | None = None
    # A YAML or JSON table of channel names -> raw labels (chadavit.channels) over the built-in one;
    # with a name-embedding model its names are the vocabulary. `channel_min_count`: otherwise the
    # vocabulary is the names seen at least this many times in the dataset.
    channel_vocab: str | None = None
    channel_min_count: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.augment_on not in ("auto", "loader", "device"):
            raise ValueError(f"data.augment_on must be auto, loader or device, got {self.augment_on!r}")
        if self.channel_min_count < 1:
            raise ValueError(f"data.channel_min_count must be >= 1, got {self.channel_min_count}")
        if self.max_pending_batches < 1:
            raise ValueError(f"data.max_pending_batches must be >= 1, got {self.max_pending_batches}")
        for name in ("samples_per_rank", "steps_per_epoch", "first_channels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"data.{name} must be >= 1 when set, got {value}")


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

    def refs(self) -> list[ShardRef]:
        """The shards in sorted order, whole."""
        pairs = zip(self.paths, self.sizes, strict=True)
        # Absolute paths: webdataset would read `name:rest/...` as a URL with a scheme.
        return [ShardRef(os.path.abspath(path), index, size) for index, (path, size) in enumerate(pairs)]

    def epoch_order(self, seed: int, epoch: int) -> list[ShardRef]:
        """The shard list of one epoch: the same seeded order on every rank."""
        refs = self.refs()
        order = torch.randperm(len(refs), generator=seeded_generator("shards", seed, epoch)).tolist()
        return [refs[i] for i in order]


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
    channel_names: tuple[tuple[str, ...], ...] | None = None  # per image, when the model reads names

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
            self.channel_names,
        )
        return MultiCropBatch(
            views.channel_counts,
            views.global_views,
            views.local_views,
            self.keys,
            self.step,
            self.skipped,
            channel_names=views.channel_names,
        )

    def __len__(self) -> int:
        return self.channel_counts.numel()

    def global_batches(self) -> list[ChannelBatch]:
        return [ChannelBatch(view, self.channel_counts, self.channel_names) for view in self.global_views]

    def local_batches(self) -> list[ChannelBatch]:
        return [ChannelBatch(view, self.channel_counts, self.channel_names) for view in self.local_views]

    def pin_memory(self) -> MultiCropBatch:
        return MultiCropBatch(
            self.channel_counts,
            tuple(v.pin_memory() for v in self.global_views),
            tuple(v.pin_memory() for v in self.local_views),
            self.keys,
            self.step,
            self.skipped,
            None if self.images is None else self.images.pin_memory(),
            self.channel_names,
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
    # Set for a model that embeds channels by name: batches carry each channel's canonical name.
    channel_normaliser: ChannelNormaliser | None = None


def plan_epochs(shard_set: ShardSet, data: DataConfig, rank: int, world_size: int) -> tuple[int, int]:
    """(steps per epoch, loader streams) for this rank; raises DataError when a rank would have nothing."""
    if shard_set.total < world_size:
        raise DataError(f"the dataset has {shard_set.total} samples, fewer than the {world_size} ranks")
    rank_part = list(split_shards(shard_set.refs(), world_size, rank))
    if _count(rank_part) == 0:
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
    while streams > 1 and min(_count(split_shards(rank_part, streams, v)) for v in range(streams)) == 0:
        streams -= 1
    return steps, streams


def _count(shards: Iterable[ShardRef]) -> int:
    return sum(shard.count for shard in shards)


def stream_shards(plan: EpochPlan, stream: int) -> list[ShardRef]:
    """shard list -> split by node -> split by worker: the shards loader stream `stream` reads."""
    epoch_shards = plan.shard_set.epoch_order(plan.seed, plan.epoch)
    rank_part = list(split_shards(epoch_shards, plan.world_size, plan.rank))
    part = list(split_shards(rank_part, plan.n_streams, stream))
    # A tiny rank part dealt to more streams than it has samples (possible in some epochs): this
    # stream reads the whole rank part instead; ranks stay disjoint.
    return part if _count(part) else rank_part


class SkipLog:
    """Unreadable data of one stream: counted, warned about once, and remembered.

    A sample that does not decode is remembered by key so that later passes drop it unread and
    uncounted; `take()` hands the count met since the last call to the batch being made.
    """

    def __init__(self) -> None:
        self.count = 0
        self.broken: set[str] = set()

    def skip(self, where: str, reason: str) -> None:
        self.count += 1
        logger.warning("skipping unreadable data %s: %s", where, reason)

    def is_new(self, sample: Sample) -> bool:
        return sample["__key__"] not in self.broken

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


@lru_cache(maxsize=4096)
def _shard_name(url: str) -> str:
    return Path(url).name


def _decode(plan: EpochPlan, skips: SkipLog, sample: Sample) -> DecodedSample | None:
    """The sample decoded, or None (webdataset's `map` drops it) when it does not follow idrcell-v1."""
    members = {suffix: data for suffix, data in sample.items() if not suffix.startswith("__")}
    # Position -1: webdataset does not number samples, and decoding does not need it.
    raw = RawSample(sample["__key__"], _shard_name(sample["__url__"]), -1, members)
    keep = plan.data.first_channels
    try:
        # With first_channels the model sees only the first N: more channels are not an error.
        decoded = decode_sample(raw, plan.data.image_size, plan.max_channels if keep is None else None)
    except SampleError as error:
        skips.broken.add(raw.key)
        skips.skip(f"{raw.shard}:{raw.key}", str(error))
        return None
    if keep is None:
        return decoded
    if decoded.n_channels < keep:
        return None  # outside the training subset: dropped, not counted as unreadable
    return DecodedSample(decoded.key, decoded.pixels[:keep], decoded.metadata)


def _to_batch(plan: EpochPlan, numbered: tuple[int, list[DecodedSample], int]) -> MultiCropBatch:
    """One step's `MultiCropBatch` in the plan's output form (views, decoded images or keys only)."""
    step, samples, skipped = numbered
    keys = tuple(sample.key for sample in samples)
    counts = torch.tensor([sample.n_channels for sample in samples], dtype=torch.long)
    names = None
    if plan.channel_normaliser is not None:
        names = tuple(channel_names_of(sample, plan.channel_normaliser) for sample in samples)
    if plan.output == "keys":
        return MultiCropBatch(counts, (), (), keys, step, skipped, channel_names=names)
    if plan.output == "images":
        images = torch.cat([sample.pixels for sample in samples])
        return MultiCropBatch(counts, (), (), keys, step, skipped, images, names)
    generator = augment_generator(plan.seed, plan.epoch, step, plan.rank)
    views = multi_crop([sample.pixels for sample in samples], generator, plan.augment, names)
    return MultiCropBatch(
        views.channel_counts,
        views.global_views,
        views.local_views,
        keys,
        step,
        skipped,
        channel_names=views.channel_names,
    )


def channel_names_of(sample: DecodedSample, normaliser: ChannelNormaliser) -> tuple[str, ...]:
    """The canonical name of each of the sample's channels, from KEY.json's `channels[i].label`."""
    channels = sample.metadata.get("channels")
    entries = channels if isinstance(channels, list) else []
    labels = [entry.get("label") if isinstance(entry, dict) else None for entry in entries]
    labels += [None] * (sample.n_channels - len(labels))  # a missing label is `unknown`
    return normaliser.names_of(labels[: sample.n_channels])


def stream_pipeline(plan: EpochPlan, stream: int) -> wds.DataPipeline:
    """The `MultiCropBatch`es of loader stream `stream`: steps stream, stream + n_streams, ..."""
    data = plan.data
    shards = stream_shards(plan, stream)
    skips = SkipLog()
    ids = (plan.seed, plan.epoch, plan.rank, stream)
    passes = wds.DataPipeline(
        ShardPasses(shards, "pass", *ids),
        read_samples(shards, skips.skip),
        wds.select(skips.is_new),
    ).repeat()  # pass after pass until the steps are done; stops after a pass that read nothing
    # A buffer larger than the part would only hold repeats of it before the first sample leaves.
    # It holds undecoded samples (compressed PNGs: a few times less memory than pixels).
    buffer = min(data.shuffle_buffer, _count(shards))
    if data.group_by_channels:
        max_pending = data.max_pending_batches * data.batch_size
        batches = wds.pipelinefilter(batches_by_channel_count)(data.batch_size, max_pending)
    else:
        batches = wds.batched(data.batch_size, collation_fn=None, partial=False)
    dry = (
        f"rank {plan.rank} loader stream {stream} found no readable sample in its {len(shards)} "
        "shards; check the shards under the data directory"
    )
    return wds.DataPipeline(
        passes,
        wds.shuffle(buffer, initial=buffer, seed=derive_seed("buffer", *ids)),
        wds.map(partial(_decode, plan, skips)),
        batches,
        number_steps(range(stream, plan.steps, plan.n_streams), plan.start_step, skips.take, dry),
        wds.map(partial(_to_batch, plan)),
    )


class EpochStream(IterableDataset):
    """Yields this worker's `MultiCropBatch`es of one epoch, in global step order across workers."""

    def __init__(self, plan: EpochPlan) -> None:
        super().__init__()
        self.plan = plan

    def __iter__(self) -> Iterator[MultiCropBatch]:
        plan = self.plan
        info = get_worker_info()
        worker = 0 if info is None else info.id
        if (info.num_workers if info is not None else 1) != plan.n_streams:
            raise RuntimeError("EpochStream must run with as many DataLoader workers as plan.n_streams")
        return iter(stream_pipeline(plan, (worker + plan.start_step) % plan.n_streams))


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
