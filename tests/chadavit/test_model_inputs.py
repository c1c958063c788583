"""Every bad input gets one clear error naming the image or the size at fault."""

from __future__ import annotations

import pytest
import torch

from chadavit import ChannelBatch


@pytest.mark.parametrize(
    ("counts", "size", "message"),
    [
        ([2, 11, 1], 64, "image 1 has 11 channels but chadavit_petit has max_channels=10"),
        (
            [2, 3],
            (64, 40),
            "images are 64x40 pixels; chadavit_petit needs H and W to be multiples of its patch size 16",
        ),
        ([1], 8, "images are 8x8 pixels"),
        ([1, 1], (0, 64), "images are 0x64 pixels"),
    ],
)
def test_model_rejects_inputs_it_cannot_encode(tiny_model, random_images, counts, size, message) -> None:
    model = tiny_model("chadavit_petit")
    with pytest.raises(ValueError) as error:
        model(random_images(counts, size=size))
    assert message in str(error.value)


def test_model_rejects_bad_pixels_and_counts(tiny_model) -> None:
    model = tiny_model("chadavit_petit")
    with pytest.raises(ValueError, match="image 1 has 0 channels"):
        model([torch.rand(1, 64, 64), torch.rand(0, 64, 64)])
    with pytest.raises(ValueError, match=r"image 0 has torch\.uint8 pixels"):
        model([torch.zeros(2, 64, 64, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="add up to 3 channels but pixels holds 4"):
        model(ChannelBatch(pixels=torch.rand(4, 64, 64), channel_counts=torch.tensor([1, 2])))
    # One image without its batch axis is ambiguous ((B, C, H, W) tensors are accepted).
    with pytest.raises(ValueError, match=r"not a tensor of shape \(3, 64, 64\)"):
        model(torch.rand(3, 64, 64))


def test_max_channels_is_configurable(tiny_model, random_images) -> None:
    model = tiny_model("chadavit_petit", max_channels=12)
    assert model(random_images([12, 1])).shape == (2, 32)
    with pytest.raises(ValueError, match="image 0 has 13 channels"):
        model(random_images([13]))


def test_unknown_models_and_overrides_are_named() -> None:
    from chadavit import create_model

    with pytest.raises(ValueError, match="unknown model 'chadavit_huge'; known models: chadavit_grand"):
        create_model("chadavit_huge")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['width'\]"):
        create_model("chadavit_petit", width=3)
    with pytest.raises(ValueError, match="embed_dim 32 is not divisible by num_heads 3"):
        create_model("chadavit_moyen", embed_dim=32)
