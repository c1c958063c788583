"""Reading channel files and scaling pixels to float32 by the run's `--intensity` mode.

Modes (chadavit.preprocess does the arithmetic of the first three; docs/bench.md says why `dataset`
is the default):
- `dataset`: per-channel percentiles (0.5, 99.5) computed once over the fit split (intensity.py),
  the same window for every image of the dataset: brightness differences between images stay.
- `dtype`: the dtype's range (uint8 / 255, uint16 / 65535).
- `minmax`: per image and per channel min-max; erases intensity phenotypes.
- `raw`: float32, unscaled, NOT in [0, 1] (what the `dataset` window is fitted on; the authors'
  evaluation of BBBC021 and Bray, see chadavit_bench.protocol).
- `clip255`: values clipped to [0, 255], truncated to integers, then / 255: the authors' CyclOPS
  reading (`np.clip(image, 0, 255).astype(np.uint8)` then ToTensor); equals `dtype` on uint8 files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from chadavit.preprocess import Window, preprocess

TIFF_SUFFIXES = (".tif", ".tiff")


class ImageReadError(ValueError):
    """A channel file exists but cannot be decoded as an image."""


def read_planes(path: str | Path) -> np.ndarray:
    """Read one image file as (C, H, W) in its native dtype (C = 1 for greyscale files)."""
    path = Path(path)
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


INTENSITY_MODES = ("dataset", "dtype", "minmax", "raw", "clip255")
DEFAULT_INTENSITY = "dataset"
UNBOUNDED_MODES = ("raw",)  # the modes whose pixels are not in [0, 1]: nothing may clip them there


def in_unit_range(intensity: str) -> bool:
    """Whether `intensity` maps pixels into [0, 1] (so resampling overshoot may be clipped back)."""
    return intensity not in UNBOUNDED_MODES


def scale_to_unit(planes: np.ndarray, intensity: str = "dtype", window: Window | None = None) -> np.ndarray:
    """Scale a (C, H, W) array to float32 by `intensity` (see the module docstring)."""
    if planes.dtype == np.bool_:
        planes = planes.astype(np.uint8) * np.uint8(255)
    if intensity == "raw":
        return planes.astype(np.float32)
    if intensity == "clip255":
        clipped = np.floor(np.clip(planes.astype(np.float64), 0, 255))
        if np.isnan(clipped).any():  # as chadavit.preprocess refuses them in the other modes
            raise ValueError("the image holds NaN intensities")
        return (clipped / 255).astype(np.float32)
    if intensity == "dataset":
        if window is None:
            raise ValueError("intensity 'dataset' needs the window fitted on the fit split")
        return preprocess(planes, "dataset", window=window).numpy()
    return preprocess(planes, intensity).numpy()  # type: ignore[arg-type]


def channel_window(window: Window | None, channel: int) -> Window | None:
    return None if window is None else Window((window.low[channel],), (window.high[channel],))


def read_channels(
    paths: Sequence[str | Path], intensity: str = "dtype", window: Window | None = None
) -> np.ndarray:
    """Read one greyscale file per channel and stack them as float32 (C, H, W) in [0, 1]."""
    planes = []
    for channel, path in enumerate(map(Path, paths)):
        array = read_planes(path)
        if array.shape[0] != 1:
            # A colour export of a single channel: its bands are copies, keep their mean.
            array = array.astype(np.float32).mean(axis=0, keepdims=True).astype(array.dtype)
        planes.append(scale_to_unit(array, intensity, channel_window(window, channel))[0])
    shapes = {plane.shape for plane in planes}
    if len(shapes) != 1:
        raise ImageReadError(f"channel files {[str(p) for p in paths]} have different sizes {sorted(shapes)}")
    return np.stack(planes)
