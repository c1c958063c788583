"""`BenchConfig`: everything a run needs besides models and data; defaults follow the paper."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from chadavit_bench.embed import FEATURE_KINDS
from chadavit_bench.protocols.joint import JointConfig
from chadavit_bench.protocols.knn import KnnConfig
from chadavit_bench.protocols.linear import LinearProbeConfig
from chadavit_bench.protocols.lowdata import FRACTIONS
from chadavit_bench.protocols.paper_heads import PaperHeadConfig
from chadavit_bench.protocols.reconstruction import ReconstructionConfig
from chadavit_bench.protocols.regression import RegressionConfig


@dataclass(frozen=True)
class BenchConfig:
    img_size: int = 224
    intensity: str = "dataset"  # --intensity: how raw pixels become [0, 1] (imaging.py, intensity.py)
    # Per-dataset modes that replace `intensity` for those datasets (--protocol paper: the authors').
    dataset_intensity: tuple[tuple[str, str], ...] = ()
    seeds: int = 5  # the paper's linear probes average 5 seeds
    features: tuple[str, ...] = FEATURE_KINDS
    fractions: tuple[float, ...] = FRACTIONS
    knn: KnnConfig = field(default_factory=KnnConfig)
    knn_grid: bool = False
    knn_sweep: bool = False  # the authors' kNN sweep (k x T x distance), best-of-sweep rows
    protocol: str = "default"  # "default" or "paper" (chadavit_bench.protocol: what it changes)
    image_prep: str = "resize"  # "resize" to img_size, or "resize_center_crop" (256 -> 224 style)
    # Dataset files to read at a given size instead of the loader's choice, e.g. (("bloodmnist", 28),).
    dataset_sizes: tuple[tuple[str, int], ...] = ()
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    linear_online: bool = False  # the authors' probe on augmented images (--protocol paper)
    online_probe: PaperHeadConfig = field(default_factory=PaperHeadConfig)
    # RandomResizedCrop scale of the online probe's views per dataset; others: CROP_SCALE (0.08-1).
    online_crop_scales: tuple[tuple[str, tuple[float, float]], ...] = ()
    all_tokens: bool = False  # also evaluate every patch token flattened (knn, linear, regression)
    all_tokens_max_bytes: int = 2 * 2**30  # a dataset whose flattened tokens take more is skipped
    regression: RegressionConfig = field(default_factory=RegressionConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    reconstruction_inputs: tuple[str, ...] = ("DAPI", "Tubulin")
    reconstruction_target: str = "Actin"
    joint: JointConfig = field(default_factory=JointConfig)
    chammi_metric: str = "l2"  # CHAMMI 1-NN distance: l2 (the official default) or cosine
    attention_images: int = 2
    attention_datasets: int = 4
    max_images_per_split: int | None = None
    batch_size: int = 64
    workers: int = 4
    device: str = "cpu"

    def intensity_for(self, dataset: str) -> str:
        """The intensity mode of `dataset`: its entry in `dataset_intensity`, else `intensity`."""
        return dict(self.dataset_intensity).get(dataset, self.intensity)


def quick_config(config: BenchConfig, seeds: int | None = None) -> BenchConfig:
    """`--quick`: small subsets, 2 seeds, short training, no kNN grid: a smoke run of every task."""
    return dataclasses.replace(
        config,
        seeds=seeds if seeds is not None else 2,
        knn_grid=False,
        linear=dataclasses.replace(config.linear, epochs=30, min_steps=200),
        online_probe=dataclasses.replace(config.online_probe, epochs=3, warmup_epochs=1),
        reconstruction=dataclasses.replace(config.reconstruction, epochs=15),
        joint=dataclasses.replace(config.joint, max_per_group=50),
        attention_images=1,
        max_images_per_split=config.max_images_per_split or 256,
    )
