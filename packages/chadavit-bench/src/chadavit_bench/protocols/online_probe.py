"""The authors' linear probe (`--protocol paper`): a linear classifier trained on features of
freshly augmented training images every epoch, the encoder frozen.

Their training transform is RandomResizedCrop(224) + horizontal flip, no normalisation
(src/data/classification_dataloader.py, the `T_train` pipelines, in github.com/nicoboou/chadavit),
the crop's scale range set per dataset (0.2-1 for BBBC048, 0.9-1 for BloodMNIST and CyclOPS,
0.08-1 otherwise: chadavit_bench.protocol.PAPER_CROP_SCALES cites the lines); the head is
trained with their schedule (chadavit_bench.protocols.paper_heads) on raw, unstandardised
features, and evaluated on the evaluation split prepared as their `T_val` (Resize 256 +
CenterCrop 224). The encoder being frozen, computing an epoch's features before the head's steps
of that epoch is the same as computing them batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import chadavit
from chadavit.data.augment import AugmentConfig, geometric_view, sample_geometry
from chadavit_bench.protocols.metrics import classification_metrics
from chadavit_bench.protocols.paper_heads import PaperHeadConfig, fit_paper_head

CROP_SCALE = (0.08, 1.0)  # their generic T_train RandomResizedCrop (classification_dataloader.py 101)
_FLIP_ONLY = AugmentConfig(hflip_p=0.5, vflip_p=0.0, rotate90=False)


@dataclass(frozen=True)
class OnlineImages:
    """How the probe gets training images: `read(position)` -> (C, H, W) float in [0, 1]."""

    read: Callable[[int], np.ndarray]
    img_size: int
    batch_size: int = 64
    device: str = "cpu"
    crop_scale: tuple[float, float] = CROP_SCALE  # RandomResizedCrop's range of area fractions
    unit_range: bool = True  # pixels in [0, 1]: resampling overshoot is clipped back (not for `raw`)


def augmented_view(
    image: np.ndarray,
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = CROP_SCALE,
    unit_range: bool = True,
) -> torch.Tensor:
    """RandomResizedCrop(size, `scale`) and a horizontal flip with p 0.5, all channels together."""
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    height, width = pixels.shape[-2:]
    geometry = sample_geometry(generator, 1, height, width, scale, _FLIP_ONLY)
    counts = torch.tensor([pixels.shape[0]])
    view = geometric_view(pixels, counts, geometry, size)
    return view.clamp_(0.0, 1.0) if unit_range else view


@torch.inference_mode()
def encode(model: nn.Module, images: list[torch.Tensor], kind: str, device: str) -> torch.Tensor:
    """CLS, mean patch token or all patch tokens flattened, as the cached features are computed."""
    features = model.forward_features(chadavit.ChannelBatch.from_images(images).to(device))
    if kind == "cls":
        return features.cls.float().cpu()
    if kind == "all_tokens":
        return torch.stack([p.reshape(-1) for p in features.patch_tokens]).float().cpu()
    return torch.stack([p.reshape(-1, p.shape[-1]).mean(dim=0) for p in features.patch_tokens]).float().cpu()


def run_online_probe(
    model: nn.Module,
    images: OnlineImages,
    train_positions: Sequence[int],
    train_labels: np.ndarray,
    query: np.ndarray,
    query_labels: np.ndarray,
    n_classes: int,
    kind: str,
    seed: int,
    config: PaperHeadConfig = PaperHeadConfig(),
) -> dict[str, float]:
    """Accuracy and F1 of the authors' probe on the query features (prepared as their T_val)."""
    positions = list(train_positions)
    labels = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
    augment = torch.Generator().manual_seed(seed + 1)  # views; the head's own generator orders batches

    def epoch(generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        views = [
            augmented_view(images.read(p), images.img_size, augment, images.crop_scale, images.unit_range)
            for p in positions
        ]
        features = torch.cat(
            [encode(model, views[s : s + images.batch_size], kind, images.device)
             for s in range(0, len(views), images.batch_size)]
        )  # fmt: skip
        order = torch.randperm(len(positions), generator=generator)
        size = config.batch_size
        return [
            (features[order[s : s + size]], labels[order[s : s + size]]) for s in range(0, len(order), size)
        ]

    torch.manual_seed(seed)  # nn.Linear's init draws from the global generator
    layer = nn.Linear(query.shape[1], n_classes)
    steps = -(-len(positions) // config.batch_size)
    fit_paper_head(layer, epoch, steps, nn.functional.cross_entropy, config, seed)
    with torch.no_grad():
        predicted = (
            layer(torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))).argmax(dim=1).numpy()
        )
    return classification_metrics(query_labels, predicted)
