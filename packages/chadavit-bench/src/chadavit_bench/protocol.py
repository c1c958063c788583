"""`--protocol default|paper`: the project's evaluation, or the authors' as far as the bench has it.

`paper` changes, after the other options are applied (github.com/nicoboou/chadavit, the paper's
Table 1 and its appendix):
- kNN: the authors' sweep over k, T and the distance (scripts/knn/*/dino_chada_vit_moyen.yaml),
  reported as best-of-sweep beside the fixed k = 20, T = 0.07 cosine row;
- images: resized to a square 256/224 times the input size, then centre-cropped to it (their
  evaluation transforms `T_val`: Resize 256 + CenterCrop 224, src/data/classification_dataloader.py
  lines 107-130 and after);
- BloodMNIST: the 28 x 28 file, as in the paper's Table 1 (default: the largest file present);
- NF-kB: the authors' nn.Linear + MSE head (chadavit_bench.protocols.paper_heads) instead of ridge;
- linear probe: theirs, on RandomResizedCrop + flip views of the images, fresh every epoch
  (chadavit_bench.protocols.online_probe), instead of the cached-feature probe, at each dataset's
  crop scale (`PAPER_CROP_SCALES`);
- pixels: each dataset scaled as their loader scales it (`PAPER_INTENSITIES`), instead of the run's
  `--intensity`; an explicit `--intensity` still wins (cli.py).

- features: also `all_tokens`, every patch token flattened (the paper's appendix), for the
  datasets where they fit in `all_tokens_max_bytes`; "tokens" stays the mean patch token.
"""

from __future__ import annotations

import dataclasses

from chadavit_bench.config import BenchConfig

PROTOCOLS = ("default", "paper")
PAPER_DATASET_SIZES = (("bloodmnist", 28),)

# How the authors' evaluation loaders turn each dataset's files into the encoder's input
# (github.com/nicoboou/chadavit at 9da56be; `cd` = src/data/custom_datasets.py, `cl` =
# src/data/classification_dataloader.py). torchvision's ToTensor divides uint8 by 255 and nothing
# else; albumentations' ToTensorV2 divides nothing; none of the downstream pipelines normalises.
PAPER_INTENSITIES = (
    # cd 636-641: tifffile.imread of the 16-bit TIFFs, astype(float32); cl 151-166: Resize,
    # CenterCrop, ToTensorV2: raw counts reach the encoder.
    ("bbbc021", "raw"),
    # cd 812-824: 8-bit channel JPEGs stacked, Image.fromarray; cl 219-233: ToTensor (/ 255).
    ("bbbc048", "dtype"),
    # cd 573: Image.fromarray of the uint8 MedMNIST array; cl 185-199: ToTensor (/ 255).
    ("bloodmnist", "dtype"),
    # cd 318-319 (Bray) and 416-421 (BBBC021xBray): the npz `sample` astype(float32); cl 134-149 and
    # 168-183: ToTensorV2: raw values.
    ("bray", "raw"),
    # cd 972-973: np.clip(image, 0, 255).astype(np.uint8) per channel TIFF; cl 236-251: ToTensor.
    ("cyclops", "clip255"),
    # cd 1221-1225 (Transloc): the PNG through Image.fromarray; cl 253-267: ToTensor (/ 255 for
    # their 8-bit RGB PNGs; a 16-bit PNG would reach their encoder unscaled, see docs/bench.md).
    ("nfkb", "dtype"),
)

# RandomResizedCrop scale of their linear probe's training views (`T_train` in cl): BBBC048 0.2-1
# (line 222), BloodMNIST 0.9-1 (188), CyclOPS 0.9-1 (239). Other datasets (manifests) keep their
# generic 0.08-1 (cl 101, 120). (BBBC021's is 0.2-1, line 154; the bench does not classify BBBC021.)
PAPER_CROP_SCALES = (
    ("bbbc048", (0.2, 1.0)),
    ("bloodmnist", (0.9, 1.0)),
    ("cyclops", (0.9, 1.0)),
)


def apply_protocol(config: BenchConfig, protocol: str) -> BenchConfig:
    """`config` under `protocol`; "default" leaves it as it is."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if protocol == "default":
        return config
    return dataclasses.replace(
        config,
        protocol="paper",
        knn_sweep=True,
        image_prep="resize_center_crop",
        dataset_sizes=PAPER_DATASET_SIZES,
        regression=dataclasses.replace(config.regression, head="linear_mse"),
        linear_online=True,
        online_crop_scales=PAPER_CROP_SCALES,
        dataset_intensity=PAPER_INTENSITIES,
        all_tokens=True,
    )
