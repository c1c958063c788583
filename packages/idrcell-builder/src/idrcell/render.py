"""Pixels: decode IDR's greyscale JPEGs, stitch tiles, resize to 224 x 224, encode 8-bit PNG.

Pure functions of their input bytes (no clocks, no randomness), so the same JPEG always gives the
same PNG bytes, which is what makes a resumed or fault-ridden build byte-identical to a clean one.
They run in a worker pool, off the event loop, so that downloads keep flowing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin
from skimage.transform import resize

# ChAda-ViT trains on 224 x 224 crops of IDRCell100k (paper, Sec. 4.1).
IMAGE_SIZE = 224
# A fixed zlib level keeps PNG bytes stable. Level 3 encodes a 224 x 224 fluorescence channel ~2.7x
# faster than zlib's default 6 for ~8% more bytes (1.7 vs 4.7 ms, 21.4 vs 19.7 KiB, measured here);
# PNG encoding was the largest CPU cost per channel at level 6.
PNG_COMPRESS_LEVEL = 3


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"


class PixelError(ValueError):
    """Bytes that are not a complete greyscale-renderable image (e.g. a truncated JPEG)."""


class OversizedImageError(PixelError):
    """An image whose header declares more pixels than the stage expects (a decompression bomb)."""


def open_image(data: bytes, max_width: int, max_height: int) -> Image.Image:
    """`data` as a lazily opened PNG or JPEG whose declared size was checked; no pixel is decoded yet.

    A 60,000 x 60,000 px header costs 3.6 GB once decoded, so the size is checked against what the
    caller expects before `load()`. The format's own plugin reads the header: `Image.open` would
    first run PIL's process-wide decompression-bomb check, which warns or raises on its own terms.
    """
    if data.startswith(PNG_SIGNATURE):
        plugin: type[Image.Image] = PngImagePlugin.PngImageFile
    elif data.startswith(JPEG_SIGNATURE):
        plugin = JpegImagePlugin.JpegImageFile
    else:  # PIL's own message would name a BytesIO object, not the data
        raise PixelError(f"{len(data)} bytes that are no PNG or JPEG (they start {data[:8]!r})")
    try:
        image = plugin(io.BytesIO(data))  # type: ignore[call-arg]
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise PixelError(f"an unreadable {plugin.format} header ({error})") from None
    width, height = image.size
    if width > max_width or height > max_height:
        image.close()
        raise OversizedImageError(
            f"the {image.format} header declares {width} x {height} px, more than the {max_width} x "
            f"{max_height} px expected; refused before decoding"
        )
    return image


def is_complete_jpeg(data: bytes) -> bool:
    """True when `data` starts with a JPEG SOI marker and ends with EOI: a cut body fails this."""
    return len(data) > 4 and data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def decode_grey(data: bytes, max_width: int, max_height: int) -> np.ndarray:
    """The image in `data` as a 2-D uint8 array (colour input is converted to luminance).

    Its header may declare at most `max_width x max_height` px (see `open_image`).
    """
    with open_image(data, max_width, max_height) as image:
        try:
            image.load()
            grey = image.convert("L") if image.mode != "L" else image
            return np.asarray(grey, dtype=np.uint8).copy()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise PixelError(f"undecodable {image.format}: {error}") from None


def stitch(tiles: Sequence[tuple[int, int, bytes]], width: int, height: int) -> np.ndarray:
    """Place decoded tiles `(x, y, jpeg)` into one `height x width` plane."""
    plane = np.zeros((height, width), dtype=np.uint8)
    for x, y, data in tiles:
        tile = decode_grey(data, width - x, height - y)  # a tile never reaches past the plane
        h = min(tile.shape[0], height - y)
        w = min(tile.shape[1], width - x)
        plane[y : y + h, x : x + w] = tile[:h, :w]
    return plane


def resize_to_square(plane: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize (not crop) to `size x size` with Gaussian anti-aliasing, as uint8.

    Non-square fields are stretched, like the published IDRCell100k images; anti-aliasing keeps
    small bright structures (puncta) from aliasing away when a 2,000 px field shrinks ~10x.
    """
    if plane.shape == (size, size):
        return plane.astype(np.uint8, copy=False)
    resized = resize(
        plane.astype(np.float32),
        (size, size),
        order=1,
        mode="reflect",
        anti_aliasing=True,
        preserve_range=True,
    )
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def encode_png(plane: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane, dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return buffer.getvalue()


def render_channel(tiles: Sequence[tuple[int, int, bytes]], width: int, height: int) -> bytes:
    """One channel's JPEG (or JPEG tiles) from IDR -> a 224 x 224 8-bit greyscale PNG.

    `width x height` is the plane's size from imgData: no JPEG may declare more (IDR renders the
    plane or region asked for, and `max_side` already bounds planes).
    """
    if len(tiles) == 1 and tiles[0][:2] == (0, 0):
        # Whole plane: a smaller decoded image is trusted over the metadata, a larger one refused.
        plane = decode_grey(tiles[0][2], width, height)
    else:
        plane = stitch(tiles, width, height)
    if plane.size == 0:
        raise PixelError("the decoded image is empty")
    return encode_png(resize_to_square(plane))


def png_size_and_mode(data: bytes, max_side: int = IMAGE_SIZE) -> tuple[int, int, str]:
    """Width, height and PIL mode of a PNG, for verification; decoded only if within `max_side`."""
    if not data.startswith(PNG_SIGNATURE):
        if data.startswith(JPEG_SIGNATURE):
            raise PixelError("not a PNG but JPEG")
        raise PixelError(f"{len(data)} bytes that are no image (they start {data[:8]!r})")
    with open_image(data, max_side, max_side) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise PixelError(f"undecodable PNG: {error}") from None
        return image.width, image.height, image.mode
