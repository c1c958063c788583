"""The paper's baselines pretrain with DINO like ChAda-ViT: 2 gloo ranks, a few steps, a loadable export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import chadavit
from chadavit.data.testing import write_shards
from chadavit.train.config import ConfigError
from chadavit.train.loop import train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import TINY_MODEL, tiny_config

TINY = {key: value for key, value in TINY_MODEL.items() if key != "img_size"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baselines") / "data"
    write_shards(root, [9, 9], channel_counts=(1, 2, 3, 4, 5), image_size=32, seed=5)
    return root


def _run(data_dir: Path, out: Path, model: str, **overrides: object) -> Path:
    config = tiny_config(
        data_dir, out, nproc=2, epochs=1, data__steps_per_epoch=3, data__batch_size=4,
        data__image_size=32, augment__global_crop_size=32, augment__local_crop_size=16,
        data__group_by_channels=False, sync_check_every=1, **overrides,
    )  # fmt: skip
    config = config.with_overrides({"model": model, "model_overrides": {**TINY, "img_size": 32}})
    return train(config).model_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "overrides", "embedding_dim"),
    [
        # Per-channel CLS tokens are the samples: mixed channel counts in a batch are fine.
        ("onechannel_vit_tiny", {}, None),
        ("interchannel_vit_moyen", {}, 32),
        ("standard_vit_tiny", {"data__first_channels": 3}, 32),
    ],
)
def test_every_baseline_pretrains_on_two_ranks_and_exports(
    data_dir: Path, tmp_path: Path, model: str, overrides: dict, embedding_dim: int | None
) -> None:
    model_dir = _run(data_dir, tmp_path / "run", model, **overrides)
    metrics = read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert all(math.isfinite(m["loss"]) and m["weights_in_sync"] is True for m in metrics)
    exported = chadavit.from_pretrained(model_dir)
    assert exported.config.name == model
    images = [torch.rand(3, 32, 32), torch.rand(3, 32, 32)]
    embedding = exported(chadavit.ChannelBatch.from_images(images))
    # The one-channel ViT's image embedding is its channels' CLS side by side (3 x 32).
    assert embedding.shape == (2, embedding_dim or 3 * 32)
    assert bool(torch.isfinite(embedding).all())


def test_the_standard_vit_needs_the_three_channel_subset(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "data", tmp_path / "run")
    with pytest.raises(ConfigError, match=r"takes 3-channel images: set data.first_channels=3"):
        config.with_overrides({"model": "standard_vit_tiny"})


def test_first_channels_keeps_the_subset_and_truncates(tmp_path: Path) -> None:
    from chadavit.data.loader import EpochPlan, ShardSet, make_epoch_loader, plan_epochs

    write_shards(tmp_path / "data", [12], channel_counts=(1, 2, 3, 4, 5), image_size=32, seed=1)
    config = tiny_config(tmp_path / "data", tmp_path / "run", data__first_channels=3, data__batch_size=4)
    shards = ShardSet.scan(tmp_path / "data")
    steps, streams = plan_epochs(shards, config.data, 0, 1)
    plan = EpochPlan(shards, config.data, config.augment, 0, 0, 0, 1, steps, streams, output="images")
    batches = list(make_epoch_loader(plan))
    assert batches and all(batch.channel_counts.tolist() == [3] * 4 for batch in batches)
    assert all(batch.images.shape[0] == 12 for batch in batches)


def test_the_standard_vit_takes_three_channels_and_the_one_channel_vit_trains_per_channel() -> None:
    from chadavit.models import create_model

    standard = create_model("standard_vit_tiny", **TINY, img_size=32)
    with pytest.raises(ValueError, match=r"image 1 has 2 channels but standard_vit_tiny .* 3-channel images"):
        standard(chadavit.ChannelBatch.from_images([torch.rand(3, 32, 32), torch.rand(2, 32, 32)]))
    one = create_model("onechannel_vit_tiny", **TINY, img_size=32)
    mixed = chadavit.ChannelBatch.from_images([torch.rand(3, 32, 32), torch.rand(1, 32, 32)])
    assert one.training_embeddings(mixed).shape == (4, 32)  # a row per channel, counts may differ
