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
  (chadavit_bench.protocols.online_probe), instead of the cached-feature probe.

- features: also `all_tokens`, every patch token flattened (the paper's appendix), for the
  datasets where they fit in `all_tokens_max_bytes`; "tokens" stays the mean patch token.
"""

from __future__ import annotations

import dataclasses

from chadavit_bench.config import BenchConfig

PROTOCOLS = ("default", "paper")
PAPER_DATASET_SIZES = (("bloodmnist", 28),)


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
        all_tokens=True,
    )
