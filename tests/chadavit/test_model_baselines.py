"""The paper's baselines: one-channel ViT (C x 192 embedding), inter-channel ViT (one token a channel)."""

from __future__ import annotations

import pytest
import torch

from chadavit import create_model


def test_one_channel_embedding_concatenates_each_channel_encoded_alone(random_images) -> None:
    torch.manual_seed(0)
    model = create_model("onechannel_vit_tiny", depth=1, img_size=32).eval()
    assert model.embed_dim == 192
    images = random_images([3, 3], size=32)
    with torch.no_grad():
        embedding = model(images)
        alone = [model([image[c : c + 1]]) for image in images for c in range(3)]
        features = model.forward_features(images)
    assert embedding.shape == (2, 3 * 192)
    assert torch.allclose(embedding, torch.cat(alone, dim=1).reshape(2, 3 * 192), atol=1e-5)
    assert torch.allclose(features.cls, embedding, atol=1e-6)
    assert [tuple(t.shape) for t in features.patch_tokens] == [(3, 2, 2, 192)] * 2


def test_one_channel_needs_one_channel_count_per_batch(tiny_model, random_images) -> None:
    model = tiny_model("onechannel_vit_tiny")
    with pytest.raises(ValueError, match="image 2 has 5 channels but image 0 has 2"):
        model(random_images([2, 2, 5]))
    maps = model.attention_maps(random_images([2, 5]))  # maps do not concatenate: mixed counts are fine
    assert [tuple(m.shape) for m in maps] == [(2, 2, 4, 4), (2, 5, 4, 4)]


def test_inter_channel_makes_one_token_per_channel(random_images) -> None:
    torch.manual_seed(0)
    model = create_model("interchannel_vit_moyen", depth=1).eval()
    assert model.config.patch_size == model.config.img_size == 224
    images = random_images([4, 1, 2], size=96)  # resized to 224: each channel stays one token
    with torch.no_grad():
        features = model.forward_features(images)
        padded = model(images, padded=True)
    assert features.cls.shape == (3, 192)
    assert [tuple(t.shape) for t in features.patch_tokens] == [(4, 1, 1, 192), (1, 1, 1, 192), (2, 1, 1, 192)]
    assert torch.allclose(padded, features.cls, atol=1e-5, rtol=0)
    small = create_model("interchannel_vit_moyen", img_size=32, depth=1)
    assert small.config.patch_size == 32
