"""OMERO.web's rendering of planes to 8-bit JPEG: the `c`, `m`, `q` and `region` query parameters.

Rendering follows OMERO's linear family: each active channel maps [start, end] of its window to
[0, 255]; in colour mode (`m=c`) channels are tinted with their colour and added (clipped); in
greyscale mode (`m=g`) only the first active channel is drawn, in grey.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from idrcell.emulator.catalogue import Image

DEFAULT_QUALITY = 0.9  # OMERO.web's default JPEG compression quality when `q` is absent
_CHANNEL_TERM = re.compile(
    r"^(?P<off>-)?(?P<index>\d+)(?:\|(?P<start>-?[\d.]+(?:e-?\d+)?):(?P<end>-?[\d.]+(?:e-?\d+)?))?(?:\$(?P<color>[0-9A-Fa-f]{6}))?$"
)


class RenderRequestError(ValueError):
    """A render request the server refuses (answered as HTTP 400 with this message)."""


@dataclass(frozen=True)
class ChannelSetting:
    index: int  # 0-based
    active: bool
    start: float
    end: float
    color: str  # RRGGBB


def default_settings(image: Image) -> list[ChannelSetting]:
    """The server's rendering settings: every channel on, with its stored window and colour."""
    return [
        ChannelSetting(i, True, channel.window_start, channel.window_end, channel.color)
        for i, channel in enumerate(image.channels)
    ]


def parse_channels(value: str | None, image: Image) -> list[ChannelSetting]:
    """Apply a `c=` parameter (1-based `[-]idx[|start:end][$RRGGBB]`, comma separated) to the defaults.

    As in OMERO.web, channels not listed are switched off, and a leading `-` lists a channel as off.
    """
    settings = default_settings(image)
    if value is None or value == "":
        return settings
    listed: dict[int, ChannelSetting] = {}
    for term in value.split(","):
        match = _CHANNEL_TERM.match(term.strip())
        if match is None:
            raise RenderRequestError(f"invalid channel term {term!r} in c={value!r}")
        index = int(match["index"]) - 1
        if not 0 <= index < image.size_c:
            raise RenderRequestError(
                f"channel {index + 1} is out of range 1..{image.size_c} for image {image.id}"
            )
        base = settings[index]
        start = float(match["start"]) if match["start"] is not None else base.start
        end = float(match["end"]) if match["end"] is not None else base.end
        color = (match["color"] or base.color).upper()
        listed[index] = ChannelSetting(index, match["off"] is None, start, end, color)
    return [listed.get(i, ChannelSetting(i, False, s.start, s.end, s.color)) for i, s in enumerate(settings)]


def parse_quality(value: str | None) -> int:
    """`q` in [0, 1] to a Pillow JPEG quality in [1, 100]."""
    if value is None or value == "":
        quality = DEFAULT_QUALITY
    else:
        try:
            quality = float(value)
        except ValueError as error:
            raise RenderRequestError(f"q must be a number in [0, 1], got {value!r}") from error
        if not 0.0 <= quality <= 1.0:
            raise RenderRequestError(f"q must be within [0, 1], got {value!r}")
    return max(1, min(100, round(quality * 100)))


def parse_mode(value: str | None, default: str = "c") -> str:
    if value is None or value == "":
        return default
    if value not in ("g", "c"):
        raise RenderRequestError(f"m must be 'g' (greyscale) or 'c' (colour), got {value!r}")
    return value


def parse_region(value: str | None, image: Image) -> tuple[int, int, int, int]:
    """`region=x,y,w,h`, clipped to the image; an empty or unparsable region is refused."""
    if not value:
        raise RenderRequestError("render_image_region needs region=x,y,w,h")
    try:
        x, y, w, h = (int(part) for part in value.split(","))
    except ValueError as error:
        raise RenderRequestError(f"region must be four integers x,y,w,h, got {value!r}") from error
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(image.width, x + w), min(image.height, y + h)
    if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
        raise RenderRequestError(
            f"region {value!r} does not overlap image {image.id} ({image.width} x {image.height})"
        )
    return x0, y0, x1 - x0, y1 - y0


def _window(plane: np.ndarray, start: float, end: float) -> np.ndarray:
    """Linear map of [start, end] to [0, 1] (OMERO's `linear` family with coefficient 1)."""
    values = plane.astype(np.float32)
    if end <= start:
        return (values >= end).astype(np.float32)
    return np.clip((values - start) / (end - start), 0.0, 1.0)


def render_rgb(
    planes: Callable[[int], np.ndarray],
    settings: Sequence[ChannelSetting],
    mode: str,
    shape: tuple[int, int],
) -> np.ndarray:
    """Render (H, W, 3) uint8 from the active channels; `planes(index)` returns a channel's pixels."""
    active = [s for s in settings if s.active]
    if mode == "g":
        if not active:
            return np.zeros((*shape, 3), dtype=np.uint8)
        grey = np.rint(_window(planes(active[0].index), active[0].start, active[0].end) * 255.0).astype(
            np.uint8
        )
        return np.repeat(grey[:, :, None], 3, axis=2)
    rgb = np.zeros((*shape, 3), dtype=np.float32)
    for setting in active:
        tint = np.array([int(setting.color[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)
        rgb += _window(planes(setting.index), setting.start, setting.end)[:, :, None] * tint
    return np.rint(np.clip(rgb, 0.0, 255.0)).astype(np.uint8)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG, deterministic for the same pixels and quality."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
