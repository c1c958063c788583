"""The model's input contract and `preprocess`: raw microscopy arrays of any dtype -> model input.

Pretraining sees IDR renders: every channel mapped through its display window to 8 bits, then
divided by 255 (docs/format.md), so the model expects float32 planes in [0, 1] in which a brighter
channel stays brighter. How raw intensities get there is a choice with consequences: scaling every
image to its own min and max erases intensity phenotypes (a 3x brighter channel becomes the same
image), so `preprocess` makes the choice explicit instead of guessing from the dtype.

Modes (`IntensityMode`):
- "dtype":   divide by the dtype's full range (uint8 / 255, uint16 / 65535; floats are taken as
             already in [0, 1] and clipped). Keeps differences between images; the default.
- "window":  a fixed (low, high) per channel or for all, as IDR's display window: (x - low) /
             (high - low), clipped to [0, 1]. What pretraining saw.
- "dataset": the same, with low/high = percentiles computed once over the training split
             (`fit_window`), so every image of a dataset shares one mapping.
- "minmax":  per image and per channel min-max. Erases intensity differences; for shape-only tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

IntensityMode = Literal["dtype", "window", "dataset", "minmax"]
INTENSITY_MODES: tuple[str, ...] = ("dtype", "window", "dataset", "minmax")


@dataclass(frozen=True)
class InputContract:
    """What a model expects; saved as `preprocessing` in config.json (`model.pretrained_cfg`)."""

    input_range: tuple[float, float] = (0.0, 1.0)
    dtype: str = "float32"
    # How the training images were made from raw intensities.
    intensity: str = "window"
    intensity_source: str = "IDR display window (rendering settings) per channel, 8-bit render / 255"
    img_size: int = 224  # the side the model was trained at; other multiples of the patch work

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "input_range": list(self.input_range)}

    @classmethod
    def from_json(cls, document: Any, source: str) -> InputContract:
        if not isinstance(document, dict):
            raise ValueError(f"{source}: preprocessing must be an object, got {document!r}")
        unknown = sorted(set(document) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{source}: unknown preprocessing fields {unknown}")
        values = dict(document)
        if "input_range" in values:
            low_high = values["input_range"]
            if not (isinstance(low_high, list) and len(low_high) == 2):
                raise ValueError(f"{source}: preprocessing.input_range must be [low, high], got {low_high!r}")
            values["input_range"] = (float(low_high[0]), float(low_high[1]))
        if "img_size" in values and (not isinstance(values["img_size"], int) or values["img_size"] < 1):
            raise ValueError(f"{source}: preprocessing.img_size must be a positive integer")
        return cls(**values)


def input_contract(model: torch.nn.Module) -> InputContract:
    """The model's contract: the one it was loaded with, else the pretraining default at its size."""
    contract = getattr(model, "pretrained_cfg", None)
    if isinstance(contract, InputContract):
        return contract
    config = getattr(model, "config", None)
    return InputContract(img_size=int(getattr(config, "img_size", 224)))


@dataclass(frozen=True)
class Window:
    """Per-channel (low, high) intensities mapped to 0 and 1."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    percentiles: tuple[float, float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or not self.low:
            raise ValueError("a window needs one low and one high per channel")
        if any(h <= lo for lo, h in zip(self.low, self.high, strict=True)):
            raise ValueError(f"every window high must exceed its low, got low {self.low} high {self.high}")


def fit_window(
    images: Iterable[np.ndarray | torch.Tensor], percentiles: tuple[float, float] = (0.5, 99.5)
) -> Window:
    """Per-channel intensity percentiles over a dataset's training images (all must share C).

    Computed once and reused for every split, so two images keep their relative brightness."""
    low_p, high_p = percentiles
    if not 0.0 <= low_p < high_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    per_channel: list[list[np.ndarray]] | None = None
    for image in images:
        array = _as_array(image)
        if per_channel is None:
            per_channel = [[] for _ in range(array.shape[0])]
        if array.shape[0] != len(per_channel):
            raise ValueError(f"fit_window: images have {len(per_channel)} and {array.shape[0]} channels")
        for c, plane in enumerate(array):
            per_channel[c].append(plane.astype(np.float64).ravel())
    if per_channel is None:
        raise ValueError("fit_window needs at least one image")
    low, high = [], []
    for planes in per_channel:
        values = np.concatenate(planes)
        lo, hi = np.percentile(values, [low_p, high_p])
        low.append(float(lo))
        high.append(float(hi) if hi > lo else float(lo) + 1.0)  # a flat channel maps to 0
    return Window(tuple(low), tuple(high), percentiles)


def _as_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"expected a (C, H, W) or (H, W) image, got shape {tuple(array.shape)}")
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"expected numeric pixels, got dtype {array.dtype}")
    return array


def _window_arrays(window: Window | Sequence[float], channels: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(window, Window):
        low, high = window  # one (low, high) for every channel
        window = Window((float(low),) * channels, (float(high),) * channels)
    if len(window.low) != channels:
        raise ValueError(f"the window has {len(window.low)} channels, the image {channels}")
    shape = (channels, 1, 1)
    return np.asarray(window.low).reshape(shape), np.asarray(window.high).reshape(shape)


def preprocess(
    image: np.ndarray | torch.Tensor,
    mode: IntensityMode = "dtype",
    *,
    window: Window | Sequence[float] | None = None,
    size: int | None = None,
) -> torch.Tensor:
    """A (C, H, W) or (H, W) array of any numeric dtype -> float32 (C, H, W) in [0, 1].

    `mode` as in the module docstring; "window" and "dataset" need `window` (a `Window` from
    `fit_window`, or one (low, high) pair). `size`: resize to size x size (bilinear, antialiased),
    e.g. `input_contract(model).img_size`."""
    if mode not in INTENSITY_MODES:
        raise ValueError(f"unknown intensity mode {mode!r}; choose from {', '.join(INTENSITY_MODES)}")
    array = _as_array(image)
    if mode == "dtype":
        if np.issubdtype(array.dtype, np.integer):
            info = np.iinfo(array.dtype)
            scaled = (array.astype(np.float64) - min(info.min, 0)) / (info.max - min(info.min, 0))
        else:
            scaled = array.astype(np.float64)
    elif mode in ("window", "dataset"):
        if window is None:
            raise ValueError(f"intensity mode {mode!r} needs a window (see chadavit.fit_window)")
        low, high = _window_arrays(window, array.shape[0])
        scaled = (array.astype(np.float64) - low) / (high - low)
    else:  # minmax, per image and per channel
        values = array.astype(np.float64)
        low = values.min(axis=(1, 2), keepdims=True)
        span = values.max(axis=(1, 2), keepdims=True) - low
        scaled = np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0)
    if not np.isfinite(scaled).all():
        raise ValueError("the image holds NaN or infinite intensities")
    tensor = torch.from_numpy(np.clip(scaled, 0.0, 1.0).astype(np.float32))
    if size is not None and tuple(tensor.shape[-2:]) != (size, size):
        tensor = F.interpolate(
            tensor[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )[0].clamp_(0.0, 1.0)
    return tensor
