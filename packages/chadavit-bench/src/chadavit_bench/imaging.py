"""Reading channel files and scaling pixels to float32 in [0, 1], one rule for every dataset.

Scaling rule (documented in docs/bench.md):
- uint8 (and bool) images are divided by 255 (bool by 1): the dtype range is the natural one for
  8-bit exports (PNG/JPEG), and keeps absolute brightness comparable between images.
- every other dtype (uint16 TIFFs, floats) is min-max scaled per image and per channel: 16-bit
  microscopy rarely uses its full range (BBBC021 uses about 12 bits), so the dtype range would give
  near-black inputs. A constant channel becomes all zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

TIFF_SUFFIXES = (".tif", ".tiff")


class ImageReadError(ValueError):
    """A channel file exists but cannot be decoded as an image."""


def read_planes(path: Path) -> np.ndarray:
    """Read one image file as (C, H, W) in its native dtype (C = 1 for greyscale files)."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = np.asarray(tifffile.imread(path))
        else:
            with Image.open(path) as image:
                if image.mode in ("P", "LA", "PA", "RGBA", "CMYK", "YCbCr"):
                    image = image.convert("RGB")  # palette/alpha carry no extra channel signal
                array = np.asarray(image)
    except (OSError, ValueError, tifffile.TiffFileError) as error:
        raise ImageReadError(f"cannot read image file {path}: {error}") from error
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        # PIL and most TIFF writers store samples last; a small leading axis is already channels.
        return np.moveaxis(array, -1, 0) if array.shape[-1] <= 4 < array.shape[0] else array
    raise ImageReadError(f"image file {path} has shape {array.shape}; expected (H, W) or (H, W, C)")


def scale_to_unit(planes: np.ndarray) -> np.ndarray:
    """Scale a (C, H, W) array to float32 in [0, 1] by the module's rule."""
    if planes.dtype == np.uint8:
        return planes.astype(np.float32) / np.float32(255.0)
    if planes.dtype == np.bool_:
        return planes.astype(np.float32)
    values = planes.astype(np.float32)
    low = values.min(axis=(1, 2), keepdims=True)
    span = values.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0)
    return scaled.astype(np.float32)


def read_channels(paths: Sequence[Path]) -> np.ndarray:
    """Read one greyscale file per channel and stack them as float32 (C, H, W) in [0, 1]."""
    planes = []
    for path in paths:
        array = read_planes(path)
        if array.shape[0] != 1:
            # A colour export of a single channel: its bands are copies, keep their mean.
            array = array.astype(np.float32).mean(axis=0, keepdims=True).astype(array.dtype)
        planes.append(scale_to_unit(array)[0])
    shapes = {plane.shape for plane in planes}
    if len(shapes) != 1:
        raise ImageReadError(f"channel files {[str(p) for p in paths]} have different sizes {sorted(shapes)}")
    return np.stack(planes)
