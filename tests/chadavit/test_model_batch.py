"""ChannelBatch and collate: what the DataLoader hands the models, and bad inputs named clearly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from chadavit import ChannelBatch, collate


def test_from_images_keeps_each_image_and_its_order(random_images) -> None:
    images = random_images([3, 1, 5], size=(32, 48))
    batch = ChannelBatch.from_images(images)
    assert len(batch) == 3
    assert batch.pixels.shape == (9, 32, 48)
    assert batch.channel_counts.tolist() == [3, 1, 5]
    for original, view in zip(images, batch.images(), strict=True):
        assert torch.equal(original, view)
    moved = batch.to("cpu")
    assert torch.equal(moved.pixels, batch.pixels) and moved.channel_counts.tolist() == [3, 1, 5]


def test_collate_in_a_dataloader_with_labels(random_images) -> None:
    images = random_images([2, 4, 1, 3])
    samples = [(image, index, {"n": image.shape[0]}) for index, image in enumerate(images)]
    loader = DataLoader(samples, batch_size=4, collate_fn=collate)
    batch, labels, meta = next(iter(loader))
    assert isinstance(batch, ChannelBatch)
    assert batch.channel_counts.tolist() == [2, 4, 1, 3]
    assert labels.tolist() == [0, 1, 2, 3]
    assert meta["n"].tolist() == [2, 4, 1, 3]
    plain = DataLoader(images, batch_size=2, collate_fn=collate)
    first = next(iter(plain))
    assert isinstance(first, ChannelBatch) and first.channel_counts.tolist() == [2, 4]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([torch.rand(2, 8, 8), torch.rand(0, 8, 8)], "image 1 has 0 channels"),
        (
            [torch.rand(2, 8, 8), torch.randint(0, 255, (1, 8, 8), dtype=torch.uint8)],
            "image 1 has torch.uint8",
        ),
        ([torch.rand(2, 8, 8), torch.rand(1, 8, 16)], "image 1 is 8x16 but image 0 is 8x8"),
        ([torch.rand(8, 8)], "image 0 must be a (C, H, W) tensor"),
        ([], "at least one image"),
    ],
)
def test_bad_images_are_named(images, message) -> None:
    with pytest.raises(ValueError) as error:
        ChannelBatch.from_images(images)
    assert message in str(error.value)


def test_counts_must_match_pixels() -> None:
    with pytest.raises(ValueError, match="add up to 4 channels but pixels holds 5"):
        ChannelBatch(pixels=torch.rand(5, 8, 8), channel_counts=torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="image 1 has 0 channels"):
        ChannelBatch(pixels=torch.rand(3, 8, 8), channel_counts=torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="float"):
        ChannelBatch(pixels=torch.zeros(3, 8, 8, dtype=torch.int32), channel_counts=torch.tensor([3]))
