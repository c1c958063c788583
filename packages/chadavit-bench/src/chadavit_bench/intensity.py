"""`--intensity`: how every dataset of a run scales raw pixels, fitted once per dataset.

The default, `dataset`, maps each channel through per-channel percentiles (0.5, 99.5) of the fit
split, read once: a whole dataset shares one mapping, so an image whose channel is 3x brighter
stays 3x brighter (per-image min-max would make it identical), and 12-bit data in uint16 files
still fills the model's [0, 1] range (dividing by 65535 would leave it near black).
"""

from __future__ import annotations

import numpy as np

from chadavit.preprocess import fit_window
from chadavit_bench.datasets import DownstreamDataset
from chadavit_bench.imaging import INTENSITY_MODES

PERCENTILES = (0.5, 99.5)
MAX_FIT_IMAGES = 256  # evenly spaced over the fit split: enough for stable percentiles, cheap to read


def apply_intensity(dataset: DownstreamDataset, mode: str) -> DownstreamDataset:
    """A copy of `dataset` that scales its images by `mode` (the window fitted here for `dataset`)."""
    if mode not in INTENSITY_MODES:
        raise ValueError(f"--intensity must be one of {', '.join(INTENSITY_MODES)}, got {mode!r}")
    scaled = dataset.subset(np.arange(len(dataset)))  # a clone: same records, its own settings
    scaled.window = None
    if mode == "dataset":
        fit = dataset.indices(dataset.fit_split)
        if len(fit) == 0:
            fit = np.arange(len(dataset))
        picked = fit[np.linspace(0, len(fit) - 1, min(len(fit), MAX_FIT_IMAGES)).round().astype(int)]
        scaled.intensity = "raw"
        scaled.window = fit_window((scaled.read(int(i)) for i in np.unique(picked)), PERCENTILES)
    scaled.intensity = mode
    scaled._fingerprint = None
    return scaled
