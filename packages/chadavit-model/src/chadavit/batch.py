"""A batch of images whose channel counts differ, stored without padding.

Every channel of every image is one (H, W) plane of a single `pixels` tensor; `channel_counts`
says how many consecutive planes belong to each image. This is the one input type of every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate


@dataclass(frozen=True, eq=False)  # eq on tensors would be ambiguous; compare fields explicitly
class ChannelBatch:
    """`pixels`: (sum of C_i, H, W) float; `channel_counts`: (B,) long, C_i >= 1 each.

    `channel_names`, when known: per image one name per channel, in channel order (what a model
    with `channel_embedding="name"` reads; chadavit.channels turns raw labels into such names)."""

    pixels: Tensor
    channel_counts: Tensor
    channel_names: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, Tensor) or self.pixels.dim() != 3:
            shape = tuple(self.pixels.shape) if isinstance(self.pixels, Tensor) else type(self.pixels)
            raise ValueError(f"pixels must be a (sum of channels, H, W) tensor, got {shape}")
        if not self.pixels.is_floating_point():
            raise ValueError(f"pixels must be a float tensor, got {self.pixels.dtype}")
        counts = self.channel_counts
        if not isinstance(counts, Tensor) or counts.dim() != 1 or counts.dtype != torch.long:
            raise ValueError("channel_counts must be a 1-D long tensor with one entry per image")
        if counts.numel() == 0:
            raise ValueError("a ChannelBatch needs at least one image")
        cpu_counts = counts.tolist()
        for index, count in enumerate(cpu_counts):
            if count < 1:
                raise ValueError(f"image {index} has {count} channels; every image needs at least one")
        total = sum(cpu_counts)
        if total != self.pixels.shape[0]:
            raise ValueError(
                f"channel_counts add up to {total} channels but pixels holds {self.pixels.shape[0]}"
            )
        if self.channel_names is not None:
            object.__setattr__(self, "channel_names", checked_names(self.channel_names, cpu_counts))

    @classmethod
    def from_images(
        cls, images: Sequence[Tensor], channel_names: Sequence[Sequence[str]] | None = None
    ) -> ChannelBatch:
        """Concatenate (C_i, H, W) float tensors that share H and W (with their channels' names)."""
        if len(images) == 0:
            raise ValueError("a ChannelBatch needs at least one image")
        first_size: tuple[int, int] | None = None
        for index, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"image {index} must be a (C, H, W) tensor, got {shape}")
            if image.shape[0] == 0:
                raise ValueError(f"image {index} has 0 channels; every image needs at least one")
            if not image.is_floating_point():
                raise ValueError(f"image {index} has {image.dtype} pixels; convert it to a float tensor")
            size = (image.shape[1], image.shape[2])
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise ValueError(
                    f"image {index} is {size[0]}x{size[1]} but image 0 is {first_size[0]}x{first_size[1]}; "
                    "images of one batch must share H and W"
                )
        counts = torch.tensor([image.shape[0] for image in images], dtype=torch.long)
        # `checked_names` (in __post_init__) checks and converts the names to tuples.
        names: Any = channel_names
        return cls(pixels=torch.cat(list(images), dim=0), channel_counts=counts, channel_names=names)

    @classmethod
    def concat(cls, batches: Sequence[ChannelBatch]) -> ChannelBatch:
        """The images of `batches` (same H and W) as one batch; names kept when every batch has them."""
        names = None
        if all(batch.channel_names is not None for batch in batches):
            names = tuple(n for batch in batches for n in batch.channel_names or ())
        return cls(
            torch.cat([batch.pixels for batch in batches]),
            torch.cat([batch.channel_counts for batch in batches]),
            names,
        )

    def with_channel_names(self, channel_names: Sequence[Sequence[str]] | None) -> ChannelBatch:
        """The same pixels with these per-image channel names (checked against the counts)."""
        names: Any = channel_names  # checked and converted in __post_init__
        return ChannelBatch(self.pixels, self.channel_counts, names)

    def __len__(self) -> int:
        return self.channel_counts.numel()

    def __repr__(self) -> str:
        # Short: the pixel tensor's own repr would print every value.
        counts = self.counts_list()
        shown = ", ".join(map(str, counts[:8])) + (", ..." if len(counts) > 8 else "")
        height, width = self.image_size
        return (
            f"ChannelBatch({len(counts)} images, {height}x{width}, channels [{shown}], "
            f"{self.pixels.dtype}, {self.pixels.device}{', named' if self.channel_names else ''})"
        )

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.pixels.shape[1], self.pixels.shape[2])

    def counts_list(self) -> list[int]:
        """Channel counts as Python ints (one host sync, reused by the models)."""
        return self.channel_counts.tolist()

    def images(self) -> list[Tensor]:
        """Views (C_i, H, W) into `pixels`, in batch order."""
        return list(torch.split(self.pixels, self.counts_list(), dim=0))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ChannelBatch:
        return ChannelBatch(
            pixels=self.pixels.to(device, non_blocking=non_blocking),
            # Counts stay on the CPU: models read them as Python ints to plan the packing.
            channel_counts=self.channel_counts,
            channel_names=self.channel_names,
        )

    def pin_memory(self) -> ChannelBatch:
        """Lets `DataLoader(pin_memory=True)` pin ChannelBatch outputs."""
        return ChannelBatch(self.pixels.pin_memory(), self.channel_counts, self.channel_names)


def checked_names(channel_names: object, counts: list[int]) -> tuple[tuple[str, ...], ...]:
    """Per-image channel names as tuples, or one ValueError naming the first image that disagrees."""
    if isinstance(channel_names, str) or not isinstance(channel_names, Sequence):
        raise ValueError(f"channel_names must be one list of names per image, got {channel_names!r}")
    if len(channel_names) != len(counts):
        raise ValueError(f"channel_names has {len(channel_names)} entries for {len(counts)} images")
    result = []
    for index, (names, count) in enumerate(zip(channel_names, counts, strict=True)):
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ValueError(f"channel_names[{index}] must be a list of names, got {names!r}")
        if len(names) != count:
            raise ValueError(
                f"image {index} has {count} channels but {len(names)} channel names {list(names)}"
            )
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"channel_names[{index}] must hold strings, got {list(names)!r}")
        result.append(tuple(names))
    return tuple(result)


def as_channel_batch(x: ChannelBatch | Sequence[Tensor]) -> ChannelBatch:
    """Accept what every model accepts: a ChannelBatch or a list of (C_i, H, W) tensors."""
    if isinstance(x, ChannelBatch):
        return x
    if isinstance(x, Tensor):
        if x.dim() == 4:  # (B, C, H, W): every image has the same C
            return ChannelBatch.from_images(list(x))
        raise ValueError(
            f"pass a ChannelBatch, a list of (C, H, W) tensors or a (B, C, H, W) tensor, not a tensor "
            f"of shape {tuple(x.shape)}"
        )
    return ChannelBatch.from_images(list(x))


@dataclass(frozen=True)
class NamedImage:
    """A (C, H, W) image with the name of each channel: a sample `collate` keeps the names of."""

    pixels: Tensor
    channel_names: tuple[str, ...]


def _images_batch(images: Sequence[Any]) -> ChannelBatch:
    if all(isinstance(image, NamedImage) for image in images):
        return ChannelBatch.from_images([i.pixels for i in images], [i.channel_names for i in images])
    if any(isinstance(image, NamedImage) for image in images):
        raise ValueError("some samples have channel names and some do not; name all or none")
    return ChannelBatch.from_images(list(images))


def collate(samples: Sequence[Any]) -> ChannelBatch | tuple[Any, ...]:
    """DataLoader `collate_fn`: (C_i, H, W) tensors or `NamedImage`s, or tuples whose first item is one.

    Tuples give `(ChannelBatch, *rest)` with the rest collated by torch's default collate.
    """
    if len(samples) == 0:
        raise ValueError("cannot collate an empty list of samples")
    if isinstance(samples[0], Tensor | NamedImage):
        return _images_batch(samples)
    if not isinstance(samples[0], tuple | list):
        raise ValueError(f"samples must be tensors or tuples starting with a tensor, got {type(samples[0])}")
    width = len(samples[0])
    for index, sample in enumerate(samples):
        if not isinstance(sample, tuple | list) or len(sample) != width:
            raise ValueError(f"sample {index} does not have the {width} items of sample 0")
    batch = _images_batch([sample[0] for sample in samples])
    rest = [default_collate([sample[i] for sample in samples]) for i in range(1, width)]
    return (batch, *rest)
