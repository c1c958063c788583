"""A small synthetic CHAMMI in the official layout, with a signal a model can learn.

`ROOT/chammi/{Allen,HPA,CP}/enriched_meta.csv` and tape images (channels side by side, each
`channel_width` wide; the width varies from row to row as in the real crops): Allen as uint16
TIFF named `.ome.tiff` as in the release, HPA and CP as 8-bit PNG, 3, 4 and 5 channels. Classes
are the per-channel structures of `synthetic.class_image`. The tasks mimic CHAMMI's:
- Task_one: the training distribution (same groups, same classes);
- Task_two (and CP's Task_three): a shift the training split never shows (a darker, blurrier
  microscope; a new cell type; a new plate or source) on the training classes;
- HPA Task_three and CP Task_four: classes Train never shows, in several cell types or plates,
  scored leave-one-group-out (their `cell_type` and `Plate` columns).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from PIL import Image
from skimage.filters import gaussian

from chadavit_bench.datasets.chammi import FOLDER, META_FILE, SUBDATASETS

if TYPE_CHECKING:
    from chadavit_bench.datasets.synthetic import SyntheticConfig

SEEN_CLASSES = 4
NOVEL_CLASSES = 2  # labels SEEN_CLASSES .. SEEN_CLASSES + NOVEL_CLASSES - 1


@dataclass(frozen=True)
class Part:
    """Rows of one split: which classes, which group (cell type / plate), which shift."""

    split: str
    classes: tuple[int, ...]
    group: str
    gain: float = 1.0  # a microscope/plate shift: darker or brighter
    blur: float = 0.0  # extra blur, in pixels at 32 px


SEEN = tuple(range(SEEN_CLASSES))
NOVEL = tuple(range(SEEN_CLASSES, SEEN_CLASSES + NOVEL_CLASSES))
PARTS = {
    "Allen": [
        Part("Train", SEEN, "-"),
        Part("Task_one", SEEN, "-"),
        Part("Task_two", SEEN, "-", gain=0.7, blur=0.8),
    ],
    "HPA": [
        Part("Train", SEEN, "U-2 OS"),
        Part("Train", SEEN, "A-431", gain=1.1),
        Part("Task_one", SEEN, "U-2 OS"),
        Part("Task_one", SEEN, "A-431", gain=1.1),
        Part("Task_two", SEEN, "HeLa", gain=0.8),
        Part("Task_three", NOVEL, "RT4", gain=0.9),
        Part("Task_three", NOVEL, "SiHa", gain=1.05),
        Part("Task_three", NOVEL, "MCF7", gain=0.85),
    ],
    "CP": [
        Part("Train", SEEN, "P1"),
        Part("Train", SEEN, "P2", gain=1.05),
        Part("Task_one", SEEN, "P1"),
        Part("Task_one", SEEN, "P2", gain=1.05),
        Part("Task_two", SEEN, "P3", gain=0.85),
        Part("Task_three", SEEN, "P4", gain=0.7, blur=0.6),
        Part("Task_four", NOVEL, "P5", gain=0.9),
        Part("Task_four", NOVEL, "P6", gain=1.1),
        Part("Task_four", NOVEL, "P7"),
    ],
}
GROUP_COLUMN = {"HPA": "cell_type", "CP": "Plate"}


def _tape(planes: np.ndarray) -> np.ndarray:
    """(c, h, w) -> (h, w x c): the channels side by side, as CHAMMI stores them."""
    c, h, w = planes.shape
    return planes.transpose(1, 0, 2).reshape(h, c * w)


def _cell(label: int, n_channels: int, size: int, part: Part, rng: np.random.Generator) -> np.ndarray:
    from chadavit_bench.datasets.synthetic import class_image

    image = class_image(label, SEEN_CLASSES + NOVEL_CLASSES, n_channels, size, rng)
    if part.blur:
        image = np.stack([gaussian(p, sigma=part.blur * size / 32, preserve_range=True) for p in image])
    return np.clip(image * part.gain, 0.0, 1.0)


def write_chammi(root: Path, config: SyntheticConfig, rng: np.random.Generator) -> Path:
    """`root/chammi/`: Allen, HPA and CP with their enriched_meta.csv; returns the folder."""
    base = root / FOLDER
    for sub in SUBDATASETS:
        folder = base / sub.folder
        (folder / "crops").mkdir(parents=True, exist_ok=True)
        group_column = GROUP_COLUMN.get(sub.folder)
        header = ["file_path", "channel_width", "train_test_split", "Label", *sub.tasks]
        header += [group_column] if group_column else []
        header += ["ID"]  # an extra column, ignored as the real ones are
        rows = []
        for part in PARTS[sub.folder]:
            per_class = config.train_per_class if part.split == "Train" else config.eval_per_class
            for label in rng.permutation(np.repeat(part.classes, per_class)):
                index = len(rows)
                size = config.image_size + int(rng.integers(0, 3)) * 2  # channel widths vary by row
                planes = _cell(int(label), len(sub.channels), size, part, rng)
                if sub.folder == "Allen":
                    name = f"crops/{index:05d}.ome.tiff"
                    pixels = np.round(_tape(planes) * 4095).astype(np.uint16)
                    # No OME-XML: tifffile writes a fresh UUID into it, and the files must be
                    # byte-identical for a seed; readers see the same 2-D tape.
                    tifffile.imwrite(folder / name, pixels, ome=False, metadata=None)
                else:
                    name = f"crops/{index:05d}.png"
                    Image.fromarray(np.round(_tape(planes) * 255).astype(np.uint8)).save(folder / name)
                flags = [str(part.split == task) for task in sub.tasks]
                row = [f"{sub.folder}/{name}", size, part.split, f"class_{label}", *flags]
                row += [part.group] if group_column else []
                rows.append([*row, f"{sub.folder}-{index}"])
        with (folder / META_FILE).open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return base
