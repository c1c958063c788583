"""DINO multi-crop augmentations for microscopy, in plain torch and vectorised over a batch.

Every image keeps its channels in every view; geometry (crop, flips, 90-degree rotations) is drawn
once per image and view and applied to all of that image's channels at once (one antialiased
resize per image), while intensity jitter is drawn per channel (stains are independent). All draws
come from one `torch.Generator`, so a batch's views are a pure function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

INTENSITY_ORDERS = ("gain_first", "shift_first")
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class AugmentConfig:
    """Multi-crop parameters; defaults follow DINO (Caron et al. 2021) and the ChAda-ViT paper."""

    global_crop_size: int = 224
    local_crop_size: int = 96
    n_local_crops: int = 8
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's default
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    rotate90: bool = True  # microscopy has no "up": all four rotations are equally likely
    intensity_p: float = 0.8  # probability that one channel of one view is jittered
    intensity_scale: tuple[float, float] = (0.5, 1.5)
    intensity_shift: tuple[float, float] = (-0.3, 0.3)
    # "gain_first": x * gain + shift (the default); "shift_first": (x + shift) * gain, the authors'
    # CustomColorJitter (src/data/custom_transforms.py, lines 317-343 of github.com/nicoboou/chadavit).
    intensity_order: str = "gain_first"
    # DINO blurs the first global view always, the second with p 0.1 and each local view with p 0.5.
    blur_p_global: tuple[float, float] = (1.0, 0.1)
    blur_p_local: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # Solarization (invert intensities >= 0.5, one draw per image and view): off by default; DINO's
    # and the authors' asymmetric recipe solarize the second global view with p 0.2.
    solarize_p_global: tuple[float, float] = (0.0, 0.0)
    solarize_p_local: float = 0.0
    interpolation: str = "bilinear"  # crop resize: bilinear, or bicubic (the authors' RandomResizedCrop)
    channel_shuffle: bool = False  # permute an image's channels (same order in all its views)
    channel_drop_p: float = 0.0  # drop each channel with this probability, keeping at least one

    def __post_init__(self) -> None:
        for name in ("global_crop_scale", "local_crop_scale", "crop_ratio", "intensity_scale", "blur_sigma"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(
                    f"augment.{name} must be two positive numbers, low <= high, got {(low, high)}"
                )
        if self.intensity_order not in INTENSITY_ORDERS:
            raise ValueError(
                f"augment.intensity_order must be one of {INTENSITY_ORDERS}, got {self.intensity_order!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"augment.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )
        if len(self.blur_p_global) != len(self.solarize_p_global):
            raise ValueError(
                f"augment.solarize_p_global needs one probability per global view "
                f"({len(self.blur_p_global)}), got {list(self.solarize_p_global)}"
            )
        if self.n_local_crops < 0:
            raise ValueError(f"augment.n_local_crops must be >= 0, got {self.n_local_crops}")
        for name in (
            "hflip_p",
            "vflip_p",
            "intensity_p",
            "blur_p_local",
            "solarize_p_local",
            "channel_drop_p",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class MultiCrop:
    """The views of one batch: each view is (sum of C_i, S, S) float in [0, 1] over the same images."""

    channel_counts: Tensor
    global_views: tuple[Tensor, ...]
    local_views: tuple[Tensor, ...]
    # Per image the names of its channels in the views' order (after shuffle and drop), when given.
    channel_names: tuple[tuple[str, ...], ...] | None = None


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low


def sample_crop_boxes(
    generator: torch.Generator,
    n: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    attempts: int = 10,
) -> Tensor:
    """(n, 4) boxes (x0, y0, w, h) as fractions of a square image, RandomResizedCrop style.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); the first of `attempts` draws that fits
    is used, else the whole image (what torchvision falls back to for ratios inside the range).
    """
    area = _uniform(generator, (n, attempts), *scale)
    aspect = torch.exp(_uniform(generator, (n, attempts), math.log(ratio[0]), math.log(ratio[1])))
    width = torch.sqrt(area * aspect)
    height = torch.sqrt(area / aspect)
    fits = (width <= 1.0) & (height <= 1.0)
    first = fits.to(torch.int8).argmax(dim=1)
    rows = torch.arange(n)
    width = torch.where(fits.any(dim=1), width[rows, first], torch.ones(n, dtype=torch.float64))
    height = torch.where(fits.any(dim=1), height[rows, first], torch.ones(n, dtype=torch.float64))
    corner = torch.rand((n, 2), generator=generator, dtype=torch.float64)
    x0 = corner[:, 0] * (1.0 - width)
    y0 = corner[:, 1] * (1.0 - height)
    return torch.stack([x0, y0, width, height], dim=1)


@dataclass(frozen=True)
class Geometry:
    """Per image of a view: pixel crop boxes (x0, y0, w, h), flips and quarter turns, all (n,) or (n, 4)."""

    boxes: Tensor
    hflip: Tensor
    vflip: Tensor
    turns: Tensor


def sample_geometry(
    generator: torch.Generator,
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    config: AugmentConfig,
) -> Geometry:
    """Crop boxes rounded to whole pixels (as torchvision's RandomResizedCrop), flips, rotations."""
    fractions = sample_crop_boxes(generator, n, scale, config.crop_ratio)
    size = torch.tensor([width, height, width, height], dtype=torch.float64)
    x0, y0, w, h = (fractions * size).unbind(dim=1)
    w = w.round().clamp(1, width)
    h = h.round().clamp(1, height)
    x0 = torch.minimum(x0.round(), width - w)
    y0 = torch.minimum(y0.round(), height - h)
    boxes = torch.stack([x0, y0, w, h], dim=1).long()
    hflip = torch.rand(n, generator=generator) < config.hflip_p
    vflip = torch.rand(n, generator=generator) < config.vflip_p
    turns = torch.randint(0, 4 if config.rotate90 else 1, (n,), generator=generator)
    return Geometry(boxes, hflip, vflip, turns)


def geometric_view(
    pixels: Tensor, counts: Tensor, geometry: Geometry, size: int, mode: str = "bilinear"
) -> Tensor:
    """Crop each image, resize it to size x size (`mode`, antialiased like PIL), flip, rotate.

    All channels of an image share its crop and transform; the result is (sum C, size, size).
    """
    views = []
    for image, box, hflip, vflip, turns in zip(
        torch.split(pixels, counts.tolist()),
        geometry.boxes.tolist(),
        geometry.hflip.tolist(),
        geometry.vflip.tolist(),
        geometry.turns.tolist(),
        strict=True,
    ):
        x0, y0, w, h = box
        crop = image[None, :, y0 : y0 + h, x0 : x0 + w]
        view = F.interpolate(crop, size=(size, size), mode=mode, align_corners=False, antialias=True)[0]
        if hflip:
            view = view.flip(-1)
        if vflip:
            view = view.flip(-2)
        if turns:
            view = torch.rot90(view, turns, dims=(-2, -1))
        views.append(view)
    return torch.cat(views)


def jitter_intensity(view: Tensor, generator: torch.Generator, config: AugmentConfig) -> Tensor:
    """x * U(scale) + U(shift) (or (x + U(shift)) * U(scale)) on each channel independently, with
    probability `intensity_p`, clamped to [0, 1]."""
    n = view.shape[0]
    chosen = torch.rand(n, generator=generator) < config.intensity_p
    gain = _uniform(generator, (n,), *config.intensity_scale).to(view.dtype)
    shift = _uniform(generator, (n,), *config.intensity_shift).to(view.dtype)
    gain = torch.where(chosen, gain, torch.ones_like(gain)).to(view.device)
    shift = torch.where(chosen, shift, torch.zeros_like(shift)).to(view.device)
    if config.intensity_order == "shift_first":
        return ((view + shift[:, None, None]) * gain[:, None, None]).clamp_(0.0, 1.0)
    return (view * gain[:, None, None] + shift[:, None, None]).clamp_(0.0, 1.0)


def solarize(view: Tensor, counts: Tensor, generator: torch.Generator, p: float) -> Tensor:
    """Invert the intensities >= 0.5 (128 of 255, PIL's and albumentations' threshold) of each image
    with probability `p`, all its channels together. Draws nothing when `p` is 0."""
    if p == 0.0:
        return view
    chosen = (torch.rand(counts.numel(), generator=generator) < p).repeat_interleave(counts)
    flip = chosen.to(view.device)[:, None, None] & (view >= 0.5)
    return torch.where(flip, 1.0 - view, view)


def gaussian_blur(view: Tensor, sigma_per_channel: Tensor) -> Tensor:
    """Separable Gaussian blur of each channel with its own sigma (pixels); sigma 0 leaves it as is."""
    blurred = sigma_per_channel > 0  # on the CPU, where the draws are made
    if not bool(blurred.any()):
        return view
    sigmas = sigma_per_channel[blurred].to(view.dtype)
    # Channel indices rather than a boolean mask: masking a GPU tensor waits for the GPU.
    rows = blurred.nonzero().squeeze(1).to(view.device)
    radius = max(1, math.ceil(3.0 * float(sigmas.max())))
    radius = min(radius, view.shape[-1] - 1)  # reflect padding needs a radius below the size
    offsets = torch.arange(-radius, radius + 1, dtype=view.dtype)
    kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).to(view.device)
    planes = view.index_select(0, rows).unsqueeze(0)  # (1, n, S, S): one group per channel
    count = planes.shape[1]
    planes = F.conv2d(
        F.pad(planes, (radius, radius, 0, 0), mode="reflect"), kernels[:, None, None, :], groups=count
    )
    planes = F.conv2d(
        F.pad(planes, (0, 0, radius, radius), mode="reflect"), kernels[:, None, :, None], groups=count
    )
    return view.index_copy(0, rows, planes.squeeze(0))


def _blur_sigmas(generator: torch.Generator, counts: Tensor, p: float, config: AugmentConfig) -> Tensor:
    n = counts.numel()
    chosen = torch.rand(n, generator=generator) < p
    sigma = _uniform(generator, (n,), *config.blur_sigma)
    return torch.where(chosen, sigma, torch.zeros_like(sigma)).repeat_interleave(counts)


def channel_orders(
    images: list[Tensor], generator: torch.Generator, config: AugmentConfig
) -> list[Tensor] | None:
    """Per image the channels it keeps, in their new order (shuffle, drop); None when both are off."""
    if not config.channel_shuffle and config.channel_drop_p == 0.0:
        return None
    orders = []
    for image in images:
        order = torch.arange(image.shape[0])
        if config.channel_shuffle:
            order = torch.randperm(image.shape[0], generator=generator)
        if config.channel_drop_p > 0.0 and image.shape[0] > 1:
            keep = torch.rand(image.shape[0], generator=generator) >= config.channel_drop_p
            if not bool(keep.any()):
                keep[torch.randint(0, image.shape[0], (1,), generator=generator)] = True
            order = order[keep]
        orders.append(order)
    return orders


def shuffle_and_drop_channels(
    images: list[Tensor], generator: torch.Generator, config: AugmentConfig
) -> list[Tensor]:
    """The optional channel augmentations, applied once per image so every view agrees."""
    orders = channel_orders(images, generator, config)
    return images if orders is None else [image[order] for image, order in zip(images, orders, strict=True)]


def _make_view(
    pixels: Tensor,
    counts: Tensor,
    generator: torch.Generator,
    config: AugmentConfig,
    size: int,
    scale: tuple[float, float],
    blur_p: float,
    solarize_p: float = 0.0,
) -> Tensor:
    geometry = sample_geometry(generator, counts.numel(), pixels.shape[-2], pixels.shape[-1], scale, config)
    view = geometric_view(pixels, counts, geometry, size, config.interpolation)
    view = jitter_intensity(view, generator, config)
    # Blur sums weights that add to 1 only up to rounding: clamp again to stay in [0, 1].
    view = gaussian_blur(view, _blur_sigmas(generator, counts, blur_p, config)).clamp_(0.0, 1.0)
    return solarize(view, counts, generator, solarize_p)


def multi_crop(
    images: list[Tensor],
    generator: torch.Generator,
    config: AugmentConfig,
    channel_names: Sequence[Sequence[str]] | None = None,
) -> MultiCrop:
    """2 global and `n_local_crops` local views of (C_i, H, W) uint8 or [0, 1] float images.

    `channel_names` (per image, per channel) follow the channels through shuffle and drop."""
    if not images:
        raise ValueError("multi_crop needs at least one image")
    orders = channel_orders(images, generator, config)
    if orders is not None:
        images = [image[order] for image, order in zip(images, orders, strict=True)]
    names = None if channel_names is None else tuple(tuple(n) for n in channel_names)
    if names is not None and orders is not None:
        names = tuple(tuple(n[i] for i in order.tolist()) for n, order in zip(names, orders, strict=True))
    counts = torch.tensor([image.shape[0] for image in images], dtype=torch.long)
    pixels = torch.cat(images, dim=0)
    pixels = pixels.float().div_(255.0) if pixels.dtype == torch.uint8 else pixels.float()
    global_views = tuple(
        _make_view(
            pixels, counts, generator, config, config.global_crop_size, config.global_crop_scale, blur, sol
        )
        for blur, sol in zip(config.blur_p_global, config.solarize_p_global, strict=True)
    )
    local_views = tuple(
        _make_view(
            pixels,
            counts,
            generator,
            config,
            config.local_crop_size,
            config.local_crop_scale,
            config.blur_p_local,
            config.solarize_p_local,
        )
        for _ in range(config.n_local_crops)
    )
    return MultiCrop(counts, global_views, local_views, names)
